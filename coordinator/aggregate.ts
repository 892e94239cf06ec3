/**
 * Combining the workers' results of one step: gradient sums are added and divided by the total
 * sample count, so the average does not depend on how the batch was sliced. BatchNorm moving
 * statistics are averaged weighted by each slice's sample count.
 */
import { bytesToFloats } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';
import { foldInto, scaleBounded } from '../common/gradient-passes.ts';
import { MAX_SAFE_GRADIENT } from './adam-guard.ts';

export interface StepAggregate {
  count: number;
  lossSum: number;
  correct: number;
  /** Mean gradient over the global batch. */
  gradient: Float32Array;
  /** Count-weighted mean of the moving statistics; empty when the model has none. */
  stats: Float32Array;
  /**
   * The first index of `gradient` whose mean could make Adam's state non-finite (beyond
   * MAX_SAFE_GRADIENT, or NaN), or −1: found while dividing, so the guard (adam-guard.ts) needs no pass of its own.
   */
  unsafeIndex: number;
}

export function aggregateResults(results: ResultMessage[], gradientCount: number, statsCount: number): StepAggregate {
  const gradient = new Float32Array(gradientCount);
  const stats = new Float32Array(statsCount);
  let count = 0;
  let lossSum = 0;
  let correct = 0;
  results.forEach((r, k) => {
    count += r.count;
    lossSum += r.lossSum;
    correct += r.correct;
    foldInto(gradient, bytesToFloats(r.gradients!), k === 0);
    if (statsCount > 0) {
      const s = bytesToFloats(r.stats!);
      for (let i = 0; i < statsCount; i++) stats[i] += s[i] * r.count;
    }
  });
  const inv = 1 / count;
  const unsafeIndex = scaleBounded(gradient, inv, MAX_SAFE_GRADIENT);
  for (let i = 0; i < statsCount; i++) stats[i] *= inv;
  return { count, lossSum, correct, gradient, stats, unsafeIndex };
}

/**
 * aggregateResults, folded as the results arrive: result i is added as soon as results 0..i-1 have
 * been, so the sums are the same, in the same order, as aggregateResults', whatever the arrival
 * order, and the last result leaves only its own fold and the division. The buffers are allocated
 * once and reused every step: the returned aggregate is valid until the next reset.
 */
export class StepAccumulator {
  private readonly gradient: Float32Array;
  private readonly stats: Float32Array;
  private waiting: (ResultMessage | undefined)[] = [];
  private folded = 0;
  private count = 0;
  private lossSum = 0;
  private correct = 0;

  constructor(gradientCount: number, private readonly statsCount: number) {
    this.gradient = new Float32Array(gradientCount);
    this.stats = new Float32Array(statsCount);
  }

  /** Starts a step of `tasks` results. */
  reset(tasks: number): void {
    this.waiting = new Array(tasks).fill(undefined);
    this.folded = 0;
    this.count = 0;
    this.lossSum = 0;
    this.correct = 0;
  }

  /** Result of task `index`; folds it and every waiting successor whose turn it now is. */
  add(index: number, result: ResultMessage): void {
    this.waiting[index] = result;
    while (this.folded < this.waiting.length && this.waiting[this.folded]) {
      this.fold(this.waiting[this.folded]!, this.folded === 0);
      this.waiting[this.folded] = undefined;
      this.folded++;
    }
  }

  private fold(r: ResultMessage, first: boolean): void {
    const { gradient, stats, statsCount } = this;
    this.count += r.count;
    this.lossSum += r.lossSum;
    this.correct += r.correct;
    // The first fold writes 0 + g, exactly what adding to a zeroed buffer gives, without zeroing it.
    foldInto(gradient, bytesToFloats(r.gradients!), first);
    if (statsCount > 0) {
      const s = bytesToFloats(r.stats!);
      if (first) for (let i = 0; i < statsCount; i++) stats[i] = 0 + s[i] * r.count;
      else for (let i = 0; i < statsCount; i++) stats[i] += s[i] * r.count;
    }
  }

  /** The step's aggregate, once every result has been added. */
  finish(): StepAggregate {
    if (this.folded !== this.waiting.length || this.folded === 0) throw new Error(`StepAccumulator: expected ${this.waiting.length} results, but ${this.folded} were folded.`);
    const inv = 1 / this.count;
    const { gradient, stats } = this;
    const unsafeIndex = scaleBounded(gradient, inv, MAX_SAFE_GRADIENT);
    for (let i = 0; i < this.statsCount; i++) stats[i] *= inv;
    return { count: this.count, lossSum: this.lossSum, correct: this.correct, gradient, stats, unsafeIndex };
  }
}

/** Splits `total` samples into `parts` contiguous slices whose sizes differ by at most one. */
export function sliceSizes(total: number, parts: number): number[] {
  const n = Math.max(1, Math.min(parts, total));
  const base = Math.floor(total / n);
  const extra = total % n;
  return Array.from({ length: n }, (_, i) => base + (i < extra ? 1 : 0));
}

/**
 * sliceSizes in whole groups of `grain` samples (a reduction grain, common/reduce-grain.ts): at
 * most `parts` slices, their group counts differing by at most one; only the last group may be short.
 */
export function alignedSliceSizes(total: number, parts: number, grain: number): number[] {
  let left = total;
  return sliceSizes(Math.ceil(total / grain), parts).map((groups) => {
    const size = Math.min(left, groups * grain);
    left -= size;
    return size;
  });
}
