/**
 * A compute thread's side of the shared-memory step: wait on this thread's command word (without
 * blocking the event loop, so messages such as evaluation tasks are still handled), then either
 * train on a slot (weights copied straight from shared memory into the backend, gradient sums
 * written into the slot) or reduce and apply Adam to a stripe of the parameters, or both in one
 * command when the step has one slot.
 */
import { CTL, F64, OP, ROUND_PHASE, STATUS, StepMemory, abortRound, arriveAtRound, finishStripe, publish, readSliceFields, stripesWritten, waitWhileEqual, type StepMemoryInit } from '../common/step-memory.ts';
import { StripeWorker, heldToken, type BackendSegment, type WeightsToken } from '../common/step-stripe.ts';
import type { BackendGradientUse } from './compute.ts';
import { simdSumSquaresKernel, sumSquares, type SumSquaresKernel } from '../common/sum-squares-simd.ts';
import { IMAGE_BYTES, type ImageSet } from '../common/data/types.ts';
import type { WorkerSession } from './session.ts';
import { StepAhead, type Offer, type PassAhead } from './step-ahead.ts';
import { RunBoard, type RunBoardInit } from '../common/step-run.ts';
import { runSteps, type RunHost } from './step-run.ts';

export interface SharedAttachMessage {
  type: 'shared_attach';
  init: StepMemoryInit;
  /** This thread's control block. */
  index: number;
  /** Whether to use the SIMD Adam kernel: the coordinator's Adam decides, so all agree. */
  simd: boolean;
  /** How long to spin on the command word before sleeping (µs): SPIN_MICROS where every thread has a core, else less. */
  spinMicros: number;
  /** How long to spin at a fused round's barrier and on its stripe count before sleeping (µs): ROUND_SPIN_MICROS where every thread has a core, else less. */
  roundSpinMicros: number;
  /** Whether a step of one slot may use its gradient where the backend holds it (SharedStepServer.trainApplyFromBackend). */
  fromBackend: boolean;
  /** The run's training set in shared memory (SharedStep.shareTrainSet): slices offered ahead by index are copied in from it. */
  trainSet?: ImageSet;
  /** With the training set: the board of runs of steps the threads drive themselves (common/step-run.ts). */
  runBoard?: RunBoardInit;
}

/**
 * How long a thread spins on its command word before sleeping (µs): see waitWhileEqual. The next
 * command usually follows within this (the reduction right after the last slice; the next step's
 * slice right after the owner has logged the step and gathered the next batch), and then neither a
 * notify nor a wake-up is needed. A spinning thread holds a core only while its partners are
 * computing on the others. Measured 2026-11-30 (`dtrain train --epochs 1 --dataset synthetic
 * --limit-train 40000 --no-plots`, three runs each, img/s from history.json): mlp on one thread
 * 26,355 / 24,946 / 25,816 at 50 µs against 27,892 / 26,089 / 28,029 at 500 µs, where the owner's
 * turnaround between steps outlasted 50 µs and every step paid a wake-up; lenet and cnn-bn on two
 * threads (both cores) no different by epoch (lenet 16,407 / 15,910 / 15,796 against 16,025 /
 * 15,568 / 16,209), but cnn-bn's step log showed the owner's share of the step (commMs) at
 * 0.87-0.97 ms against 0.48-0.60 ms at 50 µs: with every core held by a compute thread, a spinning
 * thread delays the owning thread. So the owner asks for SPIN_MICROS only where a core is left for
 * it (fewer threads than cores), else SPIN_MICROS_OVERSUBSCRIBED (the former 50).
 */
export const SPIN_MICROS = 500;
export const SPIN_MICROS_OVERSUBSCRIBED = 50;

