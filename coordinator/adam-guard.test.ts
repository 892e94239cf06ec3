import { describe, expect, it } from 'vitest';
import { allFinite, MAX_SAFE_GRADIENT, unsafeGradient } from './adam-guard.ts';
import { Adam } from '../common/adam.ts';

describe('unsafeGradient', () => {
  it('passes ordinary gradients', () => {
    expect(unsafeGradient(new Float32Array([0, -3, 1e10, -1e18]))).toBeUndefined();
  });

  it('names the first value whose square would overflow float32, and NaN', () => {
    expect(unsafeGradient(new Float32Array([1, 2e19, 3]))).toEqual({ index: 1, value: Math.fround(2e19) });
    expect(unsafeGradient(new Float32Array([Number.NaN]))?.index).toBe(0);
  });

  it('guards exactly what breaks Adam: 1e21 makes v Infinity, the limit does not', () => {
    // The reason for the guard, shown on Adam itself: one step with g = 1e21 leaves v = Infinity.
    const broken = new Adam(1, { learningRate: 0.001 });
    broken.apply(new Float32Array([0]), new Float32Array([1e21]));
    expect(allFinite(broken.snapshot().v)).toBe(false);
    const fine = new Adam(1, { learningRate: 0.001 });
    fine.apply(new Float32Array([0]), new Float32Array([MAX_SAFE_GRADIENT]));
    expect(allFinite(fine.snapshot().v)).toBe(true);
  });
});
