/**
 * The memory of the single-machine shared-memory step: one shared WebAssembly.Memory that the
 * coordinating thread and every compute thread map, plus a small shared control block.
 *
 * Memory (float32 unless said; every region starts on a 64-byte line):
 *   weights[0], weights[1]   every weight in layout order (trainable, then BatchNorm statistics);
 *                            step s reads weights[p] and writes weights[1-p] (ping-pong)
 *   m[0], m[1], v[0], v[1]   Adam's moments, ping-ponged with the weights
 *   reduced                  the mean gradient, written stripe by stripe before Adam reads it
 *   gradient[k], stats[k]    slot k's gradient sums and BatchNorm statistics (one slot per slice);
 *                            float64 gradient sums with a reduction grain (common/reduce-grain.ts)
 *   images[k], labels[k]     slot k's input bytes
 *   aheadImages[2t..2t+1], aheadLabels[2t..2t+1]   per thread t: the next step's slice, offered
 *                            ahead of its command (coordinator/step-ahead.ts), alternating by offer
 *   aheadSlices[2t..2t+1]    int32: with each, its sample count, whether the thread copies the images
 *                            in itself (1: from the training set it was given) and the indices
 * Keeping the previous weights and moments intact until the step is complete is what lets a step
 * whose thread died during the reduction be redone from the same inputs.
 *
 * Control (Int32Array, three 64-byte lines per thread after a global block): a command sequence word
 * the thread waits on, the command's fields (with the slice's sample position and BatchNorm mode,
 * for models with Dropout or BatchNorm), a done word the owning thread waits on, and the result.
 * Float64 scalars (Adam's bias corrections, 1/count, loss) live in a parallel Float64Array.
 */
import { IMAGE_BYTES } from './data/types.ts';
import { ShapeError } from './errors.ts';
import type { SamplePosition, SliceTask } from './protocol.ts';
import { populatePages, type Populated } from './populate.ts';

export interface StepMemoryShape {
  /** Trainable weights (the gradient's length). */
  trainable: number;
  /** Non-trainable weights after them (BatchNorm moving statistics); 0 when none. */
  stats: number;
  /** Slices per step at most: one per thread. */
  slots: number;
  /** Samples per slice at most. */
  slotSamples: number;
  /** Compute threads (control blocks). */
  threads: number;
  /** Reduction grain in samples (common/reduce-grain.ts); absent or 0: none. With one, gradient slots are float64. */
  grain?: number;
}

/** Stripes are whole 64-byte lines, so no two threads write the same cache line. */
export const STRIPE_FLOATS = 16;
const LINE = 64;
const PAGE = 65536;

/**
 * Commands a compute thread executes. `trainApply`: train, then reduce and apply Adam to the stripe
 * [from, to) in the same command: at once for a step of one slot, after the round's barrier
 * (CTL.fuseRound) for a step of several.
 */
/** `run`: a run of steps the threads drive themselves (common/step-run.ts). */
export const OP = { train: 1, reduce: 2, trainApply: 3, run: 4 } as const;

