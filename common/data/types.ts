/** The in-memory shape of a dataset, shared by the loaders, the trainer and the evaluators. */

/** `count` images of 32×32×3 uint8 in HWC order (pixel by pixel, R G B), and one label byte each. */
export interface ImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
}

export interface DatasetSplits {
  train: ImageSet;
  val: ImageSet;
  test: ImageSet;
  classNames: readonly string[];
  /** For logs and reports: "cifar10 (/path/to/cifar-10-batches-bin)" or "synthetic (seed 42)". */
  source: string;
  /** Identifies the content (file bytes, or the generator's parameters); see load.ts. */
  fingerprint?: string;
}

/** Label index → name, in the order of CIFAR-10's batches.meta.txt. */
export const CIFAR10_CLASSES: readonly string[] = Object.freeze([
  'airplane',
  'automobile',
  'bird',
  'cat',
  'deer',
  'dog',
  'frog',
  'horse',
  'ship',
  'truck',
]);

export const IMAGE_BYTES = 32 * 32 * 3;

/**
 * An empty set of `count` images. `shared`: its bytes lie in SharedArrayBuffers, which compute
 * threads can read without a copy (the training split, whose slices the threads of the
 * shared-memory step copy in themselves: coordinator/step-ahead.ts).
 */
export function newImageSet(count: number, shared = false): ImageSet {
  const bytes = (n: number) => (shared ? new Uint8Array(new SharedArrayBuffer(n)) : new Uint8Array(n));
  return { images: bytes(count * IMAGE_BYTES), labels: bytes(count), count };
}

/** Whether the set's bytes lie in shared memory (newImageSet with `shared`). */
export function isSharedSet(set: ImageSet): boolean {
  return set.images.buffer instanceof SharedArrayBuffer && set.labels.buffer instanceof SharedArrayBuffer;
}
