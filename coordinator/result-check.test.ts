import { describe, expect, it } from 'vitest';
import { checkStats, checkTally, GradientScreen, gradientsAgree, lowerMedian, sliceNorm, summariesAgree, summarize, type SliceSummary } from './result-check.ts';
import { floatsToBytes } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';
import type { WeightLayout } from '../common/weights.ts';

// Two trainable values, then one BatchNorm layer's moving mean and moving variance (one channel each).
const LAYOUT: WeightLayout = {
  trainableSize: 2,
  totalSize: 4,
  entries: [
    { name: 'dense/kernel', shape: [2], size: 2, offset: 0, trainable: true, role: 'kernel' },
    { name: 'bn/moving_mean', shape: [1], size: 1, offset: 2, trainable: false, role: 'moving_mean' },
    { name: 'bn/moving_variance', shape: [1], size: 1, offset: 3, trainable: false, role: 'moving_variance' },
  ],
};

function result(count: number, gradientSum: number[], stats = [0, 1]): ResultMessage {
  return { type: 'result', taskId: 1, count, lossSum: 0, correct: 0, computeMs: 0, gradients: floatsToBytes(new Float32Array(gradientSum)), stats: floatsToBytes(new Float32Array(stats)) };
}

describe('sliceNorm', () => {
  it('is the norm of the slice mean gradient: ‖sum‖ / count', () => {
    // sum [6, 8] over 2 samples: ‖[6, 8]‖ = 10, / 2 = 5.
    expect(sliceNorm(result(2, [6, 8]))).toBe(5);
  });

  it('does not overflow on 1e21 gradients (float64 sum of squares)', () => {
    // ‖[1e21, 1e21]‖ = 1.414e21 (float32 1e21 is 1.00000002e21).
    expect(sliceNorm(result(1, [1e21, 1e21]))).toBeCloseTo(Math.SQRT2 * Math.fround(1e21), -8);
  });
});

describe('lowerMedian', () => {
  it('takes the smaller middle value for an even count, so one outlier of two cannot decide', () => {
    expect(lowerMedian([1, 1e21])).toBe(1);
    expect(lowerMedian([3, 1, 2])).toBe(2);
    expect(lowerMedian([4, 1, 3, 2])).toBe(2);
  });
});

describe('checkStats', () => {
  it('accepts a non-negative variance and any mean', () => {
    expect(checkStats(new Float32Array([-5, 0.5]), LAYOUT)).toBeUndefined();
    expect(checkStats(new Float32Array([3, 0]), LAYOUT)).toBeUndefined();
  });

  it('rejects a negative moving variance, naming it', () => {
    const r = checkStats(new Float32Array([0, -0.25]), LAYOUT);
    expect(r?.reason).toMatch(/bn\/moving_variance\[0\] is -0.25/);
    expect(r?.fields.value).toBe(-0.25);
  });
});

describe('GradientScreen', () => {
  it('on the first step, rejects the poisoned one of two slices by the lower median of the step', () => {
    const screen = new GradientScreen(LAYOUT);
    expect(screen.hasHistory).toBe(false);
    screen.startStep();
    const rejected = screen.review([result(2, [6, 8]), result(2, [1e21, 0])], [2, 2]);
    // Norms 5 and 5e20; lower median 5; bound 50 × 5 = 250.
    expect(rejected.map((r) => r.index)).toEqual([1]);
    expect(rejected[0].rejection.fields).toMatchObject({ bound: 250 });
  });

  it('after an accepted step, checks each result as it arrives against the history', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    expect(screen.review([result(1, [3, 4]), result(1, [0, 5])], [1, 1])).toEqual([]);
    screen.commit();
    expect(screen.hasHistory).toBe(true);
    screen.startStep();
    // History [5, 5]: bound 50 × lowerMedian([5, 5, x]) = 250 for any large x.
    expect(screen.check(result(1, [0, 200]), 1)).toBeUndefined();
    const r = screen.check(result(1, [0, 1e6]), 1);
    expect(r?.fields).toMatchObject({ norm: 1e6, bound: 250 });
  });

  it('follows honest norms that drift: a tenfold rise over several steps passes', () => {
    const screen = new GradientScreen(LAYOUT, { history: 4 });
    screen.startStep();
    screen.review([result(1, [1, 0])], [1]);
    screen.commit();
    for (const norm of [3, 9, 27, 81]) {
      screen.startStep();
      expect(screen.check(result(1, [norm, 0]), 1)).toBeUndefined();
      screen.commit();
    }
  });

  it('rejects a count that is not the task\'s, and a negative variance', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    screen.review([result(1, [1, 0])], [1]);
    screen.commit();
    expect(screen.check(result(3, [1, 0]), 2)?.reason).toMatch(/3 samples answers a task of 2/);
    expect(screen.check(result(2, [1, 0], [0, -1]), 2)?.reason).toMatch(/never negative/);
  });

  it('does not learn from a step that was rejected or not committed', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    expect(screen.review([result(1, [1e21, 0])], [1])).toHaveLength(0); // alone, it is its own median
    // not committed (say Adam refused the step): the screen still has no history
    expect(screen.hasHistory).toBe(false);
  });
});

