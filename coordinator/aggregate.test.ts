import { describe, expect, it } from 'vitest';
import { aggregateResults, alignedSliceSizes, sliceSizes, StepAccumulator } from './aggregate.ts';
import { floatsToBytes } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';
import { SeededRandom } from '../common/random.ts';

function result(count: number, gradientSum: number[], extra: Partial<ResultMessage> = {}): ResultMessage {
  return { type: 'result', taskId: 1, count, lossSum: 0, correct: 0, computeMs: 0, gradients: floatsToBytes(new Float32Array(gradientSum)), ...extra };
}

describe('aggregateResults', () => {
  it('divides the summed gradient sums by the total sample count', () => {
    // Worker A: 2 samples, gradient sum [2, -4, 6]; worker B: 6 samples, gradient sum [6, 4, 10].
    // Total 8 samples; sum [8, 0, 16]; mean = [1, 0, 2].
    // (The mean of the two per-worker means would be wrong: ([1,-2,3] + [1,0.667,1.667]) / 2.)
    const agg = aggregateResults([result(2, [2, -4, 6]), result(6, [6, 4, 10])], 3, 0);
    expect(agg.count).toBe(8);
    expect(Array.from(agg.gradient)).toEqual([1, 0, 2]);
  });

  it('adds loss sums and correct counts without averaging them', () => {
    const agg = aggregateResults([result(2, [0], { lossSum: 1.5, correct: 1 }), result(6, [0], { lossSum: 4.25, correct: 5 })], 1, 0);
    expect(agg.lossSum).toBe(5.75);
    expect(agg.correct).toBe(6);
  });

  it('weights the moving statistics by each slice’s sample count', () => {
    // A: 1 sample, stats [10, 0]; B: 3 samples, stats [2, 4].
    // (1·[10, 0] + 3·[2, 4]) / 4 = [16, 12] / 4 = [4, 3].
    const a = result(1, [0], { stats: floatsToBytes(new Float32Array([10, 0])) });
    const b = result(3, [0], { stats: floatsToBytes(new Float32Array([2, 4])) });
    const agg = aggregateResults([a, b], 1, 2);
    expect(Array.from(agg.stats)).toEqual([4, 3]);
  });

  it('returns empty stats for a model without moving statistics', () => {
    expect(aggregateResults([result(2, [1])], 1, 0).stats.length).toBe(0);
  });

  it('gives the same mean gradient whether a batch is computed in 1, 2 or 3 slices', () => {
    const rng = new SeededRandom(5);
    const samples = 10;
    const size = 33;
    const perSample = Array.from({ length: samples }, () => Array.from({ length: size }, () => rng.next() * 2 - 1));
    const expected = new Array<number>(size).fill(0);
    for (const g of perSample) for (let i = 0; i < size; i++) expected[i] += g[i] / samples;

    for (const parts of [1, 2, 3]) {
      const results: ResultMessage[] = [];
      let start = 0;
      for (const n of sliceSizes(samples, parts)) {
        const sum = new Array<number>(size).fill(0);
        for (const g of perSample.slice(start, start + n)) for (let i = 0; i < size; i++) sum[i] += g[i];
        results.push(result(n, sum));
        start += n;
      }
      expect(results.length).toBe(parts);
      const agg = aggregateResults(results, size, 0);
      expect(agg.count).toBe(samples);
      for (let i = 0; i < size; i++) expect(Math.abs(agg.gradient[i] - expected[i])).toBeLessThan(1e-6);
    }
  });

  it('reads gradients that sit at an unaligned offset inside a larger buffer', () => {
    // As when msgpack hands back a slice of the received frame.
    const frame = Buffer.alloc(64, 0x7f);
    frame.set(floatsToBytes(new Float32Array([4, 8])), 3);
    const r: ResultMessage = { type: 'result', taskId: 1, count: 4, lossSum: 0, correct: 0, computeMs: 0, gradients: frame.subarray(3, 11) };
    expect(Array.from(aggregateResults([r], 2, 0).gradient)).toEqual([1, 2]);
  });
});

