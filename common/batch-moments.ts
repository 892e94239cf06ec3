/**
 * Per-channel moments of a batch, kept as (count, mean, M2 = Σ(x − mean)²) in float64 so that the
 * moments of slices combine exactly into those of the whole batch (Chan, Golub and LeVeque's
 * parallel variance, i.e. the law of total variance). Used by synchronized BatchNorm on the workers
 * and by the coordinator, which combines the slices' moments and updates the moving statistics.
 *
 * Layout of a moments vector for C channels: [n, mean_0 … mean_{C−1}, M2_0 … M2_{C−1}].
 */

export function momentsLength(channels: number): number {
  return 1 + 2 * channels;
}

/** Moments of `x`, whose last axis is the channel (NHWC, or [N, C] for dense activations). */
export function localMoments(x: Float32Array, channels: number): Float64Array {
  const out = new Float64Array(momentsLength(channels));
  const rows = x.length / channels;
  const mean = out.subarray(1, 1 + channels);
  const m2 = out.subarray(1 + channels);
  out[0] = rows;
  if (rows === 0) return out;
  // Two passes (mean, then squared deviations from it): no cancellation, unlike Σx² − n·mean².
  for (let i = 0; i < x.length; i += channels) for (let c = 0; c < channels; c++) mean[c] += x[i + c];
  for (let c = 0; c < channels; c++) mean[c] /= rows;
  for (let i = 0; i < x.length; i += channels) {
    for (let c = 0; c < channels; c++) {
      const d = x[i + c] - mean[c];
      m2[c] += d * d;
    }
  }
  return out;
}

/** The moments of the union of the parts, combined in the order given. */
export function combineMoments(parts: readonly Float64Array[], channels: number): Float64Array {
  const out = new Float64Array(momentsLength(channels));
  let n = 0;
  for (const p of parts) n += p[0];
  out[0] = n;
  if (n === 0) return out;
  for (let c = 0; c < channels; c++) {
    let s = 0;
    for (const p of parts) s += p[0] * p[1 + c];
    const mean = s / n;
    let m2 = 0;
    for (const p of parts) {
      const d = p[1 + c] - mean;
      m2 += p[1 + channels + c] + p[0] * d * d;
    }
    out[1 + c] = mean;
    out[1 + channels + c] = m2;
  }
  return out;
}

/** Element-wise sum of equally long vectors, in the order given. */
export function sumVectors(parts: readonly Float64Array[], length: number): Float64Array {
  const out = new Float64Array(length);
  for (const p of parts) for (let i = 0; i < length; i++) out[i] += p[i];
  return out;
}

/**
 * One synchronized BatchNorm exchange's totals from every slice's sums, combined in the order of
 * the slices' first samples so that arrival order never matters: moments for the forward phase,
 * plain sums ([Σdy…, Σdy·x̂…]) for the backward. A slice may send several vectors one after the
 * other (one per group of a reduction grain, common/reduce-grain.ts): every vector is then a part
 * of its own, in order, so the totals are the same float64 operations whatever the slicing.
 */
export function combineSlices(phase: 'forward' | 'backward', parts: readonly { firstSample: number; sums: Float64Array }[], channels: number): Float64Array {
  const length = phase === 'forward' ? momentsLength(channels) : 2 * channels;
  const ordered: Float64Array[] = [];
  for (const p of [...parts].sort((a, b) => a.firstSample - b.firstSample)) {
    if (p.sums.length === 0 || p.sums.length % length !== 0) throw new RangeError(`Expected BatchNorm sums of whole vectors of ${length} values, but got ${p.sums.length}.`);
    for (let at = 0; at < p.sums.length; at += length) ordered.push(p.sums.subarray(at, at + length));
  }
  return phase === 'forward' ? combineMoments(ordered, channels) : sumVectors(ordered, length);
}

/**
 * Keras's (and tfjs-layers') moving average, `moving − (moving − batch)·(1 − momentum)`, computed
 * in float32 step by step as tfjs does, so the coordinator's update equals a worker's.
 */
export function movingAverage(moving: Float32Array, batch: ArrayLike<number>, momentum: number): void {
  const decay = Math.fround(1 - momentum);
  for (let i = 0; i < moving.length; i++) {
    const delta = Math.fround(Math.fround(moving[i] - Math.fround(batch[i])) * decay);
    moving[i] = Math.fround(moving[i] - delta);
  }
}