/** Int32 control indices: global ones, then per thread at threadBase(t) + field. */
export const CTL = {
  // global
  slotsUsed: 0,
  /** The fused round's barrier word (see arriveAtRound): round << 8 | arrivals. */
  round: 1,
  /**
   * Weight copy k's version at copyVersions + k: every writer of copy k (a stripe, the owner's load)
   * adds 1 before it writes. A compute thread that wrote the next weights into its backend as well
   * (StripeWorker.runFromBackend) skips the next upload only while the copy's version is the one it wrote.
   */
  copyVersions: 2,
  /**
   * The fused round's second count (see finishStripe): round << 8 | the stripes finished in it. A
   * thread that computes ahead after its stripe waits until every stripe of the round is written,
   * since its pass reads the whole next copy.
   */
  stripesDone: 4,
  /** slotCount[k] at slotCounts + k, then slot k's expected thread (StepMemory.slotOwner). */
  slotCounts: 16,
  // per thread (THREAD_INTS int32 = three lines)
  cmdSeq: 0,
  op: 1,
  slot: 2,
  count: 3,
  from: 4,
  to: 5,
  doStats: 6,
  parity: 7,
  doneSeq: 8,
  status: 9,
  correct: 10,
  errorLength: 11,
  /** Non-zero while the thread sleeps on cmdSeq (so a command needs a notify), 0 while it works or spins. */
  sleeping: 12,
  taskId: 13,
  /** 1 when the slice has a sample position (seed, step, firstSample: its Dropout masks), else 0. */
  hasPosition: 14,
  seed: 15,
  stepNo: 16,
  firstSample: 17,
  /** BN_MODE: how the slice's BatchNorm normalizes; with sync, the round (0: none) and its timeout. */
  bnMode: 18,
  bnRound: 19,
  bnTimeoutMs: 20,
  /**
   * A trainApply command of a step of several slots: the fused round it belongs to (0: none, a step
   * of one slot). The thread trains, meets the step's other threads at the round's barrier, then
   * reduces and applies Adam to its stripe [from, to), with no hand-off to the owning thread between.
   */
  fuseRound: 21,
  /** How long the thread waits at the barrier after arriving (ms) before leaving the reduction to the owner. */
  fuseWaitMs: 22,
  /** Set by the thread: 1 when it did its stripe of the fused round, else 0. */
  fused: 23,
  /**
   * Set by the thread in a fused round: ROUND_PHASE.mayWrite from just before it arrives at the
   * barrier until it has left it without a stripe or finished its stripe (then ROUND_PHASE.clear):
   * while it holds mayWrite, the thread may write its stripe of the next copies.
   */
  roundPhase: 24,
  /** The number of slots the round's barrier waits for, fixed with the command (the global slotsUsed changes with later steps). */
  roundSlots: 25,
  /**
   * The step ahead (coordinator/step-ahead.ts, worker/step-ahead.ts): fields of a trainApply
   * command (of one slot, or of a fused round). The slice offered with it, to compute once it is
   * done: its token (0: none; its images are the thread's aheadBuffer(token)), its sample count, and
   * the weight copy it is to be computed on (the one the command's step writes).
   */
  aheadSeq: 26,
  aheadCount: 27,
  aheadParity: 28,
  /** A trainApply command's field: the offer whose pass, computed ahead, the thread may use (0: none). */
  ahead: 29,
  /** Set by the thread: 1 when the command used the pass it had computed ahead, else 0. */
  aheadUsed: 30,
  /** Set by the thread: 1 when a step of one slot used its gradient where the backend held it (no slot copy), else 0. */
  fromBackend: 31,
  /** The offered slice's sample position (its Dropout masks), as hasPosition, seed, stepNo, firstSample for the command's. */
  aheadHasPosition: 32,
  aheadSeed: 33,
  aheadStepNo: 34,
  aheadFirstSample: 35,
  /**
   * The owning thread's waits asleep on this thread's doneSeq (so a completion needs a notify; more
   * than one where an abandoned step's command is still awaited), 0 while it works or dozes
   * (dozeWhileEqual: it sees the word without one).
   */
  ownerSleeping: 36,
  /** An OP.run command's field: the run it belongs to (common/step-run.ts); a thread finds the board's run id changed if it comes late. */
  runId: 37,
} as const;

/** An ahead buffer's int32 header: the slice's sample count, then 1 where the thread copies its images in (by index). */
export const AHEAD_SLICE = { count: 0, byIndex: 1 } as const;
const AHEAD_SLICE_HEADER = 2;

/**
 * A buffer for a slice offered ahead. The owning thread writes it with the offer: either the images
 * and labels themselves (byIndex 0), or only the indices into the training set it gave the threads
 * (byIndex 1), whose thread then copies the images in (worker/step-ahead.ts, fill). It stays as
 * written until the offer after next (the two buffers alternate).
 */
export interface AheadBuffer {
  images: Uint8Array;
  labels: Uint8Array;
  /** AHEAD_SLICE's header words, then the indices. */
  slice: Int32Array;
  /** The slice's sample indices into the training set (byIndex 1). */
  indices: Uint32Array;
}

/** CTL.roundPhase's values. */
export const ROUND_PHASE = { clear: 0, mayWrite: 1 } as const;

const THREAD_INTS = 48;

