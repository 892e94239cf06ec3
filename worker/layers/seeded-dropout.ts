/**
 * Dropout whose mask is a function of (seed, step, sample): sample i of a slice is sample
 * `firstSample + i` of the step's global batch, and its mask comes from the counter-based hash in
 * common/sample-rng.ts. Slicing the batch over any number of workers, or resuming from a
 * checkpoint, gives every sample the same mask. Keras semantics otherwise: kept values are scaled
 * by 1 / (1 − rate), so the layer is the identity in expectation (and exactly so in inference).
 */
import { tf, type Tensor } from '../../common/tf.ts';
import { sampleKey, uniformAt } from '../../common/sample-rng.ts';

/** Where a slice sits in the run: which numbers its samples draw. */
export interface SamplePosition {
  seed: number;
  /** The global step (counted from the start of the run, across epochs and resumes). */
  step: number;
  /** Index of the slice's first sample within the step's global batch. */
  firstSample: number;
}

/** The scaled keep mask: `count` rows of `features` values, each 0 or 1 / (1 − rate); written into `out` when given (every value). */
export function dropoutMask(rate: number, count: number, features: number, at: SamplePosition, out?: Float32Array): Float32Array {
  const mask = out ?? new Float32Array(count * features);
  if (mask.length !== count * features) throw new RangeError(`Expected a mask array of ${count * features} values, but got ${mask.length}.`);
  const kept = 1 / (1 - rate);
  for (let i = 0; i < count; i++) {
    const key = sampleKey(at.seed, at.step, at.firstSample + i);
    const row = i * features;
    for (let j = 0; j < features; j++) mask[row + j] = uniformAt(key, j) >= rate ? kept : 0;
  }
  return mask;
}

/** Training-mode dropout of `x` (first axis: samples) with the mask of its samples' positions. */
export function seededDropout(x: Tensor, rate: number, at: SamplePosition): Tensor {
  if (rate <= 0) return x;
  const count = x.shape[0];
  const features = x.size / count;
  return tf.tidy(() => tf.mul(x, tf.tensor(dropoutMask(rate, count, features, at), x.shape)));
}
