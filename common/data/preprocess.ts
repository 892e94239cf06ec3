/**
 * Turns uint8 images into model inputs. Kept separate from loading so that the raw bytes stay small
 * (a quarter of float32) until a batch is actually needed.
 */
import { ShapeError } from '../errors.ts';
import { IMAGE_BYTES, type ImageSet } from './types.ts';
import type { InputKind } from '../models.ts';

export type Preprocessing = { kind: 'scale' } | { kind: 'standardize'; mean: Float32Array; std: Float32Array };

/** What a model whose input is `input` trains on: standardization fitted on `set` (the mlp), else scaling to [0, 1]. */
export function fitPreprocessing(input: InputKind, set: ImageSet): Preprocessing {
  return input === 'flat-standardized' ? fitStandardization(set) : { kind: 'scale' };
}

/**
 * Per-feature (3072 values, HWC-flattened) mean and population standard deviation over `set`, as
 * sklearn's StandardScaler computes them. A feature that never varies gets std 1, so it maps to 0
 * instead of dividing by zero.
 */
export function fitStandardization(set: ImageSet): { kind: 'standardize'; mean: Float32Array; std: Float32Array } {
  const { images, count } = set;
  if (count <= 0) throw new ShapeError('Expected at least one image to fit a standardization, but got 0.');
  if (images.length !== count * IMAGE_BYTES) {
    throw new ShapeError(`Expected ${count} × ${IMAGE_BYTES} = ${count * IMAGE_BYTES} image bytes, but got ${images.length}.`);
  }
  // uint8 sums stay exact integers in float64 (up to 2^53 / 255^2 ≈ 10^11 images), so the
  // one-pass variance n·Σx² − (Σx)² is exact and a constant feature gives exactly 0.
  const sum = new Float64Array(IMAGE_BYTES);
  const sumSq = new Float64Array(IMAGE_BYTES);
  for (let i = 0; i < count; i++) {
    const base = i * IMAGE_BYTES;
    for (let j = 0; j < IMAGE_BYTES; j++) {
      const x = images[base + j];
      sum[j] += x;
      sumSq[j] += x * x;
    }
  }
  const mean = new Float32Array(IMAGE_BYTES);
  const std = new Float32Array(IMAGE_BYTES);
  for (let j = 0; j < IMAGE_BYTES; j++) {
    mean[j] = sum[j] / count;
    const variance = (count * sumSq[j] - sum[j] * sum[j]) / (count * count);
    std[j] = variance > 0 ? Math.sqrt(variance) : 1;
  }
  return { kind: 'standardize', mean, std };
}

// x / 255 for every byte, computed once: a lookup is both faster and bit-identical to the division.
const SCALE_TABLE = Float32Array.from({ length: 256 }, (_, i) => i / 255);
// `scale` as a standardization with mean 0 and std 255: (x − 0) / 255 in float64, rounded to
// float32, is the table's i / 255 for every byte (preprocess.test.ts checks all 256). A faster
// standardizer (the native kernels') then scales too: 41 against 170 µs for 32 images here.
const SCALE_MEAN = new Float32Array(IMAGE_BYTES);
const SCALE_STD = new Float32Array(IMAGE_BYTES).fill(255);

/** Computes the `standardize` loop below bit for bit, faster (the optional native kernels register one). */
export type Standardizer = (images: Uint8Array, mean: Float32Array, std: Float32Array, out: Float32Array) => void;
let standardizer: Standardizer | undefined;

/** Installs (or, with undefined, removes) a faster standardization; it must match the loop exactly. */
export function setStandardizer(f: Standardizer | undefined): void {
  standardizer = f;
}

/** `scale`: x / 255. `standardize`: (x − mean[j]) / std[j] for feature j = index mod 3072. */
export function preprocessBatch(images: Uint8Array, prep: Preprocessing, out?: Float32Array): Float32Array {
  if (images.length % IMAGE_BYTES !== 0) {
    throw new ShapeError(`Expected a whole number of ${IMAGE_BYTES}-byte images, but got ${images.length} bytes.`);
  }
  const result = out ?? new Float32Array(images.length);
  if (result.length !== images.length) {
    throw new ShapeError(`Expected an output buffer of ${images.length} floats, but got ${result.length}.`);
  }
  if (prep.kind === 'scale') {
    if (standardizer) standardizer(images, SCALE_MEAN, SCALE_STD, result);
    else for (let i = 0; i < images.length; i++) result[i] = SCALE_TABLE[images[i]];
    return result;
  }
  const { mean, std } = prep;
  if (mean.length !== IMAGE_BYTES || std.length !== IMAGE_BYTES) {
    throw new ShapeError(`Expected mean and std of ${IMAGE_BYTES} values, but got ${mean.length} and ${std.length}.`);
  }
  if (standardizer) {
    standardizer(images, mean, std, result);
    return result;
  }
  for (let base = 0; base < images.length; base += IMAGE_BYTES) {
    for (let j = 0; j < IMAGE_BYTES; j++) result[base + j] = (images[base + j] - mean[j]) / std[j];
  }
  return result;
}

/** Row i has a 1 at column labels[i]. */
export function oneHot(labels: Uint8Array, numClasses = 10): Float32Array {
  const out = new Float32Array(labels.length * numClasses);
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i];
    if (label >= numClasses) throw new ShapeError(`Expected labels below ${numClasses}, but label ${i} is ${label}.`);
    out[i * numClasses + label] = 1;
  }
  return out;
}