/** CTL.bnMode's values: the task's TaskBatchNorm (none: the model has no BatchNorm). */
const BN_MODE = { none: 0, sync: 1, local: 2 } as const;

/** Where a sample position's four words (has one, seed, step, first sample) lie in a thread block: the command's, or the offer's. */
const POSITION_WORDS = {
  command: [CTL.hasPosition, CTL.seed, CTL.stepNo, CTL.firstSample],
  ahead: [CTL.aheadHasPosition, CTL.aheadSeed, CTL.aheadStepNo, CTL.aheadFirstSample],
} as const;

/** Writes sample position `p` (or none) into the thread block at `b`: the command's words, or the offer's. */
export function writePosition(ctl: Int32Array, b: number, which: keyof typeof POSITION_WORDS, p: SamplePosition | undefined): void {
  const [has, seed, step, first] = POSITION_WORDS[which];
  ctl[b + has] = p ? 1 : 0;
  ctl[b + seed] = p ? p.seed | 0 : 0;
  ctl[b + step] = p ? p.step : 0;
  ctl[b + first] = p ? p.firstSample : 0;
}

/** Reads back what writePosition wrote. */
export function readPosition(ctl: Int32Array, b: number, which: keyof typeof POSITION_WORDS): SamplePosition | undefined {
  const [has, seed, step, first] = POSITION_WORDS[which];
  return ctl[b + has] === 1 ? { seed: ctl[b + seed] >>> 0, step: ctl[b + step], firstSample: ctl[b + first] } : undefined;
}

/** Writes `task`'s slice fields into the thread block at `b` (the owning thread, before the command). */
export function writeSliceFields(ctl: Int32Array, b: number, task: SliceTask): void {
  ctl[b + CTL.taskId] = task.taskId;
  writePosition(ctl, b, 'command', task.position);
  const bn = task.batchNorm;
  ctl[b + CTL.bnMode] = !bn ? BN_MODE.none : bn.mode === 'sync' ? BN_MODE.sync : BN_MODE.local;
  ctl[b + CTL.bnRound] = bn?.mode === 'sync' ? bn.round : 0;
  ctl[b + CTL.bnTimeoutMs] = bn?.mode === 'sync' ? bn.timeoutMs : 0;
}

/** Reads back what writeSliceFields wrote (the compute thread, running the command). */
export function readSliceFields(ctl: Int32Array, b: number): SliceTask {
  const mode = ctl[b + CTL.bnMode];
  return {
    taskId: ctl[b + CTL.taskId],
    position: readPosition(ctl, b, 'command'),
    batchNorm: mode === BN_MODE.sync ? { mode: 'sync', round: ctl[b + CTL.bnRound], timeoutMs: ctl[b + CTL.bnTimeoutMs] } : mode === BN_MODE.local ? { mode: 'local' } : undefined,
  };
}

/**
 * Writes Adam's step size and square-root correction for step `t` into the control block's globals:
 * the one place every stripe's scalars come from (SharedStep for a step, the slot-0 thread within a
 * run of steps, the step-ceiling benchmark), computed as Adam.apply does.
 */
export function writeAdamScalars(f64: Float64Array, adam: { learningRate: number; beta1: number; beta2: number }, t: number): void {
  f64[F64.stepSize] = adam.learningRate / (1 - Math.pow(adam.beta1, t));
  f64[F64.sqrtCorrection] = 1 / Math.sqrt(1 - Math.pow(adam.beta2, t));
}

/** Float64 control indices: global, then per thread at f64Base(t) + field. */
export const F64 = {
  inv: 0,
  stepSize: 1,
  sqrtCorrection: 2,
  beta1: 3,
  beta2: 4,
  epsilon: 5,
  // per thread (8 float64 = one line)
  lossSum: 0,
  computeMs: 1,
  /** Σ g² (float64) over the slot the thread just trained: the owner screens its norm. */
  gradSquares: 2,
  /** Milliseconds the thread spent on the reduction and Adam of a trainApply command. */
  optimizerMs: 3,
  /** Milliseconds of computeMs spent on the command's pass ahead (0: none was used). */
  aheadMs: 4,
  /** When that pass ended (absoluteNow). */
  aheadEndedAt: 5,
} as const;