describe('sliceSizes', () => {
  const cases: [number, number][] = [
    [10, 1],
    [10, 3],
    [10, 4],
    [7, 7],
    [128, 5],
    [1, 1],
    [1000, 9],
  ];

  it.each(cases)('splits %i samples into %i parts that sum to the total', (total, parts) => {
    const sizes = sliceSizes(total, parts);
    expect(sizes.length).toBe(parts);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(total);
  });

  it.each(cases)('keeps the sizes of %i samples in %i parts within one of each other', (total, parts) => {
    const sizes = sliceSizes(total, parts);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
  });

  it('splits 10 into 3 as 4, 3, 3', () => {
    expect(sliceSizes(10, 3)).toEqual([4, 3, 3]);
  });

  it('never makes more parts than samples, so no slice is empty', () => {
    expect(sliceSizes(3, 8)).toEqual([1, 1, 1]);
    expect(sliceSizes(1, 4)).toEqual([1]);
  });

  it('makes one slice when asked for zero parts', () => {
    expect(sliceSizes(5, 0)).toEqual([5]);
  });

  it('holds for every split of up to 40 samples', () => {
    for (let total = 1; total <= 40; total++) {
      for (let parts = 1; parts <= 12; parts++) {
        const sizes = sliceSizes(total, parts);
        expect(sizes.length).toBe(Math.min(total, parts));
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(total);
        expect(Math.min(...sizes)).toBeGreaterThanOrEqual(1);
        expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
      }
    }
  });
});

describe('StepAccumulator', () => {
  const rng = new SeededRandom(11);
  const random = (n: number) => Array.from({ length: n }, () => rng.next() * 2 - 1);
  const bits = (a: Float32Array) => Array.from(new Uint32Array(a.slice().buffer));

  it('gives bit for bit aggregateResults, whatever order the results arrive in', () => {
    const results = [3, 5, 4].map((count) => result(count, random(50), { lossSum: count / 2, correct: count - 1, stats: floatsToBytes(new Float32Array(random(6))) }));
    const expected = aggregateResults(results, 50, 6);
    const acc = new StepAccumulator(50, 6);
    for (const order of [[0, 1, 2], [2, 1, 0], [1, 2, 0]]) {
      acc.reset(3);
      for (const i of order) acc.add(i, results[i]);
      const got = acc.finish();
      expect(bits(got.gradient)).toEqual(bits(expected.gradient));
      expect(bits(got.stats)).toEqual(bits(expected.stats));
      expect([got.count, got.lossSum, got.correct]).toEqual([expected.count, expected.lossSum, expected.correct]);
    }
  });

  it('reuses its buffers: a second step does not see the first', () => {
    const acc = new StepAccumulator(2, 0);
    acc.reset(1);
    acc.add(0, result(1, [5, 5]));
    const first = acc.finish().gradient;
    acc.reset(2);
    acc.add(1, result(1, [1, 3]));
    acc.add(0, result(1, [1, 1]));
    const second = acc.finish().gradient;
    // (1 + 1) / 2 = 1; (1 + 3) / 2 = 2: nothing of [5, 5] is left.
    expect(Array.from(second)).toEqual([1, 2]);
    expect(second).toBe(first);
  });

  it('refuses to finish before every result is in', () => {
    const acc = new StepAccumulator(1, 0);
    acc.reset(2);
    acc.add(1, result(1, [1]));
    expect(() => acc.finish()).toThrow(/expected 2 results, but 0 were folded/);
  });
});

describe('alignedSliceSizes', () => {
  it('gives every slice whole groups, their counts differing by at most one', () => {
    for (const [total, parts, grain] of [[12, 3, 4], [12, 2, 4], [32, 3, 4], [30, 4, 8], [7, 3, 2], [5, 8, 2], [100, 7, 1]]) {
      const sizes = alignedSliceSizes(total, parts, grain);
      expect(sizes.reduce((a, b) => a + b, 0), `${total}/${parts}/${grain}`).toBe(total);
      expect(sizes.length).toBeLessThanOrEqual(parts);
      expect(sizes.every((s) => s > 0)).toBe(true);
      // Every slice but the last starts and ends on a group boundary.
      let at = 0;
      for (const s of sizes.slice(0, -1)) {
        at += s;
        expect(at % grain, `${total}/${parts}/${grain}: boundary at ${at}`).toBe(0);
      }
      const groups = sizes.map((s) => Math.ceil(s / grain));
      expect(Math.max(...groups) - Math.min(...groups)).toBeLessThanOrEqual(1);
    }
  });

  it('makes fewer slices than parts when there are fewer groups', () => {
    expect(alignedSliceSizes(12, 4, 4)).toEqual([4, 4, 4]);
    expect(alignedSliceSizes(10, 3, 4)).toEqual([4, 4, 2]);
    expect(alignedSliceSizes(12, 2, 4)).toEqual([8, 4]);
  });
});
