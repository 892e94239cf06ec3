import { describe, expect, it } from 'vitest';
import { combineMoments, combineSlices, localMoments, movingAverage, sumVectors } from './batch-moments.ts';
import { tf } from './tf.ts';

describe('batch moments', () => {
  it('computes count, mean and M2 per channel (last axis)', () => {
    // Two channels, three rows: channel 0 = [1, 2, 6] (mean 3, M2 4+1+9 = 14), channel 1 = [0, 0, 3] (mean 1, M2 1+1+4 = 6).
    const m = localMoments(Float32Array.from([1, 0, 2, 0, 6, 3]), 2);
    expect(Array.from(m)).toEqual([3, 3, 1, 14, 6]);
  });

  it('combines slices into exactly the moments of the whole (law of total variance)', () => {
    const x = Float32Array.from({ length: 60 }, (_, i) => Math.sin(i * 1.7) * 10 + (i % 3));
    const whole = localMoments(x, 3);
    const parts = [x.subarray(0, 12), x.subarray(12, 15), x.subarray(15)].map((p) => localMoments(p, 3));
    const combined = combineMoments(parts, 3);
    expect(combined[0]).toBe(20);
    for (let i = 1; i < whole.length; i++) expect(combined[i]).toBeCloseTo(whole[i], 10);
  });

  it('matches tf.moments (biased variance, as tfjs-layers uses for the moving variance)', () => {
    const x = Float32Array.from({ length: 4 * 5 * 5 * 2 }, (_, i) => Math.cos(i) * 3 + 1);
    const m = localMoments(x, 2);
    const { mean, variance } = tf.moments(tf.tensor4d(x, [4, 5, 5, 2]), [0, 1, 2]);
    const mt = mean.dataSync();
    const vt = variance.dataSync();
    for (let c = 0; c < 2; c++) {
      expect(m[1 + c]).toBeCloseTo(mt[c], 5);
      expect(m[3 + c] / m[0]).toBeCloseTo(vt[c], 5);
    }
    tf.dispose([mean, variance]);
  });

  it('sums vectors element-wise', () => {
    expect(Array.from(sumVectors([Float64Array.from([1, 2]), Float64Array.from([3, 4])], 2))).toEqual([4, 6]);
  });

  it('updates moving statistics exactly as tfjs-layers does in float32', () => {
    const moving = Float32Array.from([0, 1, 0.3]);
    const batch = Float32Array.from([2.5, 0.1, -7]);
    const expected = tf.tidy(() => {
      const orig = tf.tensor1d(moving);
      return Array.from(tf.sub(orig, tf.mul(tf.sub(orig, tf.tensor1d(batch)), 1 - 0.99)).dataSync());
    });
    movingAverage(moving, batch, 0.99);
    expect(Array.from(moving)).toEqual(expected);
  });
});

describe('combineSlices with several vectors per slice (one per group of a reduction grain)', () => {
  // Four groups' moments and backward sums of 3 channels, from awkward data, cut into slices four ways.
  const x = Float32Array.from({ length: 96 }, (_, i) => Math.sin(i * 2.3) * 1e3 + Math.cos(i) * 1e-3 + (i % 7));
  const groups = [0, 1, 2, 3].map((g) => localMoments(x.subarray(g * 24, (g + 1) * 24), 3));
  const backward = [0, 1, 2, 3].map((g) => Float64Array.from({ length: 6 }, (_, i) => Math.tan(g * 6 + i + 0.5) * 1e5));
  const concat = (vs: Float64Array[]) => {
    const out = new Float64Array(vs.reduce((n, v) => n + v.length, 0));
    vs.reduce((at, v) => (out.set(v, at), at + v.length), 0);
    return out;
  };
  const slicings = [[[0, 1, 2, 3]], [[0], [1], [2], [3]], [[0, 1], [2, 3]], [[0], [1, 2, 3]], [[0, 1, 2], [3]]];

  for (const phase of ['forward', 'backward'] as const) {
    it(`gives the same bits for every slicing into whole groups (${phase}), whatever order the slices arrive in`, () => {
      const vectors = phase === 'forward' ? groups : backward;
      const totals = slicings.map((slices) => {
        let first = 0;
        const parts = slices.map((gs) => {
          const p = { firstSample: first, sums: concat(gs.map((g) => vectors[g])) };
          first += gs.length * 24;
          return p;
        });
        return Array.from(combineSlices(phase, parts.reverse(), 3));
      });
      for (const t of totals.slice(1)) expect(t).toEqual(totals[0]);
      // One vector per slice, as without a grain, is the same combination.
      expect(totals[0]).toEqual(Array.from(phase === 'forward' ? combineMoments(groups, 3) : sumVectors(backward, 6)));
    });
  }

  it('refuses sums that are not whole vectors', () => {
    expect(() => combineSlices('backward', [{ firstSample: 0, sums: new Float64Array(7) }], 3)).toThrow(/whole vectors of 6 values, but got 7/);
  });
});
