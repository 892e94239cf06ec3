import { describe, expect, it } from 'vitest';
import { addGroups, sampleGroups, sumGroups, sumRounded } from './reduce-grain.ts';
import { tf } from './tf.ts';

describe('sampleGroups', () => {
  it('cuts a slice into groups of the grain from its first sample, the last one shorter', () => {
    expect(sampleGroups(10, 4)).toEqual([{ start: 0, size: 4 }, { start: 4, size: 4 }, { start: 8, size: 2 }]);
    expect(sampleGroups(8, 4)).toEqual([{ start: 0, size: 4 }, { start: 4, size: 4 }]);
    expect(sampleGroups(3, 8)).toEqual([{ start: 0, size: 3 }]);
  });

  it('refuses a grain below one sample', () => {
    expect(() => sampleGroups(4, 0)).toThrow(/grain of at least 1 sample, but got 0/);
    expect(() => sampleGroups(4, 1.5)).toThrow(/but got 1.5/);
  });
});

describe('addGroups', () => {
  it('writes 0 + g_0 + g_1 + ... in float64 and group order, over what was there', () => {
    const values = Float32Array.from([1e8, 1, 3, -1e8, 0.5, 2.25, 7, 1e-8, -2]);
    const groups = tf.tensor2d(values, [3, 3]);
    const out = new Float64Array(5).fill(99);
    addGroups(groups, out, 1);
    // Columns: 1e8 + (−1e8) + 7, 1 + 0.5 + 1e-8, 3 + 2.25 − 2; float32 would lose the 1 and the 1e-8.
    expect(Array.from(out)).toEqual([99, 0 + 1e8 + -1e8 + 7, 0 + 1 + 0.5 + Math.fround(1e-8), 0 + 3 + 2.25 + -2, 99]);
    expect(Array.from(sumGroups(groups))).toEqual(Array.from(out.subarray(1, 4)));
    groups.dispose();
  });
});

describe('sumRounded', () => {
  it('rounds each vector\'s values to float32 and adds them in float64, in order', () => {
    const a = Float64Array.from([1 + 2 ** -40, 0.1]);
    const b = Float64Array.from([2 ** -30, 0.2]);
    // 1 + 2^-40 rounds to 1 in float32; 2^-30 is a float32 value, and float64 keeps 1 + 2^-30.
    expect(Array.from(sumRounded([a, b], 2))).toEqual([1 + 2 ** -30, Math.fround(0.1) + Math.fround(0.2)]);
    expect(Array.from(sumRounded([], 2))).toEqual([0, 0]);
  });
});
