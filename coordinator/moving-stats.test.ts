import { describe, expect, it } from 'vitest';
import { combineSliceMoments, updateMovingStats } from './moving-stats.ts';
import { localMoments } from '../common/batch-moments.ts';

/** A slice's stats vector for one layer from raw rows of `channels` values. */
function sliceStats(x: number[], channels: number): Float32Array {
  const m = localMoments(Float32Array.from(x), channels);
  const out = new Float32Array(2 * channels);
  for (let c = 0; c < channels; c++) {
    out[c] = m[1 + c];
    out[channels + c] = m[1 + channels + c] / m[0];
  }
  return out;
}

describe('moving statistics from slice moments', () => {
  it('combines slices into the moments of the whole batch, keeping the between-slice variance', () => {
    // One channel: slices [0, 2] (mean 1, var 1) and [10, 12] (mean 11, var 1).
    // Whole batch [0, 2, 10, 12]: mean 6, var (36 + 16 + 16 + 36) / 4 = 26; the average of the slices' variances would say 1.
    const g = combineSliceMoments([1], [{ count: 2, stats: sliceStats([0, 2], 1) }, { count: 2, stats: sliceStats([10, 12], 1) }]);
    expect(Array.from(g)).toEqual([6, 26]);
  });

  it('weights the slices by their sample counts, layer by layer', () => {
    const rows = [1, 5, 2, 6, 4, 0, 9, 3, 7, 7];
    // Layer 0: 2 channels, 5 samples of 1 row each. Layer 1: 1 channel.
    const whole = [...sliceStats(rows, 2), ...sliceStats([3, 1, 4, 1, 5], 1)];
    const a = { count: 2, stats: Float32Array.from([...sliceStats(rows.slice(0, 4), 2), ...sliceStats([3, 1], 1)]) };
    const b = { count: 3, stats: Float32Array.from([...sliceStats(rows.slice(4), 2), ...sliceStats([4, 1, 5], 1)]) };
    const g = combineSliceMoments([2, 1], [a, b]);
    whole.forEach((v, i) => expect(g[i]).toBeCloseTo(v, 5));
  });

  it('moves the statistics once with Keras momentum: moving − (moving − batch)·0.01', () => {
    const moving = Float32Array.from([0, 1]); // initial moving mean 0 and variance 1
    updateMovingStats(moving, [1], [{ count: 2, stats: sliceStats([0, 2], 1) }, { count: 2, stats: sliceStats([10, 12], 1) }], 0.99);
    // mean: 0 − (0 − 6)·0.01 = 0.06; variance: 1 − (1 − 26)·0.01 = 1.25
    expect(moving[0]).toBeCloseTo(0.06, 6);
    expect(moving[1]).toBeCloseTo(1.25, 6);
  });

  it('gives the same update for one slice as for the same batch in three', () => {
    const rows = Array.from({ length: 12 * 3 }, (_, i) => Math.sin(i) * 4);
    const one = Float32Array.from([0, 0, 0, 1, 1, 1]);
    const three = one.slice();
    updateMovingStats(one, [3], [{ count: 12, stats: sliceStats(rows, 3) }], 0.99);
    updateMovingStats(three, [3], [0, 4, 8].map((s) => ({ count: 4, stats: sliceStats(rows.slice(s * 3, (s + 4) * 3), 3) })), 0.99);
    one.forEach((v, i) => expect(three[i]).toBeCloseTo(v, 6));
  });
});