/**
 * Milliseconds on a clock every thread of this process shares, for times one thread writes into the
 * control block and another compares (each thread's performance.now() counts from its own start).
 */
export function absoluteNow(): number {
  return performance.timeOrigin + performance.now();
}

export const STATUS = { ok: 0, failed: 1 } as const;
const ERROR_BYTES = 512;
/** The code of a thread's failure that carries none of its own. */
export const THREAD_STEP_FAILED = 'DTRAIN_ERR_THREAD_STEP';
/** The failure's error code, then this, then its message, in a thread's error bytes. */
const CODE_END = '\n';

function alignUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** The shape and a memory and control block to share; what is posted to each compute thread. */
export interface StepMemoryInit {
  shape: StepMemoryShape;
  memory: WebAssembly.Memory;
  control: SharedArrayBuffer;
}

export class StepMemory {
  readonly shape: StepMemoryShape;
  readonly memory: WebAssembly.Memory;
  readonly control: SharedArrayBuffer;
  /** Trainable count rounded up to whole SIMD lanes: the span Adam runs over. */
  readonly adamSpan: number;
  readonly weights: [Float32Array, Float32Array];
  readonly m: [Float32Array, Float32Array];
  readonly v: [Float32Array, Float32Array];
  readonly reduced: Float32Array;
  /** Bytes per gradient value in the slots: 8 (float64) with a reduction grain, else 4. */
  readonly gradientValueBytes: 4 | 8;
  /** Each slot's float32 gradient sums; empty with a reduction grain (wideGradients instead). */
  readonly gradients: Float32Array[];
  /** Each slot's float64 gradient sums with a reduction grain; empty without. */
  readonly wideGradients: Float64Array[];
  readonly statSums: Float32Array[];
  readonly images: Uint8Array[];
  readonly labels: Uint8Array[];
  /** Two buffers per thread for the slice offered ahead (see aheadBuffer); empty with a reduction grain. */
  readonly aheadImages: Uint8Array[];
  readonly aheadLabels: Uint8Array[];
  /** With each ahead buffer: [count, byIndex], then `slotSamples` sample indices (see AheadBuffer). */
  readonly aheadSlices: Int32Array[];
  /** The indices part of each of aheadSlices. */
  private readonly aheadIndices: Uint32Array[];
  /** Byte offsets in the memory, for the Adam kernel. */
  readonly offsets: { weights: [number, number]; m: [number, number]; v: [number, number]; reduced: number; gradients: number; gradientStride: number };
  readonly ctl: Int32Array;
  readonly f64: Float64Array;
  private readonly globalInts: number;
  private readonly globalFloats = 8;

  /** How create() mapped the memory's pages ahead of use (common/populate.ts); undefined for attach(). */
  readonly populated: Populated | undefined;