/**
 * How long a thread of a fused round spins before it sleeps (µs), where every compute thread has a
 * core of its own: at the barrier (waiting for its partners' gradients) and on the stripe count
 * (waiting for their stripes before its pass ahead). A thread asleep there wakes through its event
 * loop 0.1-0.15 ms after the notify (docs/shared-step.md, "The owner dozes"), twice a step, and
 * its partner waits for it at the next of the two points. The owning thread is waiting for the
 * threads' completions at both points, so the spin takes no core it needs. With more threads than
 * cores a spinning thread would hold the core its partner needs: there they spin
 * SPIN_MICROS_OVERSUBSCRIBED. Measured in docs/shared-step.md, "Spinning at the round's two waits".
 */
export const ROUND_SPIN_MICROS = 400;

/**
 * How long a thread that finished its stripe of a fused round waits for the others' before it skips
 * its pass ahead (ms). The wait happens after the command is reported done, and the next command
 * cannot come before the last stripe is written (the owner waits for every thread's completion),
 * so waiting costs nothing while the partners are merely slow; only a partner gone mid-stripe makes
 * the owner's fallback command to this thread wait behind it, for at most this long.
 */
export const AHEAD_WAIT_MS = 20;

/** The fused round a command that came with an offer belonged to, and its slot count: the stripes its pass ahead waits for. */
interface RoundOfOffer {
  round: number;
  slots: number;
}

export class SharedStepServer {
  private readonly mem: StepMemory;
  private readonly stripe: StripeWorker;
  private readonly sumSquaresKernel: SumSquaresKernel | undefined;
  private readonly base: number;
  private readonly index: number;
  private readonly spinMicros: number;
  private readonly roundSpinMicros: number;
  private readonly fromBackend: boolean;
  private seq = 0;
  private readonly ahead: StepAhead;
  /** See AHEAD_WAIT_MS (a test may lengthen it, so that a pause of its one event loop does not skip a pass). */
  aheadWaitMs = AHEAD_WAIT_MS;
  /**
   * After a trainApply command: the slice offered with it, and the copy its step wrote, which the
   * pass ahead reads (step-ahead.ts); in a fused round, also the round and its slot count, whose
   * stripes must all be written first.
   */
  private wrote: { offer: Offer; parity: 0 | 1; round?: RoundOfOffer } | undefined;
  /** Set where the owner gave this thread a run board: OP.run commands drive steps here. */
  private readonly runHost: RunHost | undefined;

  constructor(msg: SharedAttachMessage, private readonly session: WorkerSession, private readonly serialize: (job: () => Promise<void>) => Promise<void>) {
    this.mem = StepMemory.attach(msg.init);
    this.stripe = new StripeWorker(this.mem, msg.simd);
    this.sumSquaresKernel = msg.simd ? simdSumSquaresKernel(this.mem.memory, true, this.mem.gradientValueBytes === 8) : undefined;
    this.index = msg.index;
    this.spinMicros = msg.spinMicros;
    this.roundSpinMicros = msg.roundSpinMicros;
    this.fromBackend = msg.fromBackend;
    this.base = this.mem.threadBase(msg.index);
    this.seq = Atomics.load(this.mem.ctl, this.base + CTL.cmdSeq);
    this.ahead = new StepAhead(this.mem, this.index, session, msg.trainSet);
    if (msg.runBoard && msg.trainSet) this.runHost = this.makeRunHost(RunBoard.attach(msg.runBoard), msg.trainSet);
  }

  /** What a run of steps (worker/step-run.ts) calls back into: this thread's training and stripe. */
  private makeRunHost(board: RunBoard, trainSet: ImageSet): RunHost {
    return {
      mem: this.mem,
      board,
      index: this.index,
      trainSet,
      spinMicros: this.roundSpinMicros,
      trainApply: () => this.trainApply(undefined),
      train: () => this.train(true),
      stripe: () => void this.runStripe(false),
    };
  }

