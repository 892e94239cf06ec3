/**
 * Robust aggregation for pools you do not trust (`--aggregation trimmed-mean|median`), the
 * coordinate-wise rules of Byzantine-tolerant SGD (Yin et al., 2018, "Byzantine-robust distributed
 * learning: towards optimal statistical rates"). Each slice's mean gradient (its sum / its count)
 * is one vote per coordinate:
 *
 *  - `median`: the median of the K votes (the mean of the two middle ones when K is even). With K ≥ 3
 *    it tolerates up to ⌈K/2⌉ − 1 arbitrary slices per coordinate.
 *  - `trimmed-mean`: drop the t = max(1, ⌊K/4⌋) largest and t smallest votes, average the rest;
 *    tolerates t arbitrary slices. With K < 3 nothing can be trimmed and it is the plain mean.
 *
 * What they assume: most slices are honest, and honest slices estimate the same gradient (the data
 * is shuffled, so the slices of a step are alike). What they cost: K × P floats of memory and a sort
 * of K values per coordinate (P = trainable parameters), against one pass for `mean`; and the
 * result is no longer the exact global-batch gradient, so it depends on K (a 1-worker run and a
 * 3-worker run differ) and is noisier than the mean when every worker is honest.
 */
import { bytesToFloats } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';

import { AGGREGATIONS, type Aggregation } from '../common/config.ts';

export { AGGREGATIONS, type Aggregation };

/** How many votes trimmed-mean drops from each end, for K slices. */
export function trimCount(k: number): number {
  return k < 3 ? 0 : Math.max(1, Math.floor(k / 4));
}

/** The robust mean gradient of the slices (train results with gradients). */
export function robustGradient(results: ResultMessage[], gradientCount: number, rule: Exclude<Aggregation, 'mean'>): Float32Array {
  const k = results.length;
  const means = results.map((r) => {
    const g = bytesToFloats(r.gradients!);
    const inv = 1 / r.count;
    const m = new Float64Array(gradientCount);
    for (let i = 0; i < gradientCount; i++) m[i] = g[i] * inv;
    return m;
  });
  const out = new Float32Array(gradientCount);
  const votes = new Float64Array(k);
  const trim = rule === 'trimmed-mean' ? trimCount(k) : 0;
  for (let i = 0; i < gradientCount; i++) {
    // Insertion sort: K is small, and TypedArray.sort's per-call cost dominates at this size (measured).
    for (let j = 0; j < k; j++) {
      const v = means[j][i];
      let at = j;
      while (at > 0 && votes[at - 1] > v) {
        votes[at] = votes[at - 1];
        at--;
      }
      votes[at] = v;
    }
    if (rule === 'median') {
      out[i] = k % 2 === 1 ? votes[(k - 1) / 2] : (votes[k / 2 - 1] + votes[k / 2]) / 2;
    } else {
      let sum = 0;
      for (let j = trim; j < k - trim; j++) sum += votes[j];
      out[i] = sum / (k - 2 * trim);
    }
  }
  return out;
}
