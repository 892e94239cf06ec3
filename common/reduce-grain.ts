/**
 * The reduction grain (`dtrain train --reduce-grain G`): gradients that do not depend on how many
 * workers shared the batch, bit for bit.
 *
 * Without it, each slice sums its samples' gradients in float32 and the slices' sums are added in
 * float32: the same mathematics at any K, but rounded at different places, and cnn-bn's training
 * amplifies a difference of one rounding to 1e-4 within 20 steps (docs/batchnorm.md). With it:
 *   - the batch is cut into groups of G samples from its first (the last may be shorter), and a
 *     slice always holds whole groups (coordinator/aggregate.ts alignedSliceSizes);
 *   - every sum over samples that a kernel does in float32 (weight and bias gradients) runs per
 *     group: the same samples, the same kernel call, the same float32 result whichever worker runs
 *     it (sampleGroups);
 *   - the groups' results are added in float64, in sample order, by the slice (addGroups) and then
 *     across slices by the reduction, which rounds to float32 once, after dividing by the count.
 *     A float64 sum of float32 values is exact unless they span more than ~2^29 in magnitude, so
 *     the order of the float64 additions does not show in the float32 result.
 * Synchronized BatchNorm (cnn-bn) keeps its own sums in float64. With a grain they are taken per
 * group too: each group's moments and backward sums are exchanged as a vector of their own and
 * combined over all groups in order (common/batch-moments.ts combineSlices, the same float64
 * operations whichever slices the groups were in), and the γ, β and pre-norm bias gradients are
 * rounded to float32 per group and added like the kernels' sums. So every model is bit-identical
 * at any K by construction.
 */
import type { Tensor } from './tf.ts';
import { hostFloats } from './host-floats.ts';

export interface SampleGroup {
  start: number;
  size: number;
}

/** The groups of `grain` samples of a slice of `count` samples that starts on a group boundary. */
export function sampleGroups(count: number, grain: number): SampleGroup[] {
  if (!Number.isInteger(grain) || grain < 1) throw new RangeError(`Expected a grain of at least 1 sample, but got ${grain}.`);
  const groups: SampleGroup[] = [];
  for (let start = 0; start < count; start += grain) groups.push({ start, size: Math.min(grain, count - start) });
  return groups;
}

function floatsOf(t: Tensor): Float32Array {
  return hostFloats(t) ?? (t.dataSync() as Float32Array);
}

/** Σ over the first axis of `groups` ([groups, ...]) in float64, in group order. */
export function sumGroups(groups: Tensor): Float64Array {
  const out = new Float64Array(groups.size / groups.shape[0]);
  addGroups(groups, out, 0);
  return out;
}

/**
 * Writes Σ over the first axis of `groups` ([groups, n...]) into out[at, at + n), in float64 and
 * group order: 0 + g_0 + g_1 + … (the reduction continues the same way across slices).
 */
export function addGroups(groups: Tensor, out: Float64Array, at: number): void {
  const values = floatsOf(groups);
  const n = groups.size / groups.shape[0];
  const dst = out.subarray(at, at + n);
  // 0 + g_0 is g_0 but for the sign of a zero, which the reduction's own 0 + … erases alike.
  dst.set(values.subarray(0, n));
  for (let g = 1; g < groups.shape[0]; g++) {
    const row = values.subarray(g * n, (g + 1) * n);
    for (let i = 0; i < n; i++) dst[i] += row[i];
  }
}

/**
 * Σ of the vectors, each element rounded to float32 first (as a kernel's sum would come out) and
 * added in float64 in order: exact, so the same at any grouping. `length` values from each.
 */
export function sumRounded(vectors: readonly ArrayLike<number>[], length: number): Float64Array {
  const out = new Float64Array(length);
  for (const v of vectors) for (let c = 0; c < length; c++) out[c] += Math.fround(v[c]);
  return out;
}
