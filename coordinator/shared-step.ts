/**
 * The single-machine step in shared memory (common/step-memory.ts), driven from the thread that owns
 * the compute threads. Per step:
 *   1. train   each slice's images are gathered straight into its slot; the scheduler hands slots
 *              to threads (retrying a dead thread's slot elsewhere, as for any worker); each thread
 *              copies the current weights into its backend and writes its gradient sums into the slot.
 *   2. reduce  every live thread takes one stripe of the parameters: sums the slots in slot order,
 *              divides by the sample count and applies Adam, writing the next weights and moments
 *              (a reduce-scatter in shared memory). A thread that dies here is evicted and the whole
 *              phase is redone by the others from the untouched current copies.
 *   A step of one slot (one thread, or a batch too small to share) runs both phases in one command
 *   (OP.trainApply), so the owning thread hands off once per step.
 * Commands and completions are Atomics words; the owning thread only waits asynchronously, so it
 * keeps serving its event loop (heartbeats, messages, a partner's synchronisation) and does no
 * work proportional to the parameter count. Weights and Adam state are copied in at the start
 * (load) and out for checkpoints and evaluation (store), not per step.
 */
import type { Adam } from '../common/adam.ts';
import { DtrainError } from '../common/errors.ts';
import { BN_SYNC_ABORTED, BN_SYNC_TIMEOUT, BnSyncAbortedError } from '../common/bn-sync-errors.ts';
import { withTimeout } from '../common/timeout.ts';
import { IMAGE_BYTES, type ImageSet } from '../common/data/types.ts';
import { CTL, F64, OP, STATUS, StepMemory, THREAD_STEP_FAILED, publish, stripes, waitWhileEqual, writeSliceFields, type StepMemoryShape } from '../common/step-memory.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import { SPIN_MICROS as THREAD_SPIN_MICROS, SPIN_MICROS_OVERSUBSCRIBED, type SharedAttachMessage } from '../worker/shared-step-server.ts';
import { availableParallelism } from 'node:os';
import { WorkerLostError } from '../worker/compute-thread.ts';
import { NoWorkersError, type TaskSpec } from './scheduler.ts';
import { normFromSquares, type SliceSummary } from './result-check.ts';

export interface SharedStepTotals {
  count: number;
  lossSum: number;
  correct: number;
}

/** The samples, loss sum and correct count of a step's results, summed in slot order. */
export function stepTotals(results: readonly ResultMessage[]): SharedStepTotals {
  const totals: SharedStepTotals = { count: 0, lossSum: 0, correct: 0 };
  for (const r of results) {
    totals.count += r.count;
    totals.lossSum += r.lossSum;
    totals.correct += r.correct;
  }
  return totals;
}

/** How long the owning thread spins before sleeping on a completion (µs): see waitWhileEqual. */
const SPIN_MICROS = 0;

export class SharedStep {
  readonly mem: StepMemory;
  private parity: 0 | 1 = 0;
  private adamStep = 0;
  private readonly seqs: number[];
  /** Per thread, the latest command asked for: an older one still waiting for the thread to be idle is dropped. */
  private readonly tickets: number[];
  private readonly alive: boolean[];
  private readonly rejecters: (((e: Error) => void) | undefined)[];
  private readonly slotOf = new WeakMap<Uint8Array, number>();
  /** Σ g² of each slot's gradient sums, as its thread reported them with its last result. */
  private readonly slotSquares: Float64Array;
  /** Called when a thread fails or overruns during the reduction: the owner evicts it. */
  onThreadFailed: (index: number, reason: string) => void = () => {};

  private adam: Adam | undefined;
  /** Slots gathered for the step being prepared (gather(0) starts a step). */
  private stepSlots = 0;
  /** The result of this step's trainApply command (a step of one slot), whose reduction and Adam are done. */
  private applied: ResultMessage | undefined;
  /** Milliseconds the compute thread spent on this step's reduction and Adam inside its trainApply command; 0 otherwise. */
  fusedOptimizerMs = 0;
  /**
   * Models with BatchNorm: moves the moving statistics (`moving`, the next weights' statistics,
   * holding the current ones) from the slots' batch statistics, on the owning thread (a few hundred
   * values); the stripes then leave the statistics alone. Without it the stripes average them.
   */
  movingStats: ((moving: Float32Array, slices: { count: number; stats: Float32Array }[]) => void) | undefined;

