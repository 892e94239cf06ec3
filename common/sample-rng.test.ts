import { describe, expect, it } from 'vitest';
import { lowbias32, sampleKey, uniformAt } from './sample-rng.ts';

describe('counter-based sample random numbers', () => {
  it('is a pure function of (seed, step, sample, element)', () => {
    expect(uniformAt(sampleKey(42, 7, 3), 100)).toBe(uniformAt(sampleKey(42, 7, 3), 100));
  });

  it('changes with each of seed, step, sample and element', () => {
    const base = uniformAt(sampleKey(42, 7, 3), 100);
    expect(uniformAt(sampleKey(43, 7, 3), 100)).not.toBe(base);
    expect(uniformAt(sampleKey(42, 8, 3), 100)).not.toBe(base);
    expect(uniformAt(sampleKey(42, 7, 4), 100)).not.toBe(base);
    expect(uniformAt(sampleKey(42, 7, 3), 101)).not.toBe(base);
    // Swapping step and sample gives another stream.
    expect(sampleKey(42, 3, 7)).not.toBe(sampleKey(42, 7, 3));
  });

  it('is uniform on [0, 1): mean 1/2, variance 1/12, no value outside', () => {
    let sum = 0;
    let sumSq = 0;
    const n = 200_000;
    for (let i = 0; i < n; i++) {
      const u = uniformAt(sampleKey(1, i >>> 10, i & 1023), i);
      expect(u >= 0 && u < 1).toBe(true);
      sum += u;
      sumSq += u * u;
    }
    const mean = sum / n;
    // Standard error of the mean is sqrt(1/12 / n) ≈ 6.5e-4; allow 5 of them.
    expect(Math.abs(mean - 0.5)).toBeLessThan(3.3e-3);
    expect(Math.abs(sumSq / n - mean * mean - 1 / 12)).toBeLessThan(2e-3);
  });

  it('gives neighbouring elements uncorrelated values', () => {
    const key = sampleKey(5, 0, 0);
    const n = 100_000;
    let c = 0;
    for (let i = 0; i < n; i++) c += (uniformAt(key, i) - 0.5) * (uniformAt(key, i + 1) - 0.5);
    // Correlation = c / n / (1/12); its standard error is about 1/sqrt(n) ≈ 3e-3.
    expect(Math.abs((c / n) * 12)).toBeLessThan(0.02);
  });

  it('hashes bijectively on a sample of inputs (no collisions among 100,000 consecutive)', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 100_000; i++) seen.add(lowbias32(i));
    expect(seen.size).toBe(100_000);
  });
});
