import { describe, expect, it } from 'vitest';
import { checkStats, GradientScreen, lowerMedian, sliceNorm } from './result-check.ts';
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
