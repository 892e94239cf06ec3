import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { defaultCacheDir, loadDataset, type LoadOptions } from './load.ts';
import { selectSplits } from './split.ts';
import { generateSynthetic } from './synthetic.ts';
import { CIFAR10_CLASSES, isSharedSet, type ImageSet } from './types.ts';

// vitest's deep equality walks typed arrays entry by entry: far too slow for images.
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

function expectSameSet(actual: ImageSet, expected: ImageSet): void {
  expect(actual.count).toBe(expected.count);
  expect(sameBytes(actual.labels, expected.labels)).toBe(true);
  expect(sameBytes(actual.images, expected.images)).toBe(true);
}

describe('loadDataset options', () => {
  it.each([
    ['limitTrain', 0],
    ['limitTrain', -5],
    ['limitTrain', 2.5],
    ['limitTrain', Number.NaN],
    ['limitTest', 0],
    ['limitTest', Number.POSITIVE_INFINITY],
  ])('rejects %s = %s with a ConfigError', async (name, value) => {
    const options = { dataset: 'synthetic', [name]: value } as LoadOptions;
    await expect(loadDataset(options)).rejects.toThrow(ConfigError);
    await expect(loadDataset(options)).rejects.toThrow(`${name} (--limit-`);
  });

  it('rejects an unknown dataset', async () => {
    await expect(loadDataset({ dataset: 'mnist' } as unknown as LoadOptions)).rejects.toThrow(
      'Unknown dataset "mnist": expected cifar10 or synthetic.',
    );
  });

  it('rejects a split seed that is not an integer', async () => {
    await expect(loadDataset({ dataset: 'synthetic', splitSeed: 0.5 })).rejects.toThrow(ConfigError);
  });
});

describe('default cache folder', () => {
  const saved = process.env.DTRAIN_CACHE_DIR;
  afterEach(() => {
    if (saved === undefined) delete process.env.DTRAIN_CACHE_DIR;
    else process.env.DTRAIN_CACHE_DIR = saved;
  });

  it('is $DTRAIN_CACHE_DIR when set', () => {
    process.env.DTRAIN_CACHE_DIR = '/tmp/somewhere';
    expect(defaultCacheDir()).toBe('/tmp/somewhere');
  });

  it('is ~/.cache/dtrain otherwise', () => {
    delete process.env.DTRAIN_CACHE_DIR;
    expect(defaultCacheDir()).toBe(join(homedir(), '.cache', 'dtrain'));
  });
});

describe('loadDataset synthetic', () => {
  it('returns the full CIFAR-sized splits by default', async () => {
    const splits = await loadDataset({ dataset: 'synthetic' });
    expect([splits.train.count, splits.val.count, splits.test.count]).toEqual([40_000, 10_000, 10_000]);
    expect(splits.train.images.length).toBe(40_000 * 3072);
    expect(splits.classNames).toEqual(CIFAR10_CLASSES);
    expect(splits.source).toBe('synthetic (seed 42)');
  });

  it('keeps the 80/20 ratio under limitTrain and cuts the test set with limitTest', async () => {
    const splits = await loadDataset({ dataset: 'synthetic', limitTrain: 101, limitTest: 7 });
    expect([splits.train.count, splits.val.count, splits.test.count]).toEqual([101, 26, 7]);
  });

  it('gives a limited run the same images as the start of a full run', async () => {
    const limited = await loadDataset({ dataset: 'synthetic', limitTrain: 8, limitTest: 4 });
    const pick = selectSplits(50_000, 10_000, 42);
    expectSameSet(limited.train, generateSynthetic(pick.train.subarray(0, 8), 'dev', 42));
    expectSameSet(limited.val, generateSynthetic(pick.val.subarray(0, 2), 'dev', 42));
    expectSameSet(limited.test, generateSynthetic(pick.test.subarray(0, 4), 'test', 42));
  });

  it('puts the training split in shared memory, where compute threads read it in place, and the other splits not', async () => {
    const splits = await loadDataset({ dataset: 'synthetic', limitTrain: 8, limitTest: 4 });
    expect([isSharedSet(splits.train), isSharedSet(splits.val), isSharedSet(splits.test)]).toEqual([true, false, false]);
  });

  it('uses splitSeed for the split and the images', async () => {
    const options = { dataset: 'synthetic', limitTrain: 20, limitTest: 5 } as const;
    const a = await loadDataset({ ...options, splitSeed: 1 });
    const b = await loadDataset({ ...options, splitSeed: 2 });
    expect(a.source).toBe('synthetic (seed 1)');
    expect(sameBytes(a.train.images, b.train.images)).toBe(false);
    const again = await loadDataset({ ...options, splitSeed: 1 });
    expectSameSet(again.train, a.train);
    expectSameSet(again.val, a.val);
    expectSameSet(again.test, a.test);
  });
});