  private constructor(init: StepMemoryInit, populated?: Populated) {
    this.populated = populated;
    const { shape, memory, control } = init;
    this.shape = shape;
    this.memory = memory;
    this.control = control;
    this.adamSpan = alignUp(shape.trainable, 4);
    const plan = StepMemory.plan(shape);
    if (memory.buffer.byteLength < plan.bytes) throw new ShapeError(`Expected a step memory of at least ${plan.bytes} bytes, but got ${memory.buffer.byteLength}.`);
    const buf = memory.buffer;
    const f32 = (offset: number, n: number) => new Float32Array(buf, offset, n);
    const o = plan.offsets;
    // Slots are laid out alike, so slot k's gradient is at gradients + k·gradientStride.
    this.offsets = { weights: o.weights, m: o.m, v: o.v, reduced: o.reduced, gradients: o.gradients[0], gradientStride: shape.slots > 1 ? o.gradients[1] - o.gradients[0] : 0 };
    this.weights = [f32(o.weights[0], plan.weightFloats), f32(o.weights[1], plan.weightFloats)];
    this.m = [f32(o.m[0], this.adamSpan), f32(o.m[1], this.adamSpan)];
    this.v = [f32(o.v[0], this.adamSpan), f32(o.v[1], this.adamSpan)];
    this.reduced = f32(o.reduced, this.adamSpan);
    this.gradientValueBytes = StepMemory.gradientValueBytes(shape);
    const wide = this.gradientValueBytes === 8;
    this.gradients = wide ? [] : o.gradients.map((at) => f32(at, shape.trainable));
    this.wideGradients = wide ? o.gradients.map((at) => new Float64Array(buf, at, shape.trainable)) : [];
    this.statSums = o.stats.map((at) => f32(at, shape.stats));
    this.images = o.images.map((at) => new Uint8Array(buf, at, shape.slotSamples * IMAGE_BYTES));
    this.labels = o.labels.map((at) => new Uint8Array(buf, at, shape.slotSamples));
    this.aheadImages = o.aheadImages.map((at) => new Uint8Array(buf, at, shape.slotSamples * IMAGE_BYTES));
    this.aheadLabels = o.aheadLabels.map((at) => new Uint8Array(buf, at, shape.slotSamples));
    this.aheadSlices = o.aheadSlices.map((at) => new Int32Array(buf, at, AHEAD_SLICE_HEADER + shape.slotSamples));
    this.aheadIndices = o.aheadSlices.map((at) => new Uint32Array(buf, at + AHEAD_SLICE_HEADER * 4, shape.slotSamples));
    this.globalInts = alignUp(CTL.slotCounts + 2 * shape.slots, 16);
    const c = StepMemory.controlPlan(shape);
    this.ctl = new Int32Array(control, 0, c.ints);
    this.f64 = new Float64Array(control, c.f64Offset, c.floats);
  }

  private static gradientValueBytes(shape: StepMemoryShape): 4 | 8 {
    return (shape.grain ?? 0) > 0 ? 8 : 4;
  }

  /** Byte offsets of every region, in the order of the module comment. */
  static plan(shape: StepMemoryShape) {
    let at = 0;
    const take = (bytes: number) => {
      const start = at;
      at = alignUp(at + bytes, LINE);
      return start;
    };
    const span = alignUp(shape.trainable, 4);
    // The weights hold the Adam span too: Adam's padding lanes (gradient 0) rewrite what they read.
    const weightFloats = Math.max(shape.trainable + shape.stats, span);
    const weights: [number, number] = [take(weightFloats * 4), take(weightFloats * 4)];
    const m: [number, number] = [take(span * 4), take(span * 4)];
    const v: [number, number] = [take(span * 4), take(span * 4)];
    const reduced = take(span * 4);
    const gradients: number[] = [];
    const stats: number[] = [];
    const images: number[] = [];
    const labels: number[] = [];
    for (let k = 0; k < shape.slots; k++) {
      // Padded to the Adam span with lanes that stay 0: the SIMD reduction reads whole lanes.
      gradients.push(take(span * StepMemory.gradientValueBytes(shape)));
      stats.push(take(shape.stats * 4));
      images.push(take(shape.slotSamples * IMAGE_BYTES));
      labels.push(take(shape.slotSamples));
    }
    // A pass ahead runs on float32 slots only (coordinator/step-ahead.ts): no buffers with a grain.
    const ahead = (shape.grain ?? 0) > 0 ? [] : Array.from({ length: 2 * shape.threads }, (_, i) => i);
    const aheadImages = ahead.map(() => take(shape.slotSamples * IMAGE_BYTES));
    const aheadLabels = ahead.map(() => take(shape.slotSamples));
    const aheadSlices = ahead.map(() => take((AHEAD_SLICE_HEADER + shape.slotSamples) * 4));
    return { bytes: at, weightFloats, offsets: { weights, m, v, reduced, gradients, stats, images, labels, aheadImages, aheadLabels, aheadSlices } };
  }

  private static controlPlan(shape: StepMemoryShape) {
    const ints = alignUp(CTL.slotCounts + 2 * shape.slots, 16) + THREAD_INTS * shape.threads;
    const f64Offset = alignUp(ints * 4, LINE);
    const floats = 8 + 8 * shape.threads;
    const errorOffset = alignUp(f64Offset + floats * 8, LINE);
    return { ints, f64Offset, floats, errorOffset, bytes: errorOffset + ERROR_BYTES * shape.threads };
  }

