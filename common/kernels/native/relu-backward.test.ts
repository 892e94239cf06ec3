import { afterAll, describe, expect, it } from 'vitest';
import { tf, type Tensor } from '../../tf.ts';
import { TestRandom, use } from '../testing.ts';
import { loadNativeKernels } from './addon.ts';
import { countCalls, requireNativeOrSkip } from './native-testing.ts';
import { nativeReluBackward } from './relu-backward.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);
const calls = load.loaded ? countCalls(load.kernels, ['reluBackward']) : new Map<string, number>();

afterAll(async () => {
  if (load.loaded) await use('wasm');
});

/** dy ~ U(−1, 1); y a relu output with about half its values exactly 0. */
function data(shape: number[], seed: number): { dy: Float32Array; y: Float32Array } {
  const r = new TestRandom(seed);
  const n = shape.reduce((a, d) => a * d, 1);
  const dy = Float32Array.from({ length: n }, () => 2 * r.next() - 1);
  const y = Float32Array.from({ length: n }, () => Math.max(0, 2 * r.next() - 1));
  return { dy, y };
}

describe.runIf(native)('the native relu backward pass', () => {
  // Every channel count the native loop specializes (lenet's 6 and 16, the CNNs' 32 and 64) and others.
  for (const shape of [[7, 5], [2, 28, 28, 6], [3, 10, 10, 16], [3, 6, 6, 32], [2, 13, 13, 64], [4, 1, 1, 3], [5, 120]]) {
    it(`gives Step(y)·dy and its sum over the leading axes, the same numbers, for [${shape.join(',')}]`, async () => {
      await use('onednn');
      const { dy, y } = data(shape, shape.length * 31 + shape[shape.length - 1]);
      const before = calls.get('reluBackward') ?? 0;
      let fused: Float32Array[] = [];
      let reference: Float32Array[] = [];
      tf.tidy(() => {
        const dyT = tf.tensor(dy, shape);
        const yT = tf.tensor(y, shape);
        const [dz, sum] = nativeReluBackward()!(dyT, yT);
        const refDz = tf.mul(dyT, tf.step(yT));
        const refSum = tf.sum(refDz, Array.from({ length: shape.length - 1 }, (_, i) => i));
        const read = (t: Tensor) => (t.dataSync() as Float32Array).slice();
        fused = [read(dz), read(sum)];
        reference = [read(refDz), read(refSum)];
      });
      expect((calls.get('reluBackward') ?? 0) - before).toBe(1);
      // Bit for bit, signed zeros included.
      expect(Array.from(new Uint32Array(fused[0].buffer))).toEqual(Array.from(new Uint32Array(reference[0].buffer)));
      expect(Array.from(new Uint32Array(fused[1].buffer))).toEqual(Array.from(new Uint32Array(reference[1].buffer)));
      expect(fused[0].some((v) => v !== 0)).toBe(true);
    });
  }

  it('refuses dy and y of different shapes, and leaves no tensor behind', async () => {
    await use('onednn');
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      expect(() => nativeReluBackward()!(tf.zeros([2, 3]), tf.zeros([3, 2]))).toThrow(/one shape/);
    });
    let sum: number[] = [];
    tf.tidy(() => {
      sum = Array.from(nativeReluBackward()!(tf.ones([2, 3]), tf.ones([2, 3]))[1].dataSync());
    });
    expect(sum).toEqual([2, 2, 2]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('sums no rows to zeros: an empty slice leaves no stale heap memory in Σ dz', async () => {
    await use('onednn');
    const sums: number[][] = [];
    for (let i = 0; i < 4; i++) {
      // Freed heap memory of the sum's size, full of 7s, for the allocator to hand out again.
      tf.dispose(tf.tidy(() => tf.add(tf.fill([37], 7), 0)));
      tf.tidy(() => {
        sums.push(Array.from(nativeReluBackward()!(tf.zeros([0, 37]), tf.zeros([0, 37]))[1].dataSync()));
      });
    }
    for (const sum of sums) expect(sum).toEqual(new Array(37).fill(0));
  });

  it('is not offered off the native kernels', async () => {
    await use('wasm');
    expect(nativeReluBackward()).toBeUndefined();
  });
});