describe('checkTally', () => {
  it('accepts a finite loss sum >= 0 and an integer correct count from 0 to the count', () => {
    expect(checkTally({ lossSum: 0, correct: 0 }, 4)).toBeUndefined();
    expect(checkTally({ lossSum: 9.2, correct: 4 }, 4)).toBeUndefined();
  });

  it('rejects a negative or non-finite loss sum, and a correct count outside 0..count or fractional, each saying which', () => {
    expect(checkTally({ lossSum: -1, correct: 0 }, 4)?.reason).toMatch(/loss sum -1/);
    expect(checkTally({ lossSum: NaN, correct: 0 }, 4)?.reason).toMatch(/loss sum NaN/);
    expect(checkTally({ lossSum: 1, correct: 5 }, 4)?.reason).toMatch(/correct count 5; expected an integer from 0 to 4/);
    expect(checkTally({ lossSum: 1, correct: -1 }, 4)?.reason).toMatch(/correct count -1/);
    expect(checkTally({ lossSum: 1, correct: 1.5 }, 4)?.reason).toMatch(/correct count 1.5/);
  });
});

describe('GradientScreen on slices summarized elsewhere (the shared-memory step)', () => {
  // A slice as SharedStep.slice() gives it: the norm from its thread's Σg², the statistics in place.
  const slice = (norm: number, overrides: Partial<SliceSummary> = {}): SliceSummary => ({ count: 2, lossSum: 1, correct: 1, norm, hasGradient: true, stats: new Float32Array([0, 1]), ...overrides });

  it('judges a summarized slice exactly as the message it summarizes', () => {
    // ‖[6, 8]‖ / 2 = 5, as sliceNorm says.
    const s = summarize(result(2, [6, 8]));
    expect(s.norm).toBe(5);
    const a = new GradientScreen(LAYOUT);
    const b = new GradientScreen(LAYOUT);
    for (const screen of [a, b]) {
      screen.startStep();
      screen.review([result(2, [6, 8])], [2]);
      screen.commit();
    }
    // History [5]: the bound is 50 × lowerMedian([5, x]) = 250 for x ≥ 5. Norm 300 is over it, 50 within.
    expect(a.check(result(2, [600, 0]), 2)?.fields).toEqual({ norm: 300, bound: 250 });
    expect(b.checkSlice(summarize(result(2, [600, 0])), 2)?.fields).toEqual({ norm: 300, bound: 250 });
    expect(a.check(result(2, [100, 0]), 2)).toBeUndefined();
    expect(b.checkSlice(summarize(result(2, [100, 0])), 2)).toBeUndefined();
  });

  it('rejects a non-finite norm (a NaN or Infinity in the gradient) on its own, on review and on check', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    const rejected = screen.reviewSlices([slice(NaN), slice(1), slice(Infinity)], [2, 2, 2]);
    expect(rejected.map((r) => r.index)).toEqual([0, 2]);
    expect(rejected[0].rejection.reason).toMatch(/non-finite value \(norm NaN\)/);
    expect(rejected[1].rejection.reason).toMatch(/non-finite value \(norm Infinity\)/);
    screen.commit();
    expect(screen.checkSlice(slice(NaN), 2)?.reason).toMatch(/non-finite/);
    expect(screen.checkSlice(slice(1.5), 2)).toBeUndefined();
  });

  it('rejects a slice with a negative loss sum, an impossible correct count, or a non-finite statistic', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    const rejected = screen.reviewSlices([slice(1, { lossSum: -3 }), slice(1, { correct: 3 }), slice(1, { stats: new Float32Array([NaN, 1]) }), slice(1)], [2, 2, 2, 2]);
    expect(rejected.map((r) => r.rejection.reason)).toEqual([
      expect.stringMatching(/loss sum -3/),
      expect.stringMatching(/correct count 3; expected an integer from 0 to 2/),
      expect.stringMatching(/BatchNorm statistic 0 is NaN/),
    ]);
  });
});