  /** Allocates a zeroed memory and control block for `shape`. */
  static create(shape: StepMemoryShape): StepMemory {
    for (const [k, v] of Object.entries(shape)) {
      if (k === 'grain' && v === undefined) continue;
      if (!Number.isInteger(v) || v < 0) throw new ShapeError(`Expected ${k} to be a non-negative integer, but got ${v}.`);
    }
    if (shape.slots < 1 || shape.threads < 1 || shape.slotSamples < 1) throw new ShapeError(`Expected at least one slot, thread and sample, but got ${JSON.stringify(shape)}.`);
    const pages = Math.ceil(StepMemory.plan(shape).bytes / PAGE) || 1;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    const control = new SharedArrayBuffer(StepMemory.controlPlan(shape).bytes);
    // Mapped now rather than fault by fault in the first steps (the first stripe writes the next copies).
    return new StepMemory({ shape, memory, control }, populatePages(memory.buffer));
  }

  /** The views of a memory made elsewhere (in a compute thread, from the posted init). */
  static attach(init: StepMemoryInit): StepMemory {
    return new StepMemory(init);
  }

  get init(): StepMemoryInit {
    return { shape: this.shape, memory: this.memory, control: this.control };
  }

  /** Index of the word naming the thread that slot k's gradient is expected from. */
  slotOwner(k: number): number {
    return CTL.slotCounts + this.shape.slots + k;
  }

  /** Thread t's buffer for the slice of offer `token` (the two alternate by token), if the memory has them. */
  aheadBuffer(t: number, token: number): AheadBuffer | undefined {
    const i = 2 * t + (token & 1);
    if (i >= this.aheadImages.length) return undefined;
    return { images: this.aheadImages[i], labels: this.aheadLabels[i], slice: this.aheadSlices[i], indices: this.aheadIndices[i] };
  }

  /** Index of thread t's first control int. */
  threadBase(t: number): number {
    return this.globalInts + THREAD_INTS * t;
  }

  f64Base(t: number): number {
    return this.globalFloats + 8 * t;
  }

  /** Stores a failure message for the owning thread to read (truncated to fit). */
  writeError(t: number, message: string, code = THREAD_STEP_FAILED): void {
    const bytes = new TextEncoder().encode(code + CODE_END + message).subarray(0, ERROR_BYTES);
    new Uint8Array(this.control, StepMemory.controlPlan(this.shape).errorOffset + t * ERROR_BYTES, ERROR_BYTES).set(bytes);
    this.ctl[this.threadBase(t) + CTL.errorLength] = bytes.length;
  }

  readError(t: number): { code: string; message: string } {
    const n = this.ctl[this.threadBase(t) + CTL.errorLength];
    const at = StepMemory.controlPlan(this.shape).errorOffset + t * ERROR_BYTES;
    const text = new TextDecoder().decode(new Uint8Array(this.control, at, n).slice());
    const end = text.indexOf(CODE_END);
    return end < 0 ? { code: THREAD_STEP_FAILED, message: text } : { code: text.slice(0, end), message: text.slice(end + 1) };
  }
}

type WaitResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
export const atomicsWaitAsync = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number, timeout?: number) => WaitResult }).waitAsync;

/**
 * Resolves once `ctl[index]` is no longer `value`, without blocking the thread's event loop (so it
 * keeps handling messages). Spins for `spinMicros` first: a wake-up through the event loop costs
 * tens of microseconds, and the publisher's notify (a system call) is skipped for a thread that is
 * still spinning. `sleeping`, when given, is the word that tells the publisher which case it is:
 * raised before sleeping and the value checked again after, so a value published meanwhile is never
 * missed (both sides use sequentially consistent Atomics). It counts the sleepers (one waiter's
 * wake-up must not hide another's that still sleeps on the word).
 */
export async function waitWhileEqual(ctl: Int32Array, index: number, value: number, spinMicros = 0, sleeping?: number): Promise<void> {
  if (spinMicros > 0) {
    const until = performance.now() + spinMicros / 1000;
    while (performance.now() < until) if (Atomics.load(ctl, index) !== value) return;
  }
  if (sleeping !== undefined) Atomics.add(ctl, sleeping, 1);
  try {
    while (Atomics.load(ctl, index) === value) {
      const r = atomicsWaitAsync(ctl, index, value);
      if (r.async) await r.value;
    }
  } finally {
    if (sleeping !== undefined) Atomics.sub(ctl, sleeping, 1);
  }
}

