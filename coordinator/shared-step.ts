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
 *   (OP.trainApply), so the owning thread hands off once per step. A step of several slots does the
 *   same in a fused round: each slot's thread trains, meets the others at a barrier in the control
 *   block, then reduces and applies Adam to the stripe of its slot's index, all in one command.
 *   Whenever the round cannot complete as planned (a thread fails or is evicted, a slot is
 *   recomputed, the step is abandoned, the barrier's wait runs out), phase 2 runs as its own
 *   commands, as before, over the next copies that only a complete step makes current.
 * Commands and completions are Atomics words; the owning thread only waits asynchronously, so it
 * keeps serving its event loop (heartbeats, messages, a partner's synchronisation) and does no
 * work proportional to the parameter count. Weights and Adam state are copied in at the start
 * (load) and out for checkpoints and evaluation (store), not per step.
 */
import type { Adam } from '../common/adam.ts';
import { DtrainError } from '../common/errors.ts';
import { BN_SYNC_ABORTED, BN_SYNC_TIMEOUT, BnSyncAbortedError } from '../common/bn-sync-errors.ts';
import { withTimeout } from '../common/timeout.ts';
import { IMAGE_BYTES, isSharedSet, type ImageSet } from '../common/data/types.ts';
import { gatherInto, gatherLabels } from '../common/data/split.ts';
import { CTL, F64, MAX_ROUND_SLOTS, absoluteNow, OP, ROUND_PHASE, STATUS, StepMemory, THREAD_STEP_FAILED, abortRound, dozeWhileEqual, nextRound, openRound, publish, stripes, waitWhileEqual, writeAdamScalars, writeSliceFields, type StepMemoryShape } from '../common/step-memory.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import { bumpCopyVersion } from '../common/step-stripe.ts';
import { ROUND_SPIN_MICROS, SPIN_MICROS as THREAD_SPIN_MICROS, SPIN_MICROS_OVERSUBSCRIBED, type SharedAttachMessage } from '../worker/shared-step-server.ts';
import { availableParallelism } from 'node:os';
import { envBool } from './cli/train.ts';
import { WorkerLostError } from '../worker/compute-thread.ts';
import { NoWorkersError, type TaskSpec } from './scheduler.ts';
import { normFromSquares, type SliceSummary } from './result-check.ts';
import { AheadOffers } from './step-ahead.ts';
import { MAX_RUN_STEPS, RUN, RunBoard, nextRunId, type SlotRecord } from '../common/step-run.ts';

export interface SharedStepTotals {
  count: number;
  lossSum: number;
  correct: number;
}

/** What a run of steps is to do (runSteps): `counts`, each slot's samples, one slot per live thread. */
export interface RunPlan {
  steps: number;
  /** The global step number of the first step (its Dropout positions). */
  firstStep: number;
  /** The first step's offset into the epoch's order (writeOrder). */
  offset: number;
  batch: number;
  counts: number[];
  /** The seed of the slices' sample positions, where they carry one (Dropout). */
  positionSeed?: number;
  /** The result screen's accepted norms, for the threads' copies of it. */
  history: readonly number[];
}

/** What a run committed: per step, each slot's record, and the threads that trained the slots. */
export interface RunOutcome {
  steps: SlotRecord[][];
  threads: number[];
  /** When the run's command went out (absoluteNow). */
  startedAt: number;
  /**
   * Where the run ended before its last step with every slot's record of the next step written:
   * those records (the threads would not accept that step; the trainer says why). Undefined where
   * the run covered its steps, or ended on an abort or a failure before the records were written.
   */
  refused?: SlotRecord[];
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

/**
 * How long the owning thread dozes on a command's completion before it sleeps (µs), where it has a
 * core of its own (see dozeWhileEqual): longer than a one-thread mlp or lenet step's wait (0.6 and
 * 2.1 ms on this machine), so those steps complete without a notify; a longer command costs the
 * owner's own core this much polling, then a notify as before.
 */
export const OWNER_DOZE_MICROS = 5_000;

/** Whether DTRAIN_STEP_FROM_BACKEND leaves a one-slot step from the backend on (the default; 0 turns it off). */
function stepFromBackendOn(env: NodeJS.ProcessEnv): boolean {
  return envBool('DTRAIN_STEP_FROM_BACKEND', env) ?? true;
}

/** Whether a run's steps are of one slot from the backend (SharedStepServer.trainApplyFromBackend), for the warm-up to step alike. */
export function stepsFromBackend(workers: number, reduceGrain: number, env: NodeJS.ProcessEnv = process.env): boolean {
  return workers === 1 && !reduceGrain && stepFromBackendOn(env);
}

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
  /** Per slot: its images were copied in for the step being prepared (fillSlot). */
  private readonly slotFilled: boolean[] = [];
  /** Σ g² of each slot's gradient sums, as its thread reported them with its last result. */
  private readonly slotSquares: Float64Array;
  private readonly ownerCore: boolean;
  /** Whether each compute thread has a core of its own (no more threads than cores). */
  private readonly threadsHaveCores: boolean;
  /** Called when a thread fails or overruns during the reduction: the owner evicts it. */
  onThreadFailed: (index: number, reason: string) => void = () => {};

  private adam: Adam | undefined;
  /** The next step's slices, offered to the threads ahead of their commands (step-ahead.ts). */
  readonly ahead: AheadOffers;
  /** Each slot's slice of the step being prepared: what an offer made ahead must match. */
  private readonly slices: ({ set: ImageSet; indices: Uint32Array } | undefined)[] = [];
  /** Slots gathered for the step being prepared (gather(0) starts a step). */
  private stepSlots = 0;
  /** The result of this step's trainApply command (a step of one slot), whose reduction and Adam are done. */
  private applied: ResultMessage | undefined;
  /**
   * Per slot: whether it holds the gradient sums of its last command. Not while a command runs (a
   * thread lost midway may have written part of them), nor after a step from the backend, which
   * writes them nowhere (StripeWorker.runFromBackend).
   */
  private readonly slotHoldsGradient: boolean[] = [];
  /** Milliseconds the compute threads spent on this step's reduction and Adam inside their trainApply commands (the longest); 0 otherwise. */
  fusedOptimizerMs = 0;
  /**
   * Milliseconds of this step's compute that ran before the step began: the part of a slice's pass
   * ahead that overlapped the step before (the longest among the step's results). The results'
   * computeMs leave it out, so a step's compute, communication and optimizer stay within its time.
   */
  computedAheadMs = 0;
  /** When the step being prepared began (gather(0)), on the clock every thread shares (absoluteNow). */
  private stepStartedAt = 0;
  /** The sample count of each slot gathered for the step being prepared. */
  private readonly slotCounts: number[] = [];
  /** The step's fused round (0: none opened yet, or the step has one slot). */
  private round = 0;
  private lastRound = 0;
  /** The round can no longer complete as planned: later commands of the step train only. */
  private roundBroken = false;
  /** Per slot: a command of the round went out for it. */
  private readonly roundIssued: boolean[] = [];
  /** The threads the step's round commands went to (see quiesce). */
  private readonly roundThreads = new Set<number>();
  /**
   * Set when a thread evicted in a fused round may still write its stripe of the next copies and
   * neither left the round nor exited in time: the next weights cannot be trusted, so every later
   * command and apply() fail with it.
   */
  private broken: DtrainError | undefined;
  /**
   * Resolves once thread `index` has exited (inprocess.ts: its Worker's exit event), so it writes
   * nothing more. Default: never (a thread that is not a real Worker must leave its round itself).
   */
  threadGone: (index: number) => Promise<void> = () => new Promise(() => {});
  /** Threads of a round closed before apply() whose commands may still run (see closeRound). */
  private readonly unsettled = new Set<number>();
  /** The wait for `unsettled` in progress (settleRound). */
  private settling: Promise<void> | undefined;
  /** Per slot: the result of its round command, whose thread did its stripe. */
  private readonly roundResults: (ResultMessage | undefined)[] = [];
  /** How long the owning thread dozes on a completion before sleeping (µs; 0: never dozes): see untilDone. */
  dozeMicros = OWNER_DOZE_MICROS;
  /** False: a step of several slots always runs phase 2 as its own commands (tests use it to reach that path). */
  fuseRounds = true;
  /** How long a thread waits at a fused round's barrier after arriving (ms); the trainer sets half its step timeout. */
  roundWaitMs = 30_000;
  /**
   * Models with BatchNorm: moves the moving statistics (`moving`, the next weights' statistics,
   * holding the current ones) from the slots' batch statistics, on the owning thread (a few hundred
   * values); the stripes then leave the statistics alone. Without it the stripes average them.
   */
  movingStats: ((moving: Float32Array, slices: { count: number; stats: Float32Array }[]) => void) | undefined;

  /**
   * Whether a step of one slot reads its gradient where the thread's backend holds it and writes the
   * next weights into the backend too (worker/shared-step-server.ts); DTRAIN_STEP_FROM_BACKEND=0 turns it off.
   */
  private readonly fromBackend: boolean;
  /** Steps of one slot whose thread used the gradient where its backend held it (tests, the epoch line). */
  fromBackendSteps = 0;
  private fromBackendReported = 0;

  /** fromBackendSteps since the last call. */
  newFromBackendSteps(): number {
    const n = this.fromBackendSteps - this.fromBackendReported;
    this.fromBackendReported = this.fromBackendSteps;
    return n;
  }

  /** Runs of steps the threads drive themselves (common/step-run.ts): made with a shared training set. */
  private runBoard: RunBoard | undefined;
  private runId = 0;

  /** `simd`: whether the trainer's Adam runs the SIMD kernel; the stripes must do the same. */
  constructor(shape: StepMemoryShape, private readonly simd: boolean, env: NodeJS.ProcessEnv = process.env) {
    this.fromBackend = stepFromBackendOn(env);
    this.mem = StepMemory.create(shape);
    this.seqs = new Array(shape.threads).fill(0);
    this.tickets = new Array(shape.threads).fill(0);
    this.alive = new Array(shape.threads).fill(true);
    this.rejecters = new Array(shape.threads).fill(undefined);
    this.slotSquares = new Float64Array(shape.slots);
    this.ownerCore = shape.threads < availableParallelism();
    this.threadsHaveCores = shape.threads <= availableParallelism();
    this.ahead = new AheadOffers(this.mem);
  }

  /** The reduction grain its slots were laid out for (0: none, float32 slots). */
  get grain(): number {
    return this.mem.shape.grain ?? 0;
  }

  /** Whether a core is left for the owning thread besides the compute threads' (fewer threads than cores). */
  get ownerHasCore(): boolean {
    return this.ownerCore;
  }

  /** What thread `index` is sent to map the memory. */
  attachMessage(index: number): SharedAttachMessage {
    // Threads spin longer between commands only where a core is left for this (owning) thread besides theirs (worker/shared-step-server.ts).
    const spinMicros = this.ownerHasCore ? THREAD_SPIN_MICROS : SPIN_MICROS_OVERSUBSCRIBED;
    // At a fused round's waits the owner waits too: they spin longer wherever each thread has a core.
    const roundSpinMicros = this.threadsHaveCores ? ROUND_SPIN_MICROS : SPIN_MICROS_OVERSUBSCRIBED;
    const set = this.ahead.trainSet;
    const run = this.runBoard ? { runBoard: this.runBoard.init } : {};
    return { type: 'shared_attach', init: this.mem.init, index, simd: this.simd, spinMicros, roundSpinMicros, fromBackend: this.fromBackend, ...(set ? { trainSet: { images: set.images, labels: set.labels, count: set.count }, ...run } : {}) };
  }

  /**
   * Gives the threads (with attachMessage, so before it) the run's training set, where it lies in
   * shared memory (common/data/load.ts makes it so): slices of it offered ahead then go by their
   * indices, and each thread copies its images in itself, so the owning thread copies no images
   * for those steps. Returns whether it could.
   */
  shareTrainSet(set: ImageSet): boolean {
    if (!isSharedSet(set)) return false;
    this.ahead.trainSet = set;
    const { threads, slots } = this.mem.shape;
    this.runBoard = RunBoard.create({ threads, slots, samples: Math.max(1, set.count) });
    return true;
  }

  /**
   * Whether steps may go in runs the threads drive themselves (runSteps): the training set is
   * shared, the model has no statistics to move (BatchNorm's go through the owner), the slots are
   * float32, and the memory can still be trusted.
   */
  get runsSteps(): boolean {
    return this.runBoard !== undefined && this.adam !== undefined && this.mem.shape.stats === 0 && this.grain === 0 && !this.broken && !this.movingStats;
  }

  /** The live threads, by index. */
  get liveThreads(): number[] {
    return this.alive.flatMap((a, i) => (a ? [i] : []));
  }

  /** The epoch's sample order, for the runs' threads to take their slices from (between runs only). */
  writeOrder(order: Uint32Array): void {
    const board = this.runBoard;
    if (!board || order.length > board.order.length) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `An order of ${order.length} samples does not fit the run board (${board?.order.length ?? 0}).`, { expected: false });
    board.order.set(order);
    board.words[RUN.orderLength] = order.length;
  }

  /**
   * A run of up to MAX_RUN_STEPS steps, driven by the live threads themselves (worker/step-run.ts):
   * one command per thread, then the owner sleeps until they are done. Returns the records of the
   * steps they committed, in order, and makes the last committed step's copies current. A step the
   * threads would not accept (the screen, the Adam guard) ends the run uncommitted; so does a thread
   * that fails or stops making progress for a step timeout (it is failed and evicted, as in a step).
   */
  async runSteps(plan: RunPlan, stepTimeoutMs: number, signal?: AbortSignal): Promise<RunOutcome> {
    const board = this.runBoard;
    if (!board || !this.runsSteps) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', 'A run of steps was asked for, but this shared-memory step cannot run them (no shared training set, BatchNorm, a reduction grain, or no weights loaded).', { expected: false });
    const live = this.liveThreads;
    if (live.length !== plan.counts.length || plan.steps < 1 || plan.steps > MAX_RUN_STEPS) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `A run of ${plan.steps} steps over ${plan.counts.length} slots was asked for, with ${live.length} live threads.`, { expected: false });
    await this.quietBeforeRun(live);
    this.prepareReduction(plan.counts);
    this.writeRunHeader(board, plan);
    live.forEach((index, k) => {
      board.words[board.threadWord(index, 'slot')] = k;
      board.words[board.threadWord(index, 'committed')] = 0;
      Atomics.store(this.mem.ctl, this.mem.slotOwner(k), index);
      this.slotHoldsGradient[k] = false;
    });
    const id = (this.runId = nextRunId(this.runId));
    for (const index of live) {
      this.mem.ctl[this.mem.threadBase(index) + CTL.op] = OP.run;
      this.mem.ctl[this.mem.threadBase(index) + CTL.runId] = id;
    }
    // A record left from an earlier run must not pass for this one's (RunOutcome.refused).
    board.records.fill(NaN);
    board.open(id);
    const startedAt = absoluteNow();
    // A shutdown ends the run at its next barrier or step; what was committed stays.
    const stop = () => board.abort(id);
    signal?.addEventListener('abort', stop, { once: true });
    if (signal?.aborted) stop();
    const failed = await this.awaitRun(board, id, live, stepTimeoutMs).finally(() => signal?.removeEventListener('abort', stop));
    if (failed.length > 0) await this.quiesce(failed);
    const committed = Math.max(0, ...live.map((i) => board.words[board.threadWord(i, 'committed')]));
    const steps = Array.from({ length: committed }, (_, j) => plan.counts.map((_c, k) => board.readRecord(j, k)));
    const next = committed < plan.steps ? plan.counts.map((_c, k) => board.readRecord(committed, k)) : undefined;
    const refused = failed.length === 0 && next?.every((r) => Number.isFinite(r.endedAt)) ? next : undefined;
    this.parity = ((this.parity + committed) & 1) as 0 | 1;
    this.adamStep += committed;
    this.fromBackendSteps += steps.filter((r) => r[0].fromBackend).length;
    return { steps, threads: live, startedAt, ...(refused ? { refused } : {}) };
  }

  /** Before a run: no round of a step left open, no offer ahead, every live thread idle. */
  private async quietBeforeRun(live: number[]): Promise<void> {
    if (this.broken) throw this.broken;
    this.closeRound();
    this.ahead.forget();
    if (this.unsettled.size > 0 || this.settling) await this.settleRound();
    await Promise.all(live.map((i) => this.idle(i, ++this.tickets[i])));
  }

  private writeRunHeader(board: RunBoard, plan: RunPlan): void {
    const w = board.words;
    w[RUN.slots] = plan.counts.length;
    w[RUN.steps] = plan.steps;
    w[RUN.firstStep] = plan.firstStep;
    w[RUN.offset] = plan.offset;
    w[RUN.batch] = plan.batch;
    w[RUN.parity] = this.parity;
    w[RUN.position] = plan.positionSeed !== undefined ? 1 : 0;
    w[RUN.seed] = (plan.positionSeed ?? 0) | 0;
    w[RUN.adamStep] = this.adamStep + 1;
    w[RUN.waitMs] = this.roundWaitMs;
    board.learningRate = this.adam!.config.learningRate;
    board.writeHistory(plan.history);
  }

  /**
   * Waits for the run's commands. A command that fails aborts the run for the others (the thread
   * failed a step: the ordinary step that follows retries it there, as for any slice; a thread lost
   * was already failed by whoever saw it go). If no thread commits a step for `stepTimeoutMs`, the
   * run is aborted, and the threads still busy roundWaitMs later are failed and evicted, as the
   * scheduler's timeout would. Returns the threads that are no longer alive.
   */
  private async awaitRun(board: RunBoard, id: number, live: number[], stepTimeoutMs: number): Promise<number[]> {
    const failed: number[] = [];
    const done = new Set<number>();
    const runs = live.map((index) =>
      this.command(index).then(
        () => void done.add(index),
        () => {
          done.add(index);
          board.abort(id);
          if (!this.alive[index]) failed.push(index);
        },
      ),
    );
    const all = Promise.all(runs);
    const progress = () => Math.max(0, ...live.map((i) => Atomics.load(board.words, board.threadWord(i, 'committed'))));
    let seen = 0;
    let patience = stepTimeoutMs;
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), patience)));
      const outcome = await Promise.race([all.then(() => 'done' as const), tick]);
      clearTimeout(timer);
      if (outcome === 'done') return failed;
      const now = progress();
      if (now !== seen) {
        seen = now;
        continue;
      }
      // No step committed for a whole step timeout: give the run up, then wait once more for the threads.
      if (!board.aborted(id)) {
        board.abort(id);
        patience = Math.max(1, this.roundWaitMs);
        continue;
      }
      for (const index of live) {
        if (done.has(index)) continue;
        const reason = `thread ${index + 1} made no progress in a run of steps for ${stepTimeoutMs} ms`;
        failed.push(index);
        this.fail(index, reason);
        this.onThreadFailed(index, reason);
      }
      await all;
      return failed;
    }
  }

  /** Copies the weights and the Adam state in (run start, after a resume); `adam` stays bound. */
  load(weights: Float32Array, adam: Adam): void {
    if ((adam.kind === 'simd') !== this.simd) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `The shared-memory step was set up for ${this.simd ? 'simd' : 'scalar'} Adam, but the trainer's Adam is ${adam.kind}.`, { expected: false });
    this.adam = adam;
    this.ahead.forget();
    const { beta1, beta2, epsilon } = adam.config;
    this.mem.f64[F64.beta1] = beta1;
    this.mem.f64[F64.beta2] = beta2;
    this.mem.f64[F64.epsilon] = epsilon;
    const s = adam.snapshot();
    this.parity = 0;
    // A thread whose backend holds an older copy 0 must upload this one.
    bumpCopyVersion(this.mem.ctl, 0);
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
      this.closeRound();
      this.stepSlots = 0;
      this.applied = undefined;
      this.fusedOptimizerMs = 0;
      this.computedAheadMs = 0;
      this.stepStartedAt = absoluteNow();
      this.slices.fill(undefined);
    }
    this.slices[slot] = { set, indices };
    this.stepSlots = Math.max(this.stepSlots, slot + 1);
    this.slotCounts[slot] = indices.length;
    const images = this.mem.images[slot].subarray(0, indices.length * IMAGE_BYTES);
    const labels = this.mem.labels[slot].subarray(0, indices.length);
    // The images are copied in only for a command that names no pass ahead (fillSlot).
    this.slotFilled[slot] = false;
    gatherLabels(set, indices, labels);
    this.slotOf.set(images, slot);
    return { kind: 'train', images, labels };
  }

  /**
   * Copies slot `slot`'s images in, once per step, before a command that may read them. A command
   * that names a pass ahead (step-ahead.ts) does not: its slice is the one offered, whose images
   * already lie in the thread's ahead buffer, and that thread reads them there if it cannot use the
   * pass. So in a run of passes ahead each image is copied once, into an ahead buffer, not twice.
   */
  private fillSlot(slot: number): void {
    const slice = this.slices[slot];
    if (this.slotFilled[slot] || !slice) return;
    const n = slice.indices.length;
    gatherInto(slice.set, slice.indices, this.mem.images[slot].subarray(0, n * IMAGE_BYTES), this.mem.labels[slot].subarray(0, n));
    this.slotFilled[slot] = true;
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
    const ticket = ++this.tickets[index];
    if (this.unsettled.size > 0 || this.settling) await this.settleRound();
    if (this.broken) throw this.broken;
    await this.idle(index, ticket);
    const fused = this.stepSlots === 1 && this.adam !== undefined;
    const round = fused ? 0 : this.joinRound(slot);
    this.applied = undefined;
    ctl[b + CTL.op] = fused || round !== 0 ? OP.trainApply : OP.train;
    ctl[b + CTL.slot] = slot;
    ctl[b + CTL.count] = task.labels.length;
    ctl[b + CTL.parity] = this.parity;
    ctl[b + CTL.fuseRound] = round;
    if (round !== 0) {
      ctl[b + CTL.roundSlots] = ctl[CTL.slotsUsed];
      this.roundThreads.add(index);
    }
    writeSliceFields(ctl, b, task);
    // Commands that reduce in the thread come with the next step's slice (step-ahead.ts); a plain train command breaks the chain.
    const offers = fused || round !== 0;
    ctl[b + CTL.ahead] = offers ? this.ahead.claim(index, slot, this.seqs[index], this.parity, this.slices[slot], task) : 0;
    if (!offers) this.ahead.forget();
    if (ctl[b + CTL.ahead] === 0) this.fillSlot(slot);
    if (fused) {
      this.prepareReduction([task.labels.length]);
      this.setStripe(b, { from: 0, to: this.mem.adamSpan }, true);
    } else if (round !== 0) {
      ctl[b + CTL.fuseWaitMs] = this.roundWaitMs;
      this.setStripe(b, stripes(this.mem.adamSpan, this.stepSlots)[slot], slot === this.stepSlots - 1);
    }
    // Only this thread may write the slot now: one evicted earlier but still running must not.
    Atomics.store(ctl, this.mem.slotOwner(slot), index);
    this.slotHoldsGradient[slot] = false;
    // The next step's slice goes to the thread with this command, to compute once it is done (step-ahead.ts).
    if (offers && this.alive[index]) this.ahead.offer(index, slot, this.seqs[index] + 1, (1 - this.parity) as 0 | 1);
    await this.command(index);
    if (ctl[b + CTL.aheadUsed] === 1) this.ahead.hits++;
    if (ctl[b + CTL.fromBackend] === 1) this.fromBackendSteps++;
    this.slotHoldsGradient[slot] = ctl[b + CTL.fromBackend] !== 1;
    const fb = this.mem.f64Base(index);
    this.slotSquares[slot] = f64[fb + F64.gradSquares];
    const before = this.aheadBeforeStep(fb);
    this.computedAheadMs = Math.max(this.computedAheadMs, before);
    const result: ResultMessage = { type: 'result', taskId: task.taskId, count: task.labels.length, lossSum: f64[fb + F64.lossSum], correct: ctl[b + CTL.correct], computeMs: f64[fb + F64.computeMs] - before };
    if (fused) this.applied = result;
    if (round !== 0 && round === this.round && ctl[b + CTL.fused] === 1) this.roundResults[slot] = result;
    if (fused || this.roundResults[slot] === result) this.fusedOptimizerMs = Math.max(this.fusedOptimizerMs, f64[fb + F64.optimizerMs]);
    return result;
  }

  /** Milliseconds of the pass ahead that thread block `fb`'s last command used which ran before this step began (0: it used none). */
  private aheadBeforeStep(fb: number): number {
    const { f64 } = this.mem;
    const aheadMs = f64[fb + F64.aheadMs];
    if (!(aheadMs > 0)) return 0;
    const startedAt = f64[fb + F64.aheadEndedAt] - aheadMs;
    return Math.min(aheadMs, Math.max(0, this.stepStartedAt - startedAt));
  }

  /** Phase 2's stripe for the command at thread block `b`; `last`: the stripe that also does the statistics (see apply). */
  private setStripe(b: number, stripe: { from: number; to: number }, last: boolean): void {
    const { ctl } = this.mem;
    ctl[b + CTL.from] = stripe.from;
    ctl[b + CTL.to] = stripe.to;
    ctl[b + CTL.doStats] = last && !this.movingStats ? 1 : 0;
  }

  /**
   * The fused round a command for `slot` joins (0: none, it trains only). The step's first command
   * opens the round; a slot asked for a second time (recomputed after a failure or a rejection)
   * breaks it, and so does a step with more slots than live threads, which could not all meet.
   */
  private joinRound(slot: number): number {
    if (!this.fuseRounds || this.roundBroken || !this.adam) return 0;
    if (this.round === 0) {
      const live = this.alive.filter(Boolean).length;
      if (this.stepSlots > Math.min(live, MAX_ROUND_SLOTS)) return 0;
      this.prepareReduction(this.slotCounts.slice(0, this.stepSlots));
      this.round = this.lastRound = nextRound(this.lastRound);
      openRound(this.mem.ctl, this.round);
    }
    if (this.roundIssued[slot]) {
      this.breakRound();
      return 0;
    }
    this.roundIssued[slot] = true;
    return this.round;
  }

  /** The step's round cannot complete as planned: threads waiting at its barrier leave it. */
  private breakRound(): void {
    this.roundBroken = true;
    if (this.round !== 0) abortRound(this.mem.ctl, this.round);
  }

  /**
   * Ends the step's round: a thread still waiting at its barrier leaves it. `applied`: apply() has
   * waited for all of its commands; otherwise (a new step after a refused or abandoned one) a thread
   * may still be running its stripe, so the next step's first command waits for the round's threads
   * (settleRound) before anything of theirs is rewritten.
   */
  private closeRound(applied = false): void {
    if (this.round !== 0) abortRound(this.mem.ctl, this.round);
    if (this.round !== 0 && !applied) this.roundIssued.forEach((issued, slot) => issued && this.unsettled.add(this.mem.ctl[this.mem.slotOwner(slot)]));
    this.round = 0;
    this.roundBroken = false;
    this.roundIssued.length = 0;
    this.roundThreads.clear();
    this.roundResults.length = 0;
  }

  /**
   * Waits until every thread of a round closed mid-way has finished its command (see closeRound).
   * A thread that takes longer than roundWaitMs more is failed and evicted here, by name: otherwise
   * the scheduler's timeout would run out on the command waiting behind it, and evict that one.
   */
  private async settleRound(): Promise<void> {
    // Every command of the new step waits for the same threads: one wait, shared.
    while (this.unsettled.size > 0 || this.settling) {
      if (!this.settling) {
        const waiting = [...this.unsettled];
        this.unsettled.clear();
        this.settling = Promise.all(waiting.map((index) => this.settleThread(index))).then(() => {
          this.settling = undefined;
        });
      }
      await this.settling;
    }
  }

  private async settleThread(index: number): Promise<void> {
    try {
      await withTimeout(this.finished(index), this.roundWaitMs, `thread ${index + 1}'s command of an abandoned step`);
    } catch (e) {
      this.fail(index, (e as Error).message);
      this.onThreadFailed(index, (e as Error).message);
      // A thread still in its stripe after that breaks the step memory: the next command says so.
      await this.quiesce([index]).catch(() => {});
    }
  }

  /**
   * Waits until none of the failed threads among `indices` can still write a stripe of a fused round
   * (it left the barrier or finished its stripe: CTL.roundPhase, or its thread exited), for up to
   * roundWaitMs. Phase 2 and the next step rewrite the next copies: a late stripe over them would
   * corrupt the weights. A thread that is still in its stripe after that marks the step memory broken.
   */
  private async quiesce(indices: Iterable<number>): Promise<void> {
    const { ctl } = this.mem;
    const waits = [...indices].filter((i) => !this.alive[i]).map(async (i) => {
      const phase = this.mem.threadBase(i) + CTL.roundPhase;
      const left = waitWhileEqual(ctl, phase, ROUND_PHASE.mayWrite);
      try {
        await withTimeout(Promise.race([left, this.threadGone(i)]), this.roundWaitMs, `thread ${i + 1}'s stripe`);
      } catch {
        this.broken ??= new DtrainError('DTRAIN_ERR_SHARED_STEP', `Thread ${i + 1} was evicted during a fused round and, ${this.roundWaitMs} ms later, may still be writing its stripe of the next weights (it neither left the round nor exited): the weights can no longer be trusted, so the run stops. Rerun with --workers 1, or resume from the last checkpoint.`, { expected: false });
      }
    });
    await Promise.all(waits);
    if (this.broken) throw this.broken;
  }

  /** Whether every one of the step's results came from its slot's round command, whose thread did its stripe. */
  private roundDone(results: readonly ResultMessage[]): boolean {
    return this.round !== 0 && !this.roundBroken && results.length === this.stepSlots && results.every((r, k) => r === this.roundResults[k]);
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
    f64[F64.inv] = 1 / count;
    writeAdamScalars(f64, this.adam.config, this.adamStep + 1);
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
    // The step's results came from trainApply commands (its one slot's, or a complete round's): their threads already wrote the next copies.
    if (this.broken) throw this.broken;
    const done = (results.length === 1 && results[0] === this.applied) || this.roundDone(results) || this.appliedFromBackend(results);
    if (!done) this.assertSlotsHoldGradients(results.length);
    const roundThreads = [...this.roundThreads];
    this.applied = undefined;
    this.closeRound(true);
    // A thread evicted past the barrier may still write its stripe: phase 2 must not start under it.
    if (!done) await this.quiesce(roundThreads);
    // Stripes of a round that fell back were wasted: the step's optimizer time is phase 2's.
    if (!done) this.fusedOptimizerMs = 0;
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

  /**
   * A step of one slot whose chosen result is another of the same slice than the one its last
   * command returned, where that command stepped from the backend. Phase 2 over the slot would
   * reduce the last command's gradient, which is what its stripe already wrote into the next copies
   * (the same bits); the slot, which that command did not write, is not read.
   */
  private appliedFromBackend(results: ResultMessage[]): boolean {
    return results.length === 1 && this.applied !== undefined && this.applied.count === results[0].count && !this.slotHoldsGradient[0];
  }

  /** Phase 2 reduces the slots: each must hold its last command's gradient sums. */
  private assertSlotsHoldGradients(slots: number): void {
    for (let slot = 0; slot < slots; slot++) {
      if (this.slotHoldsGradient[slot]) continue;
      throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `Slot ${slot}'s gradient is not in shared memory (its last command failed, or stepped from the backend and wrote the next weights itself), so the step's reduction cannot run; the weights are unchanged. Resume from the last checkpoint, or rerun with DTRAIN_STEP_FROM_BACKEND=0.`, { expected: false });
    }
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
    this.breakRound();
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
    await this.finished(index);
    if (ticket !== this.tickets[index]) throw new BnSyncAbortedError(`thread ${index + 1}'s command of an abandoned step was dropped: a newer one replaced it`);
  }

  /** Resolves once thread `index` has finished its last command (or has failed). */
  private async finished(index: number): Promise<void> {
    const b = this.mem.threadBase(index);
    while (this.alive[index] && Atomics.load(this.mem.ctl, b + CTL.doneSeq) !== this.seqs[index]) {
      await this.untilDone(b, this.seqs[index] - 1);
    }
  }

  /**
   * Resolves once the thread at `b` has published a completion after `seq`: dozing first where this
   * thread has a core of its own (the thread's completion then needs no notify), else asleep
   * (CTL.ownerSleeping counts it, so the thread notifies).
   */
  private untilDone(b: number, seq: number): Promise<void> {
    const { ctl } = this.mem;
    if (this.ownerHasCore && this.dozeMicros > 0) return dozeWhileEqual(ctl, b + CTL.doneSeq, seq, b + CTL.ownerSleeping, this.dozeMicros);
    return waitWhileEqual(ctl, b + CTL.doneSeq, seq, 0, b + CTL.ownerSleeping);
  }

  private command(index: number): Promise<void> {
    if (!this.alive[index]) return Promise.reject(new WorkerLostError(`thread ${index + 1} has failed`));
    const { ctl } = this.mem;
    const b = this.mem.threadBase(index);
    const seq = ++this.seqs[index];
    return new Promise<void>((resolve, reject) => {
      this.rejecters[index] = reject;
      publish(ctl, b + CTL.cmdSeq, seq, b + CTL.sleeping);
      void this.untilDone(b, seq - 1).then(() => {
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
