import { describe, expect, it } from 'vitest';
import { addGroups, alignedSliceSizes, sampleGroups, sumGroups } from './reduce-grain.ts';
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