/**
 * The owning thread's wait for a completion where it has a core of its own: resolves once
 * `ctl[index]` is no longer `value`. Once the event loop has run what was queued before (one
 * setImmediate: the step's report, the next slices' gather), it dozes: blocking Atomics.wait calls
 * with a timeout of `pollMicros` each, for up to `dozeMicros`, during which `sleeping` stays 0 and
 * the publisher skips its notify. On this VM a notify that wakes a sleeping thread costs the
 * publisher 35-80 µs, a store alone 2-5 µs, and the doze sees the store within ~85 µs (median)
 * where a notified waitAsync wakes in 105-155 µs (docs/shared-step.md, "The owner dozes"). Past
 * `dozeMicros` it sleeps as waitWhileEqual does, with `sleeping` set, so a slow command still
 * wakes it and the event loop is never held longer than that.
 */
export async function dozeWhileEqual(ctl: Int32Array, index: number, value: number, sleeping: number, dozeMicros: number, pollMicros = DOZE_POLL_MICROS): Promise<void> {
  if (Atomics.load(ctl, index) !== value) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  const until = performance.now() + dozeMicros / 1000;
  while (Atomics.load(ctl, index) === value) {
    if (performance.now() >= until) return waitWhileEqual(ctl, index, value, 0, sleeping);
    Atomics.wait(ctl, index, value, pollMicros / 1000);
  }
}

/** The doze's poll period (µs): see dozeWhileEqual. */
export const DOZE_POLL_MICROS = 50;

/** Stores `value` and wakes whoever waits on the word (only if it sleeps, when `sleeping` is given). */
export function publish(ctl: Int32Array, index: number, value: number, sleeping?: number): void {
  Atomics.store(ctl, index, value);
  if (sleeping === undefined || Atomics.load(ctl, sleeping) !== 0) Atomics.notify(ctl, index);
}

/**
 * The fused round's barrier. One word holds the round (bits 8 and up, 1 to MAX_ROUND) and the
 * arrivals in it (bits 0-7); ROUND_ABORTED in the arrivals marks a round the owner gave up. A thread
 * that arrives for a round the word no longer names (an old command) changes nothing.
 */
const ROUND_ABORTED = 0xff;
/** Slots a fused round may have (its arrivals must stay below ROUND_ABORTED). */
export const MAX_ROUND_SLOTS = ROUND_ABORTED - 1;
const MAX_ROUND = 0x7fffff;

/** The round after `round` (1 to MAX_ROUND, wrapping). */
export function nextRound(round: number): number {
  return (round % MAX_ROUND) + 1;
}

/** The owning thread: round `round` starts, with no arrivals. */
export function openRound(ctl: Int32Array, round: number): void {
  Atomics.store(ctl, CTL.stripesDone, round << 8);
  Atomics.store(ctl, CTL.round, round << 8);
  Atomics.notify(ctl, CTL.round);
  // A thread still waiting for an older round's stripes: that round is over.
  Atomics.notify(ctl, CTL.stripesDone);
}

/** Marks round `round` given up, if it is still the word's, and wakes whoever waits at its barrier. */
export function abortRound(ctl: Int32Array, round: number): void {
  for (;;) {
    const v = Atomics.load(ctl, CTL.round);
    if (v >>> 8 !== round || (v & 0xff) === ROUND_ABORTED || giveUpRound(ctl, round, v)) return;
  }
}

/** Marks round `round` given up if the word still holds `seen` (and wakes its waiters); false if it changed. */
function giveUpRound(ctl: Int32Array, round: number, seen: number): boolean {
  if (Atomics.compareExchange(ctl, CTL.round, seen, (round << 8) | ROUND_ABORTED) !== seen) return false;
  Atomics.notify(ctl, CTL.round);
  return true;
}

