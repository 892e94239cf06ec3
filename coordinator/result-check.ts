/**
 * Results are checked before they count. The codec has already checked that every float is finite
 * and every tensor has its size; here the question is whether a well-formed result is plausible:
 *
 *  - its sample count is the task's;
 *  - its BatchNorm statistics are possible (a variance is never negative);
 *  - its gradient norm is within an adaptive bound: `factor` × the lower median of the per-sample
 *    gradient norms of recent accepted slices and of this step's slices so far. A median moves
 *    only when most slices move, so one worker answering with 1e21 (or 1e6) cannot raise the bound
 *    it is judged by, while honest norms that drift over training keep passing.
 *
 * The norm of a slice is ‖gradient sum‖ / count (the norm of the slice's mean gradient), so slices
 * of different sizes compare. With no accepted history yet (the first step), nothing is known about
 * the scale: the step is reviewed as a whole once every slice has answered (`review`), and the
 * lower median of the slices decides. With two slices of which one is poisoned, the lower median is
 * the honest one's; in general the screen assumes most slices of the step and of the history are
 * honest (see docs/reliability.md, threat model).
 */
import { bytesToFloats } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';
import type { WeightLayout } from '../common/weights.ts';

export interface Rejection {
  reason: string;
  /** Logged with the `result_rejected` line: norm and bound, or the bad value and where it is. */
  fields: Record<string, number | string>;
}

export interface ScreenOptions {
  /** A slice whose norm exceeds factor × the reference is rejected. Default 50. */
  factor?: number;
  /** Accepted norms kept as the reference. Default 64. */
  history?: number;
}

/** ‖gradient sum‖ / count, in float64 (a float32 sum of squares of 1e21s would overflow). */
export function sliceNorm(result: ResultMessage): number {
  const g = bytesToFloats(result.gradients!);
  let sq = 0;
  for (let i = 0; i < g.length; i++) sq += g[i] * g[i];
  return Math.sqrt(sq) / Math.max(1, result.count);
}

/** The lower median: with an even count, the smaller middle value (so one outlier of two cannot win). */
export function lowerMedian(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * BatchNorm statistics that no honest slice can produce: a negative or non-finite variance. A
 * result's `stats` hold, in the places of each layer's moving mean and moving variance, the slice's
 * batch mean and biased variance (coordinator/moving-stats.ts combines them), so the variance
 * places are checked. `stats` is the non-trainable part of the layout, in layout order.
 */
export function checkStats(stats: Float32Array, layout: WeightLayout): Rejection | undefined {
  for (const e of layout.entries) {
    if (e.trainable || e.role !== 'moving_variance') continue;
    const from = e.offset - layout.trainableSize;
    for (let i = 0; i < e.size; i++) {
      const v = stats[from + i];
      if (!(v >= 0) || !Number.isFinite(v)) return { reason: `${e.name}[${i}] is ${v}; a variance is never negative`, fields: { stat: e.name, index: i, value: v } };
    }
  }
  return undefined;
}

export class GradientScreen {
  private readonly factor: number;
  private readonly historySize: number;
  private readonly accepted: number[] = [];
  private current: number[] = [];

  constructor(private readonly layout: WeightLayout, opts: ScreenOptions = {}) {
    this.factor = opts.factor ?? 50;
    this.historySize = opts.history ?? 64;
  }

  /** False until a step has been accepted: then results are judged together (`review`). */
  get hasHistory(): boolean {
    return this.accepted.length > 0;
  }

  /** Starts a step: this step's norms so far are forgotten. */
  startStep(): void {
    this.current = [];
  }

  /** Checks one result as it arrives, against the history and this step's accepted norms. */
  check(result: ResultMessage, expectedCount: number): Rejection | undefined {
    const basic = this.checkShape(result, expectedCount);
    if (basic) return basic;
    const norm = sliceNorm(result);
    const bound = this.factor * lowerMedian([...this.accepted, ...this.current, norm]);
    if (!(norm <= bound)) return { reason: `gradient norm ${norm.toExponential(3)} exceeds the bound ${bound.toExponential(3)}`, fields: { norm, bound } };
    this.current.push(norm);
    return undefined;
  }

  /** Checks a whole step's results together; returns the indices to reject. */
  review(results: ResultMessage[], expectedCounts: number[]): { index: number; rejection: Rejection }[] {
    const out: { index: number; rejection: Rejection }[] = [];
    const norms = results.map(sliceNorm);
    const bound = this.factor * lowerMedian([...this.accepted, ...norms]);
    results.forEach((r, index) => {
      const basic = this.checkShape(r, expectedCounts[index]);
      if (basic) out.push({ index, rejection: basic });
      else if (!(norms[index] <= bound)) out.push({ index, rejection: { reason: `gradient norm ${norms[index].toExponential(3)} exceeds the bound ${bound.toExponential(3)}`, fields: { norm: norms[index], bound } } });
    });
    this.current = out.length === 0 ? norms : [];
    return out;
  }

  /** The step was applied: its norms join the history. */
  commit(): void {
    this.accepted.push(...this.current);
    if (this.accepted.length > this.historySize) this.accepted.splice(0, this.accepted.length - this.historySize);
    this.current = [];
  }

  private checkShape(result: ResultMessage, expectedCount: number): Rejection | undefined {
    if (result.count !== expectedCount) return { reason: `a result for ${result.count} samples answers a task of ${expectedCount}`, fields: { count: result.count, expected: expectedCount } };
    if (!result.gradients) return { reason: 'a train result without gradients', fields: {} };
    if (result.stats) return checkStats(bytesToFloats(result.stats), this.layout);
    return undefined;
  }
}
