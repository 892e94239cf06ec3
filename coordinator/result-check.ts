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
 *
 * A norm over the bound is evidence, not proof: late in training, small honest slices holding one
 * misclassified sample sit far above a median of well-classified ones. Such a rejection is marked
 * `outlier`, and the scheduler has the slice recomputed by a different worker before it blames
 * anyone (scheduler.ts, `agree`; `gradientsAgree`, `summariesAgree` here). A confirmed outlier's
 * norm joins the history (`confirm`).
 */
import { bytesToFloats } from '../common/codec.ts';
import { squaresOf } from '../common/gradient-passes.ts';
import type { ResultMessage } from '../common/protocol.ts';
import type { WeightLayout } from '../common/weights.ts';

export interface Rejection {
  reason: string;
  /** Logged with the `result_rejected` line: norm and bound, or the bad value and where it is. */
  fields: Record<string, number | string>;
  /**
   * Rejected only for its norm: evidence, not proof. An honest slice holding a misclassified sample
   * keeps a large gradient while the median of well-classified slices collapses, so the scheduler
   * asks a second worker before it blames the first (scheduler.ts, `agree`).
   */
  outlier?: boolean;
}

export interface ScreenOptions {
  /** A slice whose norm exceeds factor × the reference is rejected. Default 50. */
  factor?: number;
  /** Accepted norms kept as the reference. Default 64. */
  history?: number;
}

/**
 * What the screen needs of one slice's result, whichever way it came: from a message (`summarize`),
 * or from the shared-memory step, whose compute thread took the sum of squares of the gradient it
 * wrote (coordinator/shared-step.ts), so that no O(parameters) pass runs on the owning thread.
 */
export interface SliceSummary {
  count: number;
  lossSum: number;
  correct: number;
  /** ‖gradient sum‖ / count; NaN or Infinity when a gradient value is not finite, NaN with no gradient. */
  norm: number;
  hasGradient: boolean;
  /** The non-trainable part (BatchNorm batch statistics), when the model has any. */
  stats?: Float32Array;
}

/** The summary of a result message. */
export function summarize(result: ResultMessage): SliceSummary {
  const summary: SliceSummary = { count: result.count, lossSum: result.lossSum, correct: result.correct, norm: result.gradients ? sliceNorm(result) : NaN, hasGradient: result.gradients !== undefined };
  if (result.stats) summary.stats = bytesToFloats(result.stats);
  return summary;
}

/** ‖gradient sum‖ / count, in float64 (a float32 sum of squares of 1e21s would overflow). */
export function sliceNorm(result: ResultMessage): number {
  return normFromSquares(squaresOf(bytesToFloats(result.gradients!)), result.count);
}

/** The norm the screen judges, from Σ g² of a slice's gradient sum and its sample count. */
export function normFromSquares(squares: number, count: number): number {
  return Math.sqrt(squares) / Math.max(1, count);
}

