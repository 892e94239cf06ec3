/**
 * Combining the workers' results of one step: gradient sums are added and divided by the total
 * sample count, so the average does not depend on how the batch was sliced. BatchNorm moving
 * statistics are averaged weighted by each slice's sample count.
 */
import { bytesToFloats } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';

export interface StepAggregate {
  count: number;
  lossSum: number;
  correct: number;
  /** Mean gradient over the global batch. */
  gradient: Float32Array;
  /** Count-weighted mean of the moving statistics; empty when the model has none. */
  stats: Float32Array;
}

export function aggregateResults(results: ResultMessage[], gradientCount: number, statsCount: number): StepAggregate {
  const gradient = new Float32Array(gradientCount);
  const stats = new Float32Array(statsCount);
  let count = 0;
  let lossSum = 0;
  let correct = 0;
  for (const r of results) {
    count += r.count;
    lossSum += r.lossSum;
    correct += r.correct;
    const g = bytesToFloats(r.gradients!);
    for (let i = 0; i < gradientCount; i++) gradient[i] += g[i];
    if (statsCount > 0) {
      const s = bytesToFloats(r.stats!);
      for (let i = 0; i < statsCount; i++) stats[i] += s[i] * r.count;
    }
  }
  const inv = 1 / count;
  for (let i = 0; i < gradientCount; i++) gradient[i] *= inv;
  for (let i = 0; i < statsCount; i++) stats[i] *= inv;
  return { count, lossSum, correct, gradient, stats };
}

/** Splits `total` samples into `parts` contiguous slices whose sizes differ by at most one. */
export function sliceSizes(total: number, parts: number): number[] {
  const n = Math.max(1, Math.min(parts, total));
  const base = Math.floor(total / n);
  const extra = total % n;
  return Array.from({ length: n }, (_, i) => base + (i < extra ? 1 : 0));
}
