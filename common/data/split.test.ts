import { describe, expect, it } from 'vitest';
import { gatherImages, gatherInto, selectSplits } from './split.ts';
import { loadNativeKernels } from '../kernels/native/addon.ts';
import { countCalls } from '../kernels/native/native-testing.ts';

describe('selectSplits', () => {
  it('splits the CIFAR-10 dev set 40,000 / 10,000', () => {
    const pick = selectSplits(50_000, 10_000, 42);
    expect(pick.train.length).toBe(40_000);
    expect(pick.val.length).toBe(10_000);
    expect(pick.test.length).toBe(10_000);
  });

  it('puts every dev image in exactly one of train and validation', () => {
    const pick = selectSplits(1000, 0, 42);
    const all = [...pick.train, ...pick.val].sort((a, b) => a - b);
    expect(all).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    expect(pick.train.length).toBe(800);
  });

  it('is the same for the same seed and different for another', () => {
    expect(selectSplits(1000, 10, 42)).toEqual(selectSplits(1000, 10, 42));
    expect(selectSplits(1000, 10, 42).val).not.toEqual(selectSplits(1000, 10, 43).val);
  });

  it('shuffles rather than cutting the dev set in file order', () => {
    const pick = selectSplits(1000, 0, 42);
    expect(Math.max(...pick.val)).toBeGreaterThan(100);
    expect(Math.min(...pick.val)).toBeLessThan(900);
  });

  it('limitTrain N takes the first N training and the first ceil(N / 4) validation images', () => {
    const full = selectSplits(1000, 10, 42);
    const limited = selectSplits(1000, 10, 42, { limitTrain: 10 });
    expect(limited.train).toEqual(full.train.subarray(0, 10));
    expect(limited.val).toEqual(full.val.subarray(0, 3));
  });

  it('limitTest N takes the first N test images in file order', () => {
    expect([...selectSplits(100, 50, 42, { limitTest: 3 }).test]).toEqual([0, 1, 2]);
  });

  it('caps the limits at the sizes available', () => {
    const pick = selectSplits(100, 20, 42, { limitTrain: 1000, limitTest: 1000 });
    expect([pick.train.length, pick.val.length, pick.test.length]).toEqual([80, 20, 20]);
  });
});

describe('gatherImages', () => {
  it('copies the chosen images and labels in the given order', () => {
    const set = { images: new Uint8Array(3 * 3072), labels: Uint8Array.from([4, 5, 6]), count: 3 };
    for (let i = 0; i < 3; i++) set.images.fill(10 * (i + 1), i * 3072, (i + 1) * 3072);
    const picked = gatherImages(set, Uint32Array.from([2, 0]));
    expect(picked.count).toBe(2);
    expect([...picked.labels]).toEqual([6, 4]);
    expect([picked.images[0], picked.images[3071], picked.images[3072], picked.images[6143]]).toEqual([30, 30, 10, 10]);
  });

  it('gathers into shared memory the same bytes with the native row copy and without it', () => {
    const set = { images: new Uint8Array(5 * 3072), labels: Uint8Array.from([1, 2, 3, 4, 5]), count: 5 };
    for (let i = 0; i < set.images.length; i++) set.images[i] = (i * 13 + (i >> 11)) & 255;
    const indices = Uint32Array.from([4, 1, 1, 0]);
    const gatherShared = () => {
      const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
      const images = new Uint8Array(memory.buffer, 64, indices.length * 3072);
      const labels = new Uint8Array(memory.buffer, 64 + images.length, indices.length);
      gatherInto(set, indices, images, labels);
      return { images: Buffer.from(images), labels: [...labels] };
    };
    const expected = Buffer.concat([...indices].map((k) => set.images.subarray(k * 3072, (k + 1) * 3072)));
    const previous = process.env.DTRAIN_NATIVE_KERNELS;
    const load = loadNativeKernels();
    const calls = load.loaded ? countCalls(load.kernels, ['gatherRows']) : new Map<string, number>();
    try {
      for (const setting of ['0', '1']) {
        process.env.DTRAIN_NATIVE_KERNELS = setting;
        const before = calls.get('gatherRows') ?? 0;
        const got = gatherShared();
        expect(got.images.equals(expected)).toBe(true);
        expect(got.labels).toEqual([5, 2, 2, 1]);
        // The addon copied the rows where it is built and allowed, and only then.
        expect((calls.get('gatherRows') ?? 0) - before).toBe(setting === '1' && load.loaded ? 1 : 0);
      }
      // Into ordinary memory, no native copy.
      const before = calls.get('gatherRows') ?? 0;
      gatherImages(set, indices);
      expect(calls.get('gatherRows') ?? 0).toBe(before);
    } finally {
      if (previous === undefined) delete process.env.DTRAIN_NATIVE_KERNELS;
      else process.env.DTRAIN_NATIVE_KERNELS = previous;
    }
  });

  it('gathers nothing for no indices, into shared memory or not', () => {
    const set = { images: new Uint8Array(3072), labels: new Uint8Array(1), count: 1 };
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    expect(() => gatherInto(set, new Uint32Array(0), new Uint8Array(memory.buffer, 0, 0), new Uint8Array(0))).not.toThrow();
    expect(gatherImages(set, new Uint32Array(0)).count).toBe(0);
  });

  it('refuses targets too small for the images or the labels', () => {
    const set = { images: new Uint8Array(2 * 3072), labels: new Uint8Array(2), count: 2 };
    expect(() => gatherInto(set, Uint32Array.from([0, 1]), new Uint8Array(3072), new Uint8Array(2))).toThrow('Expected room for 2 images (6144 bytes) and labels, but the targets hold 3072 bytes and 2 labels.');
    expect(() => gatherInto(set, Uint32Array.from([0, 1]), new Uint8Array(6144), new Uint8Array(1))).toThrow('but the targets hold 6144 bytes and 1 labels.');
  });

  it('rejects an index past the end', () => {
    const set = { images: new Uint8Array(3072), labels: new Uint8Array(1), count: 1 };
    expect(() => gatherImages(set, Uint32Array.from([1]))).toThrow('Expected indices below 1, but index 0 is 1.');
  });
});
