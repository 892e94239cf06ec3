/**
 * A run of steps driven by the compute threads themselves (coordinator/shared-step.ts, runSteps;
 * worker/step-run.ts). The owning thread hands every live thread one command for up to
 * MAX_RUN_STEPS consecutive steps; each thread then, step by step, gathers its own slice of the
 * epoch's order, trains, meets the others at a barrier, reduces and applies Adam to its stripe,
 * meets them again, and judges the step as the owner would (the result screen and the Adam guard,
 * the same code on the same numbers in every thread, so all agree). The owner sleeps until the
 * run is over, then reads each step's record and reports it. A step the threads would not accept
 * ends the run uncommitted, and the owner's ordinary step takes it from there.
 *
 * This board is a SharedArrayBuffer of its own, made once with the run's training set:
 *   int32   header words (RUN), then per thread THREAD_WORDS words (RUN_THREAD);
 *   float64 Adam's learning rate, the screen's history (count, then up to SCREEN_HISTORY norms);
 *   float64 records: per step of a run, per slot, RECORD_FIELDS values (RECORD);
 *   uint32  the epoch's sample order (the owner writes it once per epoch, between runs).
 */
import { ShapeError } from './errors.ts';
import { atomicsWaitAsync } from './step-memory.ts';

/** The most steps one run command covers: the owner reports them once it is over. */
export const MAX_RUN_STEPS = 32;
/** Norms of the screen's history the board carries (the screen keeps 64 by default). */
export const SCREEN_HISTORY = 64;

/** Header words. `barrier` sits on a cache line of its own: every arrival writes it. */
export const RUN = {
  /** The run's id (1..RUN_IDS): commands, barrier arrivals and aborts name it. */
  id: 0,
  /** Set to a run's id to abort it: threads leave at the next barrier or step. */
  abort: 1,
  slots: 2,
  steps: 3,
  /** The global step number of the run's first step (its Dropout positions). */
  firstStep: 4,
  /** The first step's offset into the epoch's order. */
  offset: 5,
  batch: 6,
  /** The weight copy the first step reads (later steps alternate). */
  parity: 7,
  /** 1 where slices carry a sample position (Dropout), else 0. */
  position: 8,
  seed: 9,
  /** Adam's step number of the run's first step. */
  adamStep: 10,
  /** How long a thread waits at a barrier before it gives the run up (ms). */
  waitMs: 11,
  /** The order's length: the epoch's sample count. */
  orderLength: 12,
  barrier: 16,
} as const;
const HEADER_WORDS = 32;
/** Per thread: the slot it trains in the run, and the steps it has committed. */
export const RUN_THREAD = { slot: 0, committed: 1 } as const;
const THREAD_WORDS = 16;
/** A run's id lives in the barrier word's top 12 bits, its arrivals in the low 20. */
const ID_SHIFT = 20;
const ARRIVALS = (1 << ID_SHIFT) - 1;
export const RUN_IDS = 4095;

/** Float64 header: the learning rate, then the screen's history (count, norms). */
const F64_HEADER = 2 + SCREEN_HISTORY;
/** A step's record, per slot. */
export const RECORD = { lossSum: 0, correct: 1, squares: 2, computeMs: 3, optimizerMs: 4, fromBackend: 5, endedAt: 6 } as const;
const RECORD_FIELDS = 8;

export interface RunBoardShape {
  threads: number;
  slots: number;
  /** The training set's sample count: the longest order. */
  samples: number;
}

export interface RunBoardInit {
  shape: RunBoardShape;
  buffer: SharedArrayBuffer;
}

/** One step's record of one slot, as its thread wrote it. */
export interface SlotRecord {
  lossSum: number;
  correct: number;
  squares: number;
  computeMs: number;
  optimizerMs: number;
  fromBackend: boolean;
  /** When the thread finished the step (absoluteNow). */
  endedAt: number;
}

export class RunBoard {
  readonly shape: RunBoardShape;
  readonly buffer: SharedArrayBuffer;
  readonly words: Int32Array;
  readonly f64: Float64Array;
  readonly records: Float64Array;
  readonly order: Uint32Array;

  private constructor(init: RunBoardInit) {
    this.shape = init.shape;
    this.buffer = init.buffer;
    const { threads, slots, samples } = init.shape;
    const ints = HEADER_WORDS + THREAD_WORDS * threads;
    const f64At = Math.ceil((ints * 4) / 64) * 64;
    this.words = new Int32Array(init.buffer, 0, ints);
    this.f64 = new Float64Array(init.buffer, f64At, F64_HEADER);
    const recordsAt = f64At + F64_HEADER * 8;
    this.records = new Float64Array(init.buffer, recordsAt, MAX_RUN_STEPS * slots * RECORD_FIELDS);
    this.order = new Uint32Array(init.buffer, recordsAt + this.records.byteLength, samples);
  }