/** 'open' (arrivals so far), 'complete' (all `expected` arrived) or 'gone' (aborted, or another round). */
function roundState(v: number, round: number, expected: number): 'open' | 'complete' | 'gone' {
  const arrived = v & 0xff;
  if (v >>> 8 !== round || arrived === ROUND_ABORTED) return 'gone';
  return arrived >= expected ? 'complete' : 'open';
}

/**
 * A compute thread: counts itself in round `round`, then waits until `expected` threads have arrived
 * (true), or the round was aborted, replaced, or `waitMs` passed (false: the thread leaves the
 * reduction to the owning thread, and aborts the round for the others). Spins `spinMicros` first, then sleeps without blocking the event
 * loop, as waitWhileEqual does.
 */
export async function arriveAtRound(ctl: Int32Array, round: number, expected: number, waitMs: number, spinMicros: number): Promise<boolean> {
  for (;;) {
    const v = Atomics.load(ctl, CTL.round);
    if (roundState(v, round, expected) !== 'open') return false;
    if (Atomics.compareExchange(ctl, CTL.round, v, v + 1) !== v) continue;
    if ((v & 0xff) + 1 < expected) break;
    Atomics.notify(ctl, CTL.round);
    return true;
  }
  const spinUntil = performance.now() + spinMicros / 1000;
  const deadline = performance.now() + waitMs;
  for (;;) {
    const v = Atomics.load(ctl, CTL.round);
    const state = roundState(v, round, expected);
    if (state !== 'open') return state === 'complete';
    const now = performance.now();
    if (now >= deadline) {
      // Nobody else waits in vain, and no later arrival completes a round this thread has left; a
      // round completed since the load above is not given up (the swap fails, and the loop sees it).
      if (!giveUpRound(ctl, round, v)) continue;
      return false;
    }
    if (now < spinUntil) continue;
    const r = atomicsWaitAsync(ctl, CTL.round, v, deadline - now);
    if (r.async) await r.value;
  }
}

/** A compute thread whose stripe of round `round` is written counts it (a round the word no longer names: nothing). */
export function finishStripe(ctl: Int32Array, round: number): void {
  for (;;) {
    const v = Atomics.load(ctl, CTL.stripesDone);
    if (v >>> 8 !== round) return;
    if (Atomics.compareExchange(ctl, CTL.stripesDone, v, v + 1) === v) break;
  }
  Atomics.notify(ctl, CTL.stripesDone);
}

/**
 * Waits, without blocking the event loop, until `expected` stripes of round `round` are written or
 * the owner has opened a later round (true), or `waitMs` passed (false). After a completed round
 * the owner opens the next one only once every thread's command of this one is done; after an
 * abandoned one, an evicted thread may still be writing its stripe. A pass ahead that read such a
 * copy is never used: its step was not applied, so the copy is not the current one when the next
 * command is claimed (coordinator/step-ahead.ts), and its version moved (worker/step-ahead.ts). The
 * early true is needed all the same: the owner resets the count when it opens a round, possibly
 * before a waiter has seen the last stripe. Spins for `spinMicros` first (see ROUND_SPIN_MICROS in
 * worker/shared-step-server.ts).
 */
export async function stripesWritten(ctl: Int32Array, round: number, expected: number, waitMs: number, spinMicros = 0): Promise<boolean> {
  const deadline = performance.now() + waitMs;
  const spinUntil = Math.min(deadline, performance.now() + spinMicros / 1000);
  for (;;) {
    const v = Atomics.load(ctl, CTL.stripesDone);
    if (v >>> 8 !== round) return true;
    if ((v & 0xff) >= expected) return true;
    if (performance.now() < spinUntil) continue;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    const r = atomicsWaitAsync(ctl, CTL.stripesDone, v, left);
    if (r.async) await r.value;
  }
}

/** Splits [0, span) into `parts` near-equal stripes of whole lines (the last ends at `span`). */
export function stripes(span: number, parts: number): { from: number; to: number }[] {
  const lines = Math.ceil(span / STRIPE_FLOATS);
  const edge = (i: number) => Math.min(span, Math.floor((i * lines) / parts) * STRIPE_FLOATS);
  return Array.from({ length: parts }, (_, i) => ({ from: edge(i), to: edge(i + 1) }));
}
