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