describe('second opinions on outliers', () => {
  it('marks a rejection for the norm alone as an outlier (evidence), and the basics not', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    const [first] = screen.review([result(2, [6, 8]), result(2, [1e6, 0])], [2, 2]);
    expect(first.rejection.outlier).toBe(true);
    screen.commit();
    screen.startStep();
    expect(screen.check(result(1, [0, 1e6]), 1)?.outlier).toBe(true);
    expect(screen.check(result(3, [1, 0]), 2)?.outlier).toBeUndefined();
    expect(screen.check(result(1, [1, 0], [0, -1]), 1)?.outlier).toBeUndefined();
  });

  it('counts a confirmed outlier\'s norm, and the accepted norms of a review that rejected another', () => {
    const screen = new GradientScreen(LAYOUT);
    screen.startStep();
    // Norms 1, 1 and 1000: 1000 is over 50 × 1; confirmed by a second worker, it joins the history.
    expect(screen.review([result(1, [1, 0]), result(1, [0, 1]), result(1, [1000, 0])], [1, 1, 1]).map((r) => r.index)).toEqual([2]);
    screen.confirm(1000);
    screen.commit();
    // History [1, 1, 1000]: lowerMedian([1, 1, 1000, 60]) = 1, bound 50: one genuine outlier does not move the median...
    screen.startStep();
    expect(screen.check(result(1, [60, 0]), 1)?.fields).toMatchObject({ bound: 50 });
    screen.confirm(60);
    screen.commit();
    // ...and once genuine large norms are the majority, the median follows them: history [1, 1, 1000, 60].
    screen.startStep();
    expect(screen.check(result(1, [2000, 0]), 1)).toBeUndefined(); // bound 50 × lowerMedian([1, 1, 60, 1000, 2000]) = 3000
  });

  it('gradientsAgree: within a relative tolerance of the larger norm; 0 asks for identical values; counts must match', () => {
    const a = result(2, [100, 200]);
    expect(gradientsAgree(a, result(2, [100, 200]), 0)).toBe(true);
    expect(gradientsAgree(a, result(2, [100, 200.01]), 0)).toBe(false);
    // ‖[0, 0.01]‖ = 0.01 ≤ 1e-3 × 223.6
    expect(gradientsAgree(a, result(2, [100, 200.01]), 1e-3)).toBe(true);
    expect(gradientsAgree(a, result(2, [100, 201]), 1e-3)).toBe(false);
    expect(gradientsAgree(a, result(2, [1e21, 0]), 1e-3)).toBe(false);
    expect(gradientsAgree(a, result(3, [100, 200]), 1e-3)).toBe(false);
  });

  it('summariesAgree: norms within the tolerance; 0 asks for the same norm, loss and tally', () => {
    const s = (norm: number, lossSum = 1): SliceSummary => ({ count: 2, lossSum, correct: 1, norm, hasGradient: true });
    expect(summariesAgree(s(100), s(100), 0)).toBe(true);
    expect(summariesAgree(s(100), s(100, 1.5), 0)).toBe(false);
    expect(summariesAgree(s(100), s(100.05), 1e-3)).toBe(true);
    expect(summariesAgree(s(100), s(101), 1e-3)).toBe(false);
  });
});