  /** Serves commands until the thread ends. */
  async serve(): Promise<void> {
    const { ctl } = this.mem;
    for (;;) {
      await waitWhileEqual(ctl, this.base + CTL.cmdSeq, this.seq, this.spinMicros, this.base + CTL.sleeping);
      this.seq = Atomics.load(ctl, this.base + CTL.cmdSeq);
      await this.serialize(() => this.execute());
      publish(ctl, this.base + CTL.doneSeq, this.seq, this.base + CTL.ownerSleeping);
      const wrote = this.wrote;
      this.wrote = undefined;
      if (wrote && (!wrote.round || (await stripesWritten(ctl, wrote.round.round, wrote.round.slots, this.aheadWaitMs, this.roundSpinMicros)))) {
        await this.serialize(() => this.ahead.compute(wrote.offer, wrote.parity));
      }
    }
  }

  private async execute(): Promise<void> {
    const { ctl } = this.mem;
    const b = this.base;
    ctl[b + CTL.aheadUsed] = 0;
    ctl[b + CTL.fromBackend] = 0;
    try {
      const op = ctl[b + CTL.op];
      const single = op === OP.trainApply && ctl[b + CTL.fuseRound] === 0;
      // A pass computed ahead serves only the command that names its offer.
      const pass = this.ahead.take(op === OP.trainApply ? ctl[b + CTL.ahead] : 0);
      if (op === OP.train) await this.train(true);
      else if (op === OP.reduce) this.runStripe(false);
      else if (single) await this.trainApply(pass);
      else if (op === OP.trainApply) await this.trainInRound(ctl[b + CTL.fuseRound], pass);
      else if (op === OP.run) await this.run();
      else throw new Error(`unknown shared-step command ${op}`);
      ctl[b + CTL.status] = STATUS.ok;
    } catch (err) {
      // The step's other threads must not wait at the barrier for this one.
      if (ctl[b + CTL.op] === OP.trainApply && ctl[b + CTL.fuseRound] !== 0) abortRound(ctl, ctl[b + CTL.fuseRound]);
      if (ctl[b + CTL.op] === OP.run) this.runHost?.board.abort(ctl[b + CTL.runId]);
      const e = err as { code?: unknown; message?: string };
      this.mem.writeError(this.index, e.message ?? String(err), typeof e.code === 'string' ? e.code : undefined);
      ctl[b + CTL.status] = STATUS.failed;
    }
  }

  /** A run of steps (worker/step-run.ts); no pass ahead follows it. */
  private async run(): Promise<void> {
    if (!this.runHost) throw new Error('a run of steps was asked for, but this thread was given no run board');
    try {
      await runSteps(this.runHost);
    } finally {
      this.wrote = undefined;
    }
  }

  /** A step of one slot: train, then reduce and apply Adam over the whole span. */
  private async trainApply(pass: PassAhead | undefined): Promise<void> {
    // Whether the backend can lend its tensors (wasm) is the computer's to say: else the slot, as here.
    if (this.fromBackend && this.stripe.runsFromBackend) return this.trainApplyFromBackend(pass);
    // The native stripe takes the slot's Σ g² in its own pass over the gradient; else train() does.
    const fused = this.stripe.fusesSquares;
    await this.train(!fused, pass);
    // train() refused a reassigned slot by throwing, so the stripe reads this thread's own gradient.
    const started = performance.now();
    const squares = this.runStripe(fused);
    const fb = this.mem.f64Base(this.index);
    if (squares !== undefined) this.mem.f64[fb + F64.gradSquares] = squares;
    this.mem.f64[fb + F64.optimizerMs] = performance.now() - started;
    this.keepOffer();
  }

  /** After a trainApply command: the slice offered with it, for the pass ahead on the copy its step wrote (`round`: once the round's stripes are). */
  private keepOffer(round?: RoundOfOffer): void {
    const offer = this.ahead.offer();
    if (offer) this.wrote = { offer, parity: (1 - this.mem.ctl[this.base + CTL.parity]) as 0 | 1, round };
  }

