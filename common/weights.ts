/**
 * The flat weight layout: every variable of a model, in `model.weights` order (trainable first, then
 * non-trainable such as BatchNorm moving statistics), concatenated into one Float32Array. The
 * coordinator, the optimizer, the wire and the checkpoint all use this one order.
 */
import type { LayersModel } from './tf.ts';
import { SeededRandom } from './random.ts';
import { ShapeError } from './errors.ts';

export interface WeightEntry {
  name: string;
  shape: number[];
  size: number;
  offset: number;
  trainable: boolean;
  /** What the variable is, for initialisation: kernel, bias, gamma, beta, moving_mean, moving_variance. */
  role: string;
}

export interface WeightLayout {
  entries: WeightEntry[];
  totalSize: number;
  /** Trainable entries come first, so trainable values are `flat.subarray(0, trainableSize)`. */
  trainableSize: number;
}

export function weightLayout(model: LayersModel): WeightLayout {
  const entries: WeightEntry[] = [];
  let offset = 0;
  let trainableSize = 0;
  let seenFrozen = false;
  for (const w of model.weights) {
    const shape = w.shape.map((d) => d ?? 1);
    const size = shape.reduce((a, b) => a * b, 1);
    if (w.trainable && seenFrozen) throw new ShapeError(`Weight ${w.name} is trainable but follows a non-trainable weight; the flat layout needs trainable weights first.`);
    if (!w.trainable) seenFrozen = true;
    // Strip the uniquifying suffix tfjs adds ("dense/kernel_3" -> "dense/kernel").
    const name = w.originalName ?? w.name;
    const role = name.split('/').pop()!.replace(/_\d+$/, '');
    entries.push({ name, shape, size, offset, trainable: w.trainable, role });
    offset += size;
    if (w.trainable) trainableSize += size;
  }
  return { entries, totalSize: offset, trainableSize };
}

/**
 * Keras's default initial values, drawn from our own seeded generator so that every process
 * (and every K) starts from the same weights: glorot-uniform kernels, zero biases, BatchNorm
 * gamma 1, beta 0, moving mean 0, moving variance 1.
 */
export function initialWeights(layout: WeightLayout, seed: number): Float32Array {
  const flat = new Float32Array(layout.totalSize);
  const rng = new SeededRandom(seed);
  for (const e of layout.entries) {
    const view = flat.subarray(e.offset, e.offset + e.size);
    if (e.role === 'kernel') {
      const receptive = e.shape.slice(0, -2).reduce((a, b) => a * b, 1);
      const fanIn = e.shape[e.shape.length - 2] * receptive;
      const fanOut = e.shape[e.shape.length - 1] * receptive;
      const limit = Math.sqrt(6 / (fanIn + fanOut));
      for (let i = 0; i < view.length; i++) view[i] = (rng.next() * 2 - 1) * limit;
    } else if (e.role === 'gamma' || e.role === 'moving_variance') {
      view.fill(1);
    }
  }
  return flat;
}

export function assertLength(what: string, actual: number, expected: number): void {
  if (actual !== expected) throw new ShapeError(`Expected ${what} of ${expected} float32 values, but got ${actual}.`);
}
