import { describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.ts';
import { fitPreprocessing, fitStandardization, oneHot, preprocessBatch, setStandardizer } from './preprocess.ts';
import type { ImageSet } from './types.ts';

/** Images filled with `fill`, except the listed features. */
function images(fill: number, features: Record<number, number[]>): ImageSet {
  const count = Object.values(features)[0].length;
  const set = { images: new Uint8Array(count * 3072).fill(fill), labels: new Uint8Array(count), count };
  for (const [feature, values] of Object.entries(features)) {
    values.forEach((v, i) => (set.images[i * 3072 + Number(feature)] = v));
  }
  return set;
}

describe('fitPreprocessing', () => {
  it('fits a standardization for flat standardized input and scales images otherwise', () => {
    const images = new Uint8Array(2 * 3072);
    images.fill(10, 0, 3072);
    images.fill(30, 3072);
    const set: ImageSet = { images, labels: new Uint8Array(2), count: 2 };
    const fitted = fitPreprocessing('flat-standardized', set);
    expect(fitted).toEqual(fitStandardization(set));
    expect(fitted.kind === 'standardize' && [fitted.mean[0], fitted.std[0]]).toEqual([20, 10]);
    expect(fitPreprocessing('image-scaled', set)).toEqual({ kind: 'scale' });
  });
});

describe('fitStandardization', () => {
  // Three images. Feature 0 holds 2, 4, 9: mean 5, deviations -3, -1, 4, squares 9 + 1 + 16 = 26,
  // population variance 26/3, std sqrt(26/3) ≈ 2.94392. Feature 5 holds 0, 255, 0: mean 85,
  // squares 85² + 170² + 85² = 43350, variance 14450, std ≈ 120.2082. Every other feature is 7
  // everywhere: mean 7, std 0, which becomes 1.
  const set = images(7, { 0: [2, 4, 9], 5: [0, 255, 0] });

  it('computes the per-feature mean and population std', () => {
    const prep = fitStandardization(set);
    expect(prep.kind).toBe('standardize');
    expect(prep.mean[0]).toBeCloseTo(5, 6);
    expect(prep.std[0]).toBeCloseTo(Math.sqrt(26 / 3), 5);
    expect(prep.mean[5]).toBeCloseTo(85, 6);
    expect(prep.std[5]).toBeCloseTo(120.2082, 3);
  });

  it('replaces a zero std with 1', () => {
    const prep = fitStandardization(set);
    expect(prep.mean[1]).toBe(7);
    expect(prep.std[1]).toBe(1);
    expect(prep.std[3071]).toBe(1);
  });

  it('returns 3072 values each', () => {
    const prep = fitStandardization(set);
    expect(prep.mean.length).toBe(3072);
    expect(prep.std.length).toBe(3072);
  });

  it('rejects an empty set', () => {
    expect(() => fitStandardization({ images: new Uint8Array(0), labels: new Uint8Array(0), count: 0 })).toThrow(ShapeError);
  });
});

describe('preprocessBatch', () => {
  it('scales bytes to [0, 1]', () => {
    const bytes = new Uint8Array(3072);
    bytes.set([0, 51, 255]);
    const out = preprocessBatch(bytes, { kind: 'scale' });
    expect(out[0]).toBe(0);
    expect(out[1]).toBeCloseTo(0.2, 7);
    expect(out[2]).toBe(1);
  });

  it('scales through an installed standardizer, with mean 0 and std 255, to the same bits as the table', () => {
    const bytes = Uint8Array.from({ length: 2 * 3072 }, (_, i) => (i * 7) & 255);
    const table = preprocessBatch(bytes, { kind: 'scale' });
    const seen: { mean: number[]; std: number[] }[] = [];
    // The standardization's own formula, (x − mean) / std in float64, as the native kernel computes it.
    setStandardizer((images, mean, std, out) => {
      seen.push({ mean: [...new Set(mean)], std: [...new Set(std)] });
      for (let i = 0; i < images.length; i++) out[i] = (images[i] - mean[i % 3072]) / std[i % 3072];
    });
    try {
      const viaStandardizer = preprocessBatch(bytes, { kind: 'scale' });
      expect(seen).toEqual([{ mean: [0], std: [255] }]);
      expect(Buffer.from(viaStandardizer.buffer).equals(Buffer.from(table.buffer))).toBe(true);
    } finally {
      setStandardizer(undefined);
    }
  });

  it('standardizes each feature with its own mean and std', () => {
    const set = images(7, { 0: [2, 4, 9], 5: [0, 255, 0] });
    const prep = fitStandardization(set);
    const out = preprocessBatch(set.images, prep);
    const s0 = Math.sqrt(26 / 3);
    // Feature 0 of the three images: (2-5)/s0, (4-5)/s0, (9-5)/s0 ≈ -1.01905, -0.33968, 1.35873.
    expect(out[0]).toBeCloseTo(-3 / s0, 5);
    expect(out[3072]).toBeCloseTo(-1 / s0, 5);
    expect(out[2 * 3072]).toBeCloseTo(4 / s0, 5);
    // Feature 5: (255-85)/120.2082 ≈ 1.41421 for the second image; the constant features become 0.
    expect(out[3072 + 5]).toBeCloseTo(Math.SQRT2, 5);
    expect(out[1]).toBe(0);
  });

  it('writes into a given buffer and returns it', () => {
    const out = new Float32Array(2 * 3072);
    expect(preprocessBatch(new Uint8Array(2 * 3072).fill(255), { kind: 'scale' }, out)).toBe(out);
    expect(out[6143]).toBe(1);
  });

  it('rejects an output buffer of the wrong size', () => {
    expect(() => preprocessBatch(new Uint8Array(3072), { kind: 'scale' }, new Float32Array(10))).toThrow(
      'Expected an output buffer of 3072 floats, but got 10.',
    );
  });

  it('rejects input that is not a whole number of images', () => {
    expect(() => preprocessBatch(new Uint8Array(100), { kind: 'scale' })).toThrow(ShapeError);
  });
});

describe('oneHot', () => {
  it('sets one 1 per row at the label', () => {
    expect([...oneHot(Uint8Array.from([2, 0]), 3)]).toEqual([0, 0, 1, 1, 0, 0]);
  });

  it('defaults to ten classes', () => {
    const out = oneHot(Uint8Array.from([9]));
    expect(out.length).toBe(10);
    expect(out[9]).toBe(1);
  });

  it('rejects a label outside the classes', () => {
    expect(() => oneHot(Uint8Array.from([1, 10]))).toThrow('Expected labels below 10, but label 1 is 10.');
  });
});