  /** `simd`: whether the trainer's Adam runs the SIMD kernel; the stripes must do the same. */
  constructor(shape: StepMemoryShape, private readonly simd: boolean) {
    this.mem = StepMemory.create(shape);
    this.seqs = new Array(shape.threads).fill(0);
    this.tickets = new Array(shape.threads).fill(0);
    this.alive = new Array(shape.threads).fill(true);
    this.rejecters = new Array(shape.threads).fill(undefined);
    this.slotSquares = new Float64Array(shape.slots);
  }

  /** The reduction grain its slots were laid out for (0: none, float32 slots). */
  get grain(): number {
    return this.mem.shape.grain ?? 0;
  }

  /** Whether a core is left for the owning thread besides the compute threads' (fewer threads than cores). */
  get ownerHasCore(): boolean {
    return this.mem.shape.threads < availableParallelism();
  }

  /** What thread `index` is sent to map the memory. */
  attachMessage(index: number): SharedAttachMessage {
    // Threads spin longer between commands only where a core is left for this (owning) thread besides theirs (worker/shared-step-server.ts).
    const spinMicros = this.ownerHasCore ? THREAD_SPIN_MICROS : SPIN_MICROS_OVERSUBSCRIBED;
    return { type: 'shared_attach', init: this.mem.init, index, simd: this.simd, spinMicros };
  }