  /**
   * A step of one slot on wasm with the native stripe: one pass reads the gradient sums where the
   * backend left them, writes them into the slot, reduces, applies Adam and writes the next weights
   * into new weight tensors of the model as well as into the next copy, so the next step (or the
   * pass ahead) on that copy skips its upload while the copy's version is the one written
   * (CTL.copyVersions). The same bits as trainApply's copy, slot and stripe, with two passes over
   * the parameters fewer (the copy out of the backend and the upload; the mlp's 402,250 parameters
   * are 1.6 MB a pass). Where the backend cannot lend its tensors (a fallback from wasm), the slot
   * and the stripe as in trainApply.
   */
  private async trainApplyFromBackend(pass: PassAhead | undefined): Promise<void> {
    const { ctl, f64 } = this.mem;
    const b = this.base;
    const task = this.stripeTask();
    let stripeMs = 0;
    let squares = 0;
    let lent = false;
    const use: Omit<BackendGradientUse, 'stats' | 'gradientSum'> = {
      use: (segments: BackendSegment[] | undefined): WeightsToken | undefined => {
        const started = performance.now();
        lent = segments !== undefined;
        let token: WeightsToken | undefined;
        if (segments) ({ squares, token } = this.stripe.runFromBackend(task, segments));
        else {
          squares = this.stripe.run(task, true) ?? this.gradientSquares(ctl[b + CTL.slot]);
        }
        stripeMs = performance.now() - started;
        return token;
      },
    };
    await this.train(false, pass, use);
    ctl[b + CTL.fromBackend] = lent ? 1 : 0;
    const fb = this.mem.f64Base(this.index);
    f64[fb + F64.gradSquares] = squares;
    f64[fb + F64.optimizerMs] = stripeMs;
    f64[fb + F64.computeMs] -= stripeMs;
    this.keepOffer();
  }

  /**
   * A slot of a step of several: train, wait at the round's barrier for the step's other slots, then
   * reduce and apply Adam to this thread's stripe. If the round is given up or the wait (CTL.fuseWaitMs
   * from the command's start) runs out, the stripe is left to the owning thread's reduce commands
   * (CTL.fused stays 0).
   */
  private async trainInRound(round: number, pass: PassAhead | undefined): Promise<void> {
    const { ctl } = this.mem;
    const b = this.base;
    ctl[b + CTL.fused] = 0;
    const commanded = performance.now();
    await this.train(true, pass);
    // The wait counts from the command, so the whole command stays within the owner's step timeout.
    const waitMs = Math.max(0, ctl[b + CTL.fuseWaitMs] - (performance.now() - commanded));
    // Said before arriving, so an owner that gives the round up (SharedStep.quiesce) waits for a
    // thread that may be past the barrier until it has written its stripe or left.
    Atomics.store(ctl, b + CTL.roundPhase, ROUND_PHASE.mayWrite);
    try {
      if (!(await arriveAtRound(ctl, round, ctl[b + CTL.roundSlots], waitMs, this.roundSpinMicros))) return;
      const started = performance.now();
      this.runStripe(false);
      this.mem.f64[this.mem.f64Base(this.index) + F64.optimizerMs] = performance.now() - started;
      ctl[b + CTL.fused] = 1;
      finishStripe(ctl, round);
      // The pass ahead reads the whole next copy: it waits for the others' stripes first.
      this.keepOffer({ round, slots: ctl[b + CTL.roundSlots] });
    } finally {
      publish(ctl, b + CTL.roundPhase, ROUND_PHASE.clear);
    }
  }

  /** This thread's stripe; with `squares`, also slot 0's Σ g² when the stripe's kernel takes it (else undefined). */
  private runStripe(squares: boolean): number | undefined {
    return this.stripe.run(this.stripeTask(), squares);
  }

  /** The stripe this thread's command names. */
  private stripeTask(): { from: number; to: number; parity: 0 | 1; doStats: boolean } {
    const { ctl } = this.mem;
    const b = this.base;
    return { from: ctl[b + CTL.from], to: ctl[b + CTL.to], parity: ctl[b + CTL.parity] as 0 | 1, doStats: ctl[b + CTL.doStats] === 1 };
  }

