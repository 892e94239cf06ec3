/**
 * BatchNorm moving statistics, updated once per step by the coordinator. Each slice reports its
 * batch mean and biased variance per layer (in the places of the layer's moving mean and
 * variance); the law of total variance combines them into the global batch's,
 *
 *   mean = Σ nₖ·meanₖ / N        var = Σ nₖ·(varₖ + (meanₖ − mean)²) / N,
 *
 * and Keras's moving average (momentum 0.99, biased variance, as tfjs-layers) moves the statistics.
 * The result does not depend on how the batch was sliced: the moving variance keeps the
 * between-slice part that averaging the slices' variances would lose.
 */
import { movingAverage } from '../common/batch-moments.ts';

export interface SliceMoments {
  /** Samples in the slice (every layer's count is this times the layer's spatial size). */
  count: number;
  /** The slice's stats vector: per layer, C means then C variances. */
  stats: Float32Array;
}

/** The global batch's mean and variance per channel, laid out as the stats vector. */
export function combineSliceMoments(channels: readonly number[], slices: readonly SliceMoments[]): Float64Array {
  const total = channels.reduce((s, c) => s + 2 * c, 0);
  const out = new Float64Array(total);
  let n = 0;
  for (const s of slices) n += s.count;
  let offset = 0;
  for (const c of channels) {
    for (let j = 0; j < c; j++) {
      let sum = 0;
      for (const s of slices) sum += s.count * s.stats[offset + j];
      const mean = sum / n;
      let m2 = 0;
      for (const s of slices) {
        const d = s.stats[offset + j] - mean;
        m2 += s.count * (s.stats[offset + c + j] + d * d);
      }
      out[offset + j] = mean;
      out[offset + c + j] = m2 / n;
    }
    offset += 2 * c;
  }
  return out;
}

/** Moves `moving` (the layout's non-trainable weights) toward the step's global batch moments. */
export function updateMovingStats(moving: Float32Array, channels: readonly number[], slices: readonly SliceMoments[], momentum: number): void {
  if (slices.length === 0) return;
  movingAverage(moving, combineSliceMoments(channels, slices), momentum);
}
