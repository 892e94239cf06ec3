import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from '../../common/tf.ts';
import { dropoutMask, seededDropout } from './seeded-dropout.ts';

describe('seeded dropout', () => {
  it('drops about `rate` of the values and scales the rest by 1 / (1 - rate)', () => {
    const mask = dropoutMask(0.3, 64, 1024, { seed: 42, step: 3, firstSample: 0 });
    const kept = mask.filter((v) => v !== 0);
    // 65,536 draws: the kept fraction's standard error is about 0.0018.
    expect(kept.length / mask.length).toBeGreaterThan(0.69);
    expect(kept.length / mask.length).toBeLessThan(0.71);
    expect(new Set(kept)).toEqual(new Set([Math.fround(1 / 0.7)]));
  });

  it('writes every value of a given array, whatever it held, and refuses one of the wrong length', () => {
    const at = { seed: 5, step: 2, firstSample: 3 };
    const out = new Float32Array(4 * 30).fill(NaN);
    expect(dropoutMask(0.4, 4, 30, at, out)).toBe(out);
    expect(out).toEqual(dropoutMask(0.4, 4, 30, at));
    expect(() => dropoutMask(0.4, 4, 30, at, new Float32Array(119))).toThrow(/Expected a mask array of 120 values, but got 119/);
  });

  it('gives a sample the same mask whatever slice it is in', () => {
    const whole = dropoutMask(0.3, 12, 50, { seed: 1, step: 9, firstSample: 0 });
    const slices = [0, 4, 8].map((first) => dropoutMask(0.3, 4, 50, { seed: 1, step: 9, firstSample: first }));
    const joined = new Float32Array(whole.length);
    slices.forEach((s, i) => joined.set(s, i * 4 * 50));
    expect(joined).toEqual(whole);
  });

  it('draws a new mask each step and for each seed', () => {
    const a = dropoutMask(0.5, 2, 64, { seed: 1, step: 1, firstSample: 0 });
    expect(dropoutMask(0.5, 2, 64, { seed: 1, step: 2, firstSample: 0 })).not.toEqual(a);
    expect(dropoutMask(0.5, 2, 64, { seed: 2, step: 1, firstSample: 0 })).not.toEqual(a);
  });

  it('multiplies the input by the mask, with the gradient through the kept values', () => {
    const at = { seed: 3, step: 0, firstSample: 5 };
    const x = tf.ones([2, 3, 4]);
    const mask = dropoutMask(0.3, 2, 12, at);
    const y = seededDropout(x, 0.3, at);
    expect(Array.from(y.dataSync())).toEqual(Array.from(mask));
    const g = tf.grad((t: Tensor) => tf.sum(seededDropout(t, 0.3, at)))(x);
    expect(Array.from(g.dataSync())).toEqual(Array.from(mask));
    tf.dispose([x, y, g]);
  });

  it('creates no lasting tensors', () => {
    const x = tf.ones([4, 8]);
    const before = tf.memory().numTensors;
    const y = seededDropout(x, 0.3, { seed: 0, step: 0, firstSample: 0 });
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    x.dispose();
  });
});