  static create(shape: RunBoardShape): RunBoard {
    for (const [k, v] of Object.entries(shape)) {
      if (!Number.isInteger(v) || v < 1) throw new ShapeError(`Expected the run board's ${k} to be a positive integer, but got ${v}.`);
    }
    const ints = HEADER_WORDS + THREAD_WORDS * shape.threads;
    const bytes = Math.ceil((ints * 4) / 64) * 64 + F64_HEADER * 8 + MAX_RUN_STEPS * shape.slots * RECORD_FIELDS * 8 + shape.samples * 4;
    return new RunBoard({ shape, buffer: new SharedArrayBuffer(bytes) });
  }

  static attach(init: RunBoardInit): RunBoard {
    return new RunBoard(init);
  }

  get init(): RunBoardInit {
    return { shape: this.shape, buffer: this.buffer };
  }

  threadWord(t: number, field: keyof typeof RUN_THREAD): number {
    return HEADER_WORDS + THREAD_WORDS * t + RUN_THREAD[field];
  }

  get learningRate(): number {
    return this.f64[0];
  }

  set learningRate(rate: number) {
    this.f64[0] = rate;
  }

  /** Copies the screen's accepted norms in (the most recent SCREEN_HISTORY). */
  writeHistory(norms: readonly number[]): void {
    const kept = norms.slice(-SCREEN_HISTORY);
    this.f64[1] = kept.length;
    this.f64.set(kept, 2);
  }

  readHistory(): number[] {
    return Array.from(this.f64.subarray(2, 2 + this.f64[1]));
  }

  private recordAt(step: number, slot: number): number {
    if (step < 0 || step >= MAX_RUN_STEPS || slot < 0 || slot >= this.shape.slots) throw new ShapeError(`Expected a record within ${MAX_RUN_STEPS} steps and ${this.shape.slots} slots, but got step ${step}, slot ${slot}.`);
    return (step * this.shape.slots + slot) * RECORD_FIELDS;
  }

  writeRecord(step: number, slot: number, r: SlotRecord): void {
    const at = this.recordAt(step, slot);
    const f = this.records;
    f[at + RECORD.lossSum] = r.lossSum;
    f[at + RECORD.correct] = r.correct;
    f[at + RECORD.squares] = r.squares;
    f[at + RECORD.computeMs] = r.computeMs;
    f[at + RECORD.optimizerMs] = r.optimizerMs;
    f[at + RECORD.fromBackend] = r.fromBackend ? 1 : 0;
    f[at + RECORD.endedAt] = r.endedAt;
  }

  readRecord(step: number, slot: number): SlotRecord {
    const at = this.recordAt(step, slot);
    const f = this.records;
    return { lossSum: f[at + RECORD.lossSum], correct: f[at + RECORD.correct], squares: f[at + RECORD.squares], computeMs: f[at + RECORD.computeMs], optimizerMs: f[at + RECORD.optimizerMs], fromBackend: f[at + RECORD.fromBackend] === 1, endedAt: f[at + RECORD.endedAt] };
  }

  /** The owner: run `id` starts, with no arrivals and no abort. */
  open(id: number): void {
    Atomics.store(this.words, RUN.abort, 0);
    Atomics.store(this.words, RUN.barrier, id << ID_SHIFT);
    Atomics.store(this.words, RUN.id, id);
  }

  /** Gives run `id` up: every thread leaves at its next barrier or step. */
  abort(id: number): void {
    Atomics.store(this.words, RUN.abort, id);
    Atomics.notify(this.words, RUN.barrier);
  }

  aborted(id: number): boolean {
    return Atomics.load(this.words, RUN.abort) === id;
  }

  /**
   * A thread of run `id`: counts itself in at barrier generation `generation` (1, 2, ...) and waits
   * until all `threads` have arrived that many times (true). False when the run was aborted or a
   * later one opened (an evicted thread arriving late changes nothing), or when `waitMs` passed:
   * then it aborts the run for the others. Spins `spinMicros` before it sleeps, then waits without
   * blocking the event loop (Atomics.waitAsync), as the fused round's barrier does.
   */
  async arrive(id: number, threads: number, generation: number, spinMicros: number, waitMs: number): Promise<boolean> {
    const w = this.words;
    const goal = generation * threads;
    for (;;) {
      const v = Atomics.load(w, RUN.barrier);
      if (v >>> ID_SHIFT !== id || this.aborted(id)) return false;
      if (Atomics.compareExchange(w, RUN.barrier, v, v + 1) !== v) continue;
      if ((v & ARRIVALS) + 1 >= goal) {
        Atomics.notify(w, RUN.barrier);
        return true;
      }
      break;
    }
    const started = performance.now();
    for (;;) {
      const v = Atomics.load(w, RUN.barrier);
      if (v >>> ID_SHIFT !== id || this.aborted(id)) return false;
      if ((v & ARRIVALS) >= goal) return true;
      const waited = performance.now() - started;
      if (waited > waitMs) {
        this.abort(id);
        return false;
      }
      if (waited * 1000 <= spinMicros) continue;
      const sleep = atomicsWaitAsync(w, RUN.barrier, v, Math.min(50, waitMs - waited + 1));
      if (sleep.async) await sleep.value;
    }
  }
}

/** The run id after `id` (1..RUN_IDS, wrapping). */
export function nextRunId(id: number): number {
  return (id % RUN_IDS) + 1;
}