  /** Copies the weights and the Adam state in (run start, after a resume); `adam` stays bound. */
  load(weights: Float32Array, adam: Adam): void {
    if ((adam.kind === 'simd') !== this.simd) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `The shared-memory step was set up for ${this.simd ? 'simd' : 'scalar'} Adam, but the trainer's Adam is ${adam.kind}.`, { expected: false });
    this.adam = adam;
    const { beta1, beta2, epsilon } = adam.config;
    this.mem.f64[F64.beta1] = beta1;
    this.mem.f64[F64.beta2] = beta2;
    this.mem.f64[F64.epsilon] = epsilon;
    const s = adam.snapshot();
    this.parity = 0;
    this.mem.weights[0].set(weights);
    this.mem.m[0].set(s.m);
    this.mem.v[0].set(s.v);
    this.adamStep = s.step;
  }

  /** Copies the current weights and Adam state out (checkpoints, evaluation, the end). */
  store(weights: Float32Array): void {
    const p = this.parity;
    const n = this.mem.shape.trainable;
    if (!this.adam) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', 'store() before load(): the shared-memory step holds no weights yet.', { expected: false });
    weights.set(this.mem.weights[p].subarray(0, weights.length));
    this.adam.restore({ step: this.adamStep, m: this.mem.m[p].subarray(0, n), v: this.mem.v[p].subarray(0, n) });
  }

  /** Slice `slot` of a step: the images and labels at `indices` of `set`, gathered into the slot. */
  gather(slot: number, set: ImageSet, indices: Uint32Array): TaskSpec {
    if (slot === 0) {
      this.stepSlots = 0;
      this.applied = undefined;
      this.fusedOptimizerMs = 0;
    }
    this.stepSlots = Math.max(this.stepSlots, slot + 1);
    const images = this.mem.images[slot].subarray(0, indices.length * IMAGE_BYTES);
    const labels = this.mem.labels[slot].subarray(0, indices.length);
    for (let j = 0; j < indices.length; j++) {
      const i = indices[j];
      images.set(set.images.subarray(i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES), j * IMAGE_BYTES);
      labels[j] = set.labels[i];
    }
    this.slotOf.set(images, slot);
    return { kind: 'train', images, labels };
  }

  /** The slot a task's images were gathered into, if it is a shared-memory train task. */
  slotFor(task: TaskMessage): number | undefined {
    return task.kind === 'train' ? this.slotOf.get(task.images) : undefined;
  }

  /**
   * Phase 1 for one slot on thread `index`. A step of one slot has nothing to wait for before its
   * reduction, so the thread does phase 2 over the whole span in the same command (trainApply):
   * one hand-off per step instead of two. It writes only the next copies, so a result the screen
   * rejects, a refused step or a thread lost midway leaves the current state as it was, and
   * `apply` only has to make the next copies current.
   */
  async train(index: number, slot: number, task: TaskMessage): Promise<ResultMessage> {
    const { ctl, f64 } = this.mem;
    const b = this.mem.threadBase(index);
    await this.idle(index, ++this.tickets[index]);
    const fused = this.stepSlots === 1 && this.adam !== undefined;
    this.applied = undefined;
    ctl[b + CTL.op] = fused ? OP.trainApply : OP.train;
    ctl[b + CTL.slot] = slot;
    ctl[b + CTL.count] = task.labels.length;
    ctl[b + CTL.parity] = this.parity;
    writeSliceFields(ctl, b, task);
    if (fused) {
      this.prepareReduction([task.labels.length]);
      ctl[b + CTL.from] = 0;
      ctl[b + CTL.to] = this.mem.adamSpan;
      ctl[b + CTL.doStats] = this.movingStats ? 0 : 1;
    }
    // Only this thread may write the slot now: one evicted earlier but still running must not.
    Atomics.store(ctl, this.mem.slotOwner(slot), index);
    await this.command(index);
    const fb = this.mem.f64Base(index);
    this.slotSquares[slot] = f64[fb + F64.gradSquares];
    const result: ResultMessage = { type: 'result', taskId: task.taskId, count: task.labels.length, lossSum: f64[fb + F64.lossSum], correct: ctl[b + CTL.correct], computeMs: f64[fb + F64.computeMs] };
    if (fused) {
      this.applied = result;
      this.fusedOptimizerMs = f64[fb + F64.optimizerMs];
    }
    return result;
  }

  /** The slot counts and the scalars of phase 2 (1/count, Adam's bias corrections) for the next Adam step. */
  private prepareReduction(counts: number[]): void {
    const { ctl, f64 } = this.mem;
    if (!this.adam) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', 'A step before load(): the shared-memory step holds no weights yet.', { expected: false });
    let count = 0;
    ctl[CTL.slotsUsed] = counts.length;
    counts.forEach((c, k) => {
      ctl[CTL.slotCounts + k] = c;
      count += c;
    });
    // The same scalars, computed the same way, as Adam.apply and aggregateResults.
    const t = this.adamStep + 1;
    const { learningRate, beta1, beta2 } = this.adam.config;
    f64[F64.inv] = 1 / count;
    f64[F64.stepSize] = learningRate / (1 - Math.pow(beta1, t));
    f64[F64.sqrtCorrection] = 1 / Math.sqrt(1 - Math.pow(beta2, t));
  }

  /** What the result screen (result-check.ts) judges of slot `slot`'s result, without a pass over its gradient. */
  slice(slot: number, result: ResultMessage): SliceSummary {
    const { stats } = this.mem.shape;
    const summary: SliceSummary = { count: result.count, lossSum: result.lossSum, correct: result.correct, norm: normFromSquares(this.slotSquares[slot], result.count), hasGradient: true };
    if (stats > 0) summary.stats = this.mem.statSums[slot];
    return summary;
  }

  /**
   * An upper bound on |mean gradient| at any coordinate of the step: Σ_k ‖g_k‖ / count ≥ |Σ_k g_k[i]| / count.
   * The Adam guard (adam-guard.ts) refuses the step when it is over MAX_SAFE_GRADIENT.
   */
  gradientBound(results: ResultMessage[]): number {
    let norms = 0;
    let count = 0;
    results.forEach((r, slot) => {
      norms += Math.sqrt(this.slotSquares[slot]);
      count += r.count;
    });
    return norms / Math.max(1, count);
  }

  /** Phase 2: reduce-scatter and Adam over the live threads, redone without any thread that fails. */
  async apply(results: ResultMessage[], stepTimeoutMs: number): Promise<SharedStepTotals> {
    const { ctl } = this.mem;
    const totals = stepTotals(results);
    // The step's one result came from a trainApply command: its thread already wrote the next copies.
    const done = results.length === 1 && results[0] === this.applied;
    this.applied = undefined;
    if (!done) this.prepareReduction(results.map((r) => r.count));
    const t = this.adamStep + 1;
    while (!done) {
      const live = this.alive.flatMap((a, i) => (a ? [i] : []));
      if (live.length === 0) throw new NoWorkersError('Every worker thread has failed; nothing is left to train with. See the worker_left lines above for why.');
      const parts = stripes(this.mem.adamSpan, live.length);
      const runs = live.map((index, i) => {
        const b = this.mem.threadBase(index);
        const reduce = async () => {
          await this.idle(index, ++this.tickets[index]);
          ctl[b + CTL.op] = OP.reduce;
          ctl[b + CTL.from] = parts[i].from;
          ctl[b + CTL.to] = parts[i].to;
          // The last stripe holds Adam's padding lanes, which overlap the statistics: same thread, after.
          ctl[b + CTL.doStats] = i === live.length - 1 && !this.movingStats ? 1 : 0;
          ctl[b + CTL.parity] = this.parity;
          await this.command(index);
        };
        return withTimeout(reduce(), stepTimeoutMs, `thread ${index + 1}'s share of the reduction`);
      });
      const settled = await Promise.allSettled(runs);
      let failed = false;
      settled.forEach((s, i) => {
        if (s.status === 'fulfilled') return;
        failed = true;
        this.fail(live[i], (s.reason as Error).message);
        this.onThreadFailed(live[i], (s.reason as Error).message);
      });
      if (!failed) break;
    }
    this.moveStats(results);
    this.parity = (1 - this.parity) as 0 | 1;
    this.adamStep = t;
    return totals;
  }

  /** The next weights' statistics: the current ones, moved by this step's slots (movingStats). */
  private moveStats(results: ResultMessage[]): void {
    const { trainable, stats } = this.mem.shape;
    if (!this.movingStats || stats === 0) return;
    const next = this.mem.weights[1 - this.parity].subarray(trainable, trainable + stats);
    next.set(this.mem.weights[this.parity].subarray(trainable, trainable + stats));
    this.movingStats(next, results.map((r, slot) => ({ count: r.count, stats: this.mem.statSums[slot] })));
  }

  /** Marks a thread gone: its command in flight (if any) rejects, and it gets no more stripes. */
  fail(index: number, reason: string): void {
    this.alive[index] = false;
    const reject = this.rejecters[index];
    this.rejecters[index] = undefined;
    reject?.(new WorkerLostError(reason));
    // Wakes the wait on its completion word, which then sees it was abandoned.
    publish(this.mem.ctl, this.mem.threadBase(index) + CTL.doneSeq, this.seqs[index]);
  }

  /**
   * Resolves once thread `index` has finished its last command, for the command `ticket`. A step
   * abandoned mid-way (its BatchNorm round aborted because another thread left) stops waiting for
   * its commands, but a thread may still be running one: its command fields must not change under
   * it, nor may its completion be taken for the next command's. If a newer command was asked for
   * meanwhile (the step was abandoned again), this one is dropped: it rejects with
   * BN_SYNC_ABORTED, which counts against nobody.
   */
  private async idle(index: number, ticket: number): Promise<void> {
    const done = this.mem.threadBase(index) + CTL.doneSeq;
    while (this.alive[index] && Atomics.load(this.mem.ctl, done) !== this.seqs[index]) {
      await waitWhileEqual(this.mem.ctl, done, this.seqs[index] - 1);
    }
    if (ticket !== this.tickets[index]) throw new BnSyncAbortedError(`thread ${index + 1}'s command of an abandoned step was dropped: a newer one replaced it`);
  }

  private command(index: number): Promise<void> {
    if (!this.alive[index]) return Promise.reject(new WorkerLostError(`thread ${index + 1} has failed`));
    const { ctl } = this.mem;
    const b = this.mem.threadBase(index);
    const seq = ++this.seqs[index];
    return new Promise<void>((resolve, reject) => {
      this.rejecters[index] = reject;
      publish(ctl, b + CTL.cmdSeq, seq, b + CTL.sleeping);
      void waitWhileEqual(ctl, b + CTL.doneSeq, seq - 1, SPIN_MICROS).then(() => {
        if (this.rejecters[index] !== reject) return; // failed meanwhile
        this.rejecters[index] = undefined;
        if (ctl[b + CTL.status] === STATUS.ok) resolve();
        else {
          // An abandoned BatchNorm round (BN_SYNC_ABORTED) is nobody's fault: that code, and the
          // exchange's timeout, pass through; any other failure is the thread's.
          const e = this.mem.readError(index);
          const code = e.code === BN_SYNC_ABORTED || e.code === BN_SYNC_TIMEOUT ? e.code : THREAD_STEP_FAILED;
          reject(new DtrainError(code, `thread ${index + 1} failed its shared-memory step: ${e.message}`, { expected: false }));
        }
      });
    });
  }
}