/** The lower median: with an even count, the smaller middle value (so one outlier of two cannot win). */
export function lowerMedian(values: readonly number[]): number {
  // A typed array sorts numerically without calling back into JavaScript per comparison.
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/**
 * BatchNorm statistics that no honest slice can produce: a negative or non-finite variance. A
 * result's `stats` hold, in the places of each layer's moving mean and moving variance, the slice's
 * batch mean and biased variance (coordinator/moving-stats.ts combines them), so the variance
 * places are checked. `stats` is the non-trainable part of the layout, in layout order.
 */
export function checkStats(stats: Float32Array, layout: WeightLayout): Rejection | undefined {
  // The codec checks finiteness on the wire; a compute thread's statistics arrive unchecked.
  for (let i = 0; i < stats.length; i++) {
    if (!Number.isFinite(stats[i])) return { reason: `BatchNorm statistic ${i} is ${stats[i]}; every statistic must be finite`, fields: { index: i, value: stats[i] } };
  }
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

/**
 * The loss and accuracy a result reports for `count` samples: a loss sum is finite and never
 * negative (a cross-entropy), a correct count is an integer from 0 to the task's sample count. Train
 * and evaluation results alike (coordinator/eval-check.ts).
 */
export function checkTally(r: { lossSum: number; correct: number }, count: number): Rejection | undefined {
  if (typeof r.lossSum !== 'number' || !Number.isFinite(r.lossSum) || r.lossSum < 0) return { reason: `loss sum ${r.lossSum}; expected a finite number >= 0`, fields: { lossSum: String(r.lossSum) } };
  if (!Number.isInteger(r.correct) || r.correct < 0 || r.correct > count) return { reason: `correct count ${r.correct}; expected an integer from 0 to ${count}`, fields: { correct: String(r.correct), expected: count } };
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

  /** The accepted norms the bound is taken from, oldest first. */
  get history(): readonly number[] {
    return this.accepted;
  }

  /** Replaces the accepted norms (a run of steps judged in a compute thread starts from the owner's: worker/step-run.ts). */
  seedHistory(norms: readonly number[]): void {
    this.accepted.length = 0;
    this.accepted.push(...norms.slice(-this.historySize));
    this.current = [];
  }

  /** Starts a step: this step's norms so far are forgotten. */
  startStep(): void {
    this.current = [];
  }

  /** Checks one result as it arrives, against the history and this step's accepted norms. */
  check(result: ResultMessage, expectedCount: number): Rejection | undefined {
    return this.checkSlice(summarize(result), expectedCount);
  }

  /** `check` for a slice summarized elsewhere (the shared-memory step). */
  checkSlice(slice: SliceSummary, expectedCount: number): Rejection | undefined {
    const basic = this.checkBasics(slice, expectedCount);
    if (basic) return basic;
    const norm = slice.norm;
    const bound = this.factor * lowerMedian([...this.accepted, ...this.current, norm]);
    if (!(norm <= bound)) return outlier(norm, bound);
    this.current.push(norm);
    return undefined;
  }

  /**
   * An outlier that a second worker's recomputation confirmed: its norm is a genuine one and joins
   * this step's norms. It can enter the history only when two workers agree on it, so a minority of
   * attackers still cannot move the median; leaving genuine large norms out would bias it low.
   */
  confirm(norm: number): void {
    this.current.push(norm);
  }

  /** Checks a whole step's results together; returns the indices to reject. */
  review(results: ResultMessage[], expectedCounts: number[]): { index: number; rejection: Rejection }[] {
    return this.reviewSlices(results.map(summarize), expectedCounts);
  }

  /** `review` for slices summarized elsewhere (the shared-memory step). */
  reviewSlices(slices: SliceSummary[], expectedCounts: number[]): { index: number; rejection: Rejection }[] {
    const out: { index: number; rejection: Rejection }[] = [];
    const norms = slices.map((s) => s.norm);
    // A non-finite norm is rejected on its own, and must not take part in the median (NaN does not sort).
    const bound = this.factor * lowerMedian([...this.accepted, ...norms.filter(Number.isFinite)]);
    slices.forEach((r, index) => {
      const basic = this.checkBasics(r, expectedCounts[index]);
      if (basic) out.push({ index, rejection: basic });
      else if (!(norms[index] <= bound)) out.push({ index, rejection: outlier(norms[index], bound) });
    });
    this.current = norms.filter((_, i) => !out.some((o) => o.index === i));
    return out;
  }

  /** The step was applied: its norms join the history. */
  commit(): void {
    this.accepted.push(...this.current);
    if (this.accepted.length > this.historySize) this.accepted.splice(0, this.accepted.length - this.historySize);
    this.current = [];
  }

  private checkBasics(slice: SliceSummary, expectedCount: number): Rejection | undefined {
    if (slice.count !== expectedCount) return { reason: `a result for ${slice.count} samples answers a task of ${expectedCount}`, fields: { count: slice.count, expected: expectedCount } };
    if (!slice.hasGradient) return { reason: 'a train result without gradients', fields: {} };
    const tally = checkTally(slice, expectedCount);
    if (tally) return tally;
    if (!Number.isFinite(slice.norm)) return { reason: `the gradient holds a non-finite value (norm ${slice.norm})`, fields: { norm: String(slice.norm) } };
    if (slice.stats) return checkStats(slice.stats, this.layout);
    return undefined;
  }
}

function outlier(norm: number, bound: number): Rejection {
  return { reason: `gradient norm ${norm.toExponential(3)} exceeds the bound ${bound.toExponential(3)}`, fields: { norm, bound }, outlier: true };
}

/**
 * Whether two results for the same slice agree: ‖a − b‖ ≤ tolerance × max(‖a‖, ‖b‖) over the whole
 * gradient, in float64; tolerance 0 asks for identical values. The second opinion on an outlier.
 */
export function gradientsAgree(a: ResultMessage, b: ResultMessage, tolerance: number): boolean {
  if (a.count !== b.count || !a.gradients || !b.gradients || a.gradients.byteLength !== b.gradients.byteLength) return false;
  const x = bytesToFloats(a.gradients);
  const y = bytesToFloats(b.gradients);
  let diff = 0;
  let xx = 0;
  let yy = 0;
  for (let i = 0; i < x.length; i++) {
    const d = x[i] - y[i];
    diff += d * d;
    xx += x[i] * x[i];
    yy += y[i] * y[i];
  }
  return Math.sqrt(diff) <= tolerance * Math.sqrt(Math.max(xx, yy));
}

/**
 * `gradientsAgree` for the shared-memory step, where the second result overwrote the first in its
 * slot: the norms agree within `tolerance` (relative); 0 asks for the same norm, loss and tally.
 */
export function summariesAgree(a: SliceSummary, b: SliceSummary, tolerance: number): boolean {
  if (a.count !== b.count) return false;
  if (tolerance === 0) return a.norm === b.norm && a.lossSum === b.lossSum && a.correct === b.correct;
  return Math.abs(a.norm - b.norm) <= tolerance * Math.max(a.norm, b.norm);
}
