import { describe, expect, it } from 'vitest';
import { simdSumSquaresKernel, sumSquares } from './sum-squares-simd.ts';
import { StepMemory } from './step-memory.ts';

/** A shared memory like the step's, with `values` at byte offset 64 (the kernel reads whole 16-byte lanes). */
function inMemory(values: Float32Array): { run: () => number } {
  const mem = StepMemory.create({ trainable: 4, stats: 0, slots: 1, slotSamples: 1, threads: 1 });
  const kernel = simdSumSquaresKernel(mem.memory, true);
  if (!kernel) throw new Error('WebAssembly SIMD is not available on this Node');
  new Float32Array(mem.memory.buffer, 64, values.length).set(values);
  return { run: () => kernel(values.length * 4, 64) };
}

describe('sumSquares (SIMD over shared memory, and JavaScript)', () => {
  it('sums squares of a hand-worked vector: 1 + 4 + 9 + 16 + 0.25 + 0 + 0 + 0 = 30.25', () => {
    const v = Float32Array.from([1, -2, 3, -4, 0.5, 0, 0, 0]);
    expect(inMemory(v).run()).toBe(30.25);
    expect(sumSquares(v)).toBe(30.25);
  });

  it('agrees with the float64 JavaScript sum on 4,096 random values to rounding', () => {
    const v = Float32Array.from({ length: 4096 }, (_, i) => Math.sin(i * 1.7) * 3);
    const expected = sumSquares(v);
    expect(inMemory(v).run()).toBeCloseTo(expected, 8);
  });

  it('does not overflow where float32 would: 1e21 squared is 1e42 in float64', () => {
    const v = Float32Array.from([1e21, 0, 0, 0]);
    const sq = inMemory(v).run();
    expect(Number.isFinite(sq)).toBe(true);
    expect(sq / Math.fround(1e21) ** 2).toBeCloseTo(1, 12);
  });

  it('reads NaN when any value is NaN, and Infinity when any is infinite', () => {
    expect(inMemory(Float32Array.from([1, 2, NaN, 4])).run()).toBeNaN();
    expect(inMemory(Float32Array.from([1, 2, 3, 4, 5, -Infinity, 0, 0])).run()).toBe(Infinity);
    expect(sumSquares(Float32Array.from([NaN]))).toBeNaN();
  });
});

describe('sumSquares over float64 values (a reduction grain\'s slots)', () => {
  it('sums squares of float64 values, two per 16 bytes, with NaN and overflow read as before', () => {
    const mem = StepMemory.create({ trainable: 8, stats: 0, slots: 1, slotSamples: 1, threads: 1, grain: 2 });
    const kernel = simdSumSquaresKernel(mem.memory, true, true);
    if (!kernel) throw new Error('WebAssembly SIMD is not available on this Node');
    const run = (values: number[]) => {
      new Float64Array(mem.memory.buffer, 64, values.length).set(values);
      return kernel(values.length * 8, 64);
    };
    // 1 + 2^-30 would be lost in float32: float64 values keep it.
    expect(run([1 + 2 ** -30, -2, 3, -4])).toBe((1 + 2 ** -30) ** 2 + 4 + 9 + 16);
    const v = Array.from({ length: 1024 }, (_, i) => Math.sin(i * 1.3) * 5);
    expect(run(v)).toBeCloseTo(sumSquares(Float64Array.from(v)), 8);
    expect(run([1e200, 1e200])).toBe(Infinity);
    expect(run([1, NaN])).toBeNaN();
  });
});