  /**
   * Trains on this thread's slot; `squares`: also takes the slot's Σ g² (else the stripe does, after).
   * `pass`: the slot's forward and backward pass, computed ahead (its command named it): only written out.
   * `use`: hand the gradient where the backend holds it to `use` (which writes the slot itself).
   */
  private async train(squares: boolean, pass?: PassAhead, use?: Omit<BackendGradientUse, 'stats' | 'gradientSum'>): Promise<void> {
    const { ctl, f64, shape } = this.mem;
    const b = this.base;
    const started = performance.now();
    const slot = ctl[b + CTL.slot];
    const count = ctl[b + CTL.count];
    const parity = ctl[b + CTL.parity] as 0 | 1;
    const weights = this.mem.weights[parity].subarray(0, shape.trainable + shape.stats);
    // The slot may have been handed to another thread meanwhile (this one was evicted): leave it alone.
    const owned = () => Atomics.load(ctl, this.mem.slotOwner(slot)) === this.index;
    // The gradient goes straight from the backend's tensors into the slot (one copy).
    const target = () => {
      if (!owned()) return undefined;
      const stats = this.mem.statSums[slot];
      return use ? { ...use, gradientSum: this.mem.gradients[slot], stats } : { gradientSum: this.slotGradient(slot), stats };
    };
    const early = pass && (await this.session.finishAhead(pass.prepared, target));
    if (early) ctl[b + CTL.aheadUsed] = 1;
    let r = early;
    if (!r) {
      const input = this.slice(slot, count);
      r = await this.session.trainWithInto(weights, input.images, input.labels, target, readSliceFields(ctl, b), shape.grain ?? 0, heldToken(ctl, parity));
    }
    if (!owned()) throw new Error(`slot ${slot} was reassigned while thread ${this.index + 1} computed it`);
    const fb = this.mem.f64Base(this.index);
    f64[fb + F64.lossSum] = r.lossSum;
    // The owner screens the slot's norm before it counts (coordinator/result-check.ts): taken here, by
    // the thread that wrote the gradient and while it is in cache, so the owner does no O(parameters) work.
    if (squares) f64[fb + F64.gradSquares] = this.gradientSquares(slot);
    // A pass ahead ran before the command: its time counts as the command's compute, and is said
    // apart with when it ended, so the owner can tell how much of it overlapped the step before.
    f64[fb + F64.computeMs] = performance.now() - started + (early ? pass.computeMs : 0);
    f64[fb + F64.aheadMs] = early ? pass.computeMs : 0;
    f64[fb + F64.aheadEndedAt] = early ? pass.endedAt : 0;
    ctl[b + CTL.correct] = r.correct;
  }

  /**
   * The command's images and labels: slot `slot`'s, or, where the command names a pass ahead, the
   * ahead buffer that pass was offered in, which holds the same slice (the owning thread copies a
   * slot's images in only for commands that name none: SharedStep.fillSlot).
   */
  private slice(slot: number, count: number): { images: Uint8Array; labels: Uint8Array } {
    const { ctl } = this.mem;
    const token = ctl[this.base + CTL.op] === OP.trainApply ? ctl[this.base + CTL.ahead] : 0;
    const from = (token !== 0 && this.ahead.fill(token)) || { images: this.mem.images[slot], labels: this.mem.labels[slot] };
    return { images: from.images.subarray(0, count * IMAGE_BYTES), labels: from.labels.subarray(0, count) };
  }

  /** Slot `slot`'s gradient sums: float64 with a reduction grain. */
  private slotGradient(slot: number): Float32Array | Float64Array {
    return this.mem.wideGradients[slot] ?? this.mem.gradients[slot];
  }

  /** Σ g² over slot `slot`'s gradient sums (its padding lanes are 0), in float64. */
  private gradientSquares(slot: number): number {
    const { offsets, adamSpan, gradientValueBytes } = this.mem;
    if (!this.sumSquaresKernel) return sumSquares(this.slotGradient(slot));
    return this.sumSquaresKernel(adamSpan * gradientValueBytes, offsets.gradients + slot * offsets.gradientStride);
  }
}
