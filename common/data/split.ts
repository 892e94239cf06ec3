/**
 * Which dev-set images become training and which validation images, and how the size limits cut
 * them. Works on indices, not pixels, so that the synthetic generator can make only the images a
 * limited run will use.
 */
import { ShapeError } from '../errors.ts';
import { loadNativeKernels } from '../kernels/native/addon.ts';
import { permutation } from '../random.ts';
import { IMAGE_BYTES, newImageSet, type ImageSet } from './types.ts';

/** CIFAR-10's 50,000 dev images split 40,000 / 10,000, as the assignment asks. */
export const VALIDATION_FRACTION = 0.2;

export interface SplitSelection {
  /** Dev-set indices for training, in shuffled order. */
  train: Uint32Array;
  /** Dev-set indices for validation, in shuffled order, disjoint from `train`. */
  val: Uint32Array;
  /** Test-set indices: the first `limitTest` in file order. */
  test: Uint32Array;
}

/**
 * A seeded shuffle of the dev set: the last fifth of the permutation is validation. The limits take
 * prefixes of each part, so a limited run sees a subset of the full run's images, and
 * `limitTrain` N keeps the 80/20 ratio with ceil(N / 4) validation images.
 */
export function selectSplits(
  devCount: number,
  testCount: number,
  seed: number,
  limits: { limitTrain?: number; limitTest?: number } = {},
): SplitSelection {
  const order = permutation(devCount, seed);
  const valCount = Math.round(devCount * VALIDATION_FRACTION);
  const trainPart = order.subarray(0, devCount - valCount);
  const valPart = order.subarray(devCount - valCount);
  const { limitTrain, limitTest } = limits;
  const trainTake = limitTrain === undefined ? trainPart.length : Math.min(limitTrain, trainPart.length);
  const valTake = limitTrain === undefined ? valPart.length : Math.min(Math.ceil(limitTrain / 4), valPart.length);
  const testTake = limitTest === undefined ? testCount : Math.min(limitTest, testCount);
  const test = new Uint32Array(testTake);
  for (let i = 0; i < testTake; i++) test[i] = i;
  return { train: trainPart.slice(0, trainTake), val: valPart.slice(0, valTake), test };
}

/** A new ImageSet holding `indices` of `set`, in that order (`shared`: see newImageSet). */
export function gatherImages(set: ImageSet, indices: Uint32Array, shared = false): ImageSet {
  const out = newImageSet(indices.length, shared);
  gatherInto(set, indices, out.images, out.labels);
  return out;
}

/** The labels at `indices` of `set` into `labels` (at least indices.length long); checks every index. */
export function gatherLabels(set: ImageSet, indices: Uint32Array, labels: Uint8Array): void {
  if (indices.length > labels.length) throw new ShapeError(`Expected room for ${indices.length} labels, but the target holds ${labels.length}.`);
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    if (k >= set.count) throw new ShapeError(`Expected indices below ${set.count}, but index ${i} is ${k}.`);
    labels[i] = set.labels[k];
  }
}

/** gatherImages into arrays the caller owns (at least indices.length images and labels long). */
export function gatherInto(set: ImageSet, indices: Uint32Array, images: Uint8Array, labels: Uint8Array): void {
  if (indices.length * IMAGE_BYTES > images.length || indices.length > labels.length) {
    throw new ShapeError(`Expected room for ${indices.length} images (${indices.length * IMAGE_BYTES} bytes) and labels, but the targets hold ${images.length} bytes and ${labels.length} labels.`);
  }
  gatherLabels(set, indices, labels);
  if (indices.length === 0) return;
  // Into shared memory (the shared-memory step's slots), TypedArray.set copies word by word (V8's
  // relaxed memmove): 56-63 µs for 64 random images of a 40,000-image set, against 20-24 µs for the
  // native row copy (one memmove per image, the next one prefetched). Into ordinary memory it is a
  // memcpy already, and the addon is not loaded for it.
  const native = images.buffer instanceof SharedArrayBuffer ? loadNativeKernels() : undefined;
  if (native?.loaded) {
    native.kernels.gatherRows(images, 0, set.images, indices, IMAGE_BYTES);
    return;
  }
  for (let i = 0; i < indices.length; i++) {
    const k = indices[i];
    images.set(set.images.subarray(k * IMAGE_BYTES, (k + 1) * IMAGE_BYTES), i * IMAGE_BYTES);
  }
}
