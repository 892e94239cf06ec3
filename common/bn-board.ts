/**
 * Synchronized BatchNorm's exchange between the compute threads of one process, in shared memory:
 * the in-process transport's fast path. Over messages (bn-exchange-channel.ts and the owner's
 * ExchangeRound) every exchange wakes the owning thread's event loop and waits for it; cnn-bn makes
 * 8 exchanges a step, which cost 5.5-6.8 ms of a 16 ms step at K=2 on the 2-core machine. Here the
 * threads meet on a board instead: each writes its slice's sums into its own lane, and the last to
 * arrive combines all lanes, in the order of the slices' first samples, with the same functions as
 * ExchangeRound (so the totals are the same, bit for bit), and wakes the others.
 *
 * The owning thread still owns the round: `open` starts it (before its tasks are sent), `end`
 * closes or abandons it, and a thread waiting on it then throws BN_SYNC_ABORTED, as over messages.
 * Every word names its round, so a late thread of an ended round can neither count towards nor
 * read the totals of the next one.
 *
 * The last arrival claims the key (PENDING → COMBINING) before it writes the totals and publishes
 * them (COMBINING → READY); the owner's `end` turns PENDING or COMBINING into ABORTED, so a thread
 * that arrived just before its round ended cannot publish into it. The totals alternate between two
 * buffers by round parity, so the next round's combine never writes the buffer a late reader of
 * this one copies from (only a thread stalled across two whole rounds could still collide).
 *
 * Layout (one SharedArrayBuffer): Int32 control [slices, then per key: arrive, done], per key and
 * thread a lane (Int32 stamp and first sample, then float64 sums), per key two totals buffers. A
 * key is one exchange of a step: forward of layer l is key l, backward of layer l is key L + l.
 */
import { availableParallelism } from 'node:os';
import { ConfigError } from './errors.ts';
import { BnSyncAbortedError, BnSyncTimeoutError, BnSyncUnsupportedError } from './bn-sync-errors.ts';
import { combineSlices, momentsLength } from './batch-moments.ts';
import { bytesToFloat64 } from './codec.ts';
import type { BnSumsMessage } from './protocol.ts';

/** Round numbers are kept modulo 2^20 in the control words: a thread would have to be 2^20 rounds late to be confused. */
const TAG_MASK = 0xfffff;
/** arrive word: tag << 10 | count; this count marks an ended round. */
const COUNT_BITS = 10;
const ENDED = (1 << COUNT_BITS) - 1;
/** done word: tag << 2 | state. COMBINING: the last arrival is writing the totals. */
const COMBINING = 0;
const PENDING = 1;
const READY = 2;
const ABORTED = 3;
/**
 * How long a thread spins on its partners' sums before it sleeps (µs), where every compute thread
 * has a core of its own. cnn-bn's step makes 8 exchanges; a thread asleep at one wakes through a
 * futex 0.1 ms or more after the last arrival's notify, and its partner then waits for it at the
 * next. Spinning 30 µs, a thread slept 1.4–2.9 times a step; spinning 400 µs, 0.07–0.2 times, and
 * the step took 3–13% less (docs/shared-step.md, "Spinning at the BatchNorm board"). With more
 * threads than cores a spinning thread would hold the core a partner needs to arrive: there the
 * spin stays BOARD_SPIN_MICROS_OVERSUBSCRIBED.
 */
export const BOARD_SPIN_MICROS = 400;
/** The spin with more compute threads than cores: long enough for a last arrival's combine (a few µs). */
export const BOARD_SPIN_MICROS_OVERSUBSCRIBED = 30;

/** How long the board's threads spin before they sleep, for `threads` compute threads on `cores` cores. */
export function boardSpinMicros(threads: number, cores: number): number {
  return threads <= cores ? BOARD_SPIN_MICROS : BOARD_SPIN_MICROS_OVERSUBSCRIBED;
}

export const MAX_BOARD_THREADS = ENDED - 1;

export interface BnBoardInit {
  buffer: SharedArrayBuffer;
  /** Channels of each BatchNorm layer, in model order. */
  channels: number[];
  threads: number;
  /**
   * Vectors a lane holds: 1, or with a reduction grain (common/reduce-grain.ts) the most groups a
   * slice has, each group's sums exchanged as its own vector and combined in group order.
   */
  groupsPerLane: number;
}

/** What a compute thread is sent to take part: the board and its own lane. */
export interface BnBoardAttachMessage {
  type: 'bn_board_attach';
  init: BnBoardInit;
  index: number;
  /** How long to spin on the partners before sleeping (µs): see boardSpinMicros. */
  spinMicros: number;
}

interface KeyLayout {
  /** Values of one vector (and of the totals); a lane holds up to groupsPerLane of them. */
  length: number;
  /** Byte offset of thread 0's lane; lanes are laneBytes apart. */
  lanes: number;
  laneBytes: number;
  totals: number;
}

const CONTROL_INTS = (keys: number) => 1 + 2 * keys;

const doneWord = (tag: number, state: number) => (tag << 2) | state;

/** Moves a key's done word from `from` to `to` in round `tag` (waking its sleepers unless it only claims); false if it was not in `from`. */
function advance(control: Int32Array, d: number, tag: number, from: number, to: number): boolean {
  const moved = Atomics.compareExchange(control, d, doneWord(tag, from), doneWord(tag, to)) === doneWord(tag, from);
  if (moved && to !== COMBINING) Atomics.notify(control, d);
  return moved;
}
/** Lane header: the round, the slice's first sample, the number of values written, padding. */
const LANE_HEADER = 16;
const align8 = (n: number) => Math.ceil(n / 8) * 8;

function layout(channels: readonly number[], threads: number, groupsPerLane: number): { keys: KeyLayout[]; bytes: number } {
  const lengths = [...channels.map((c) => momentsLength(c)), ...channels.map((c) => 2 * c)];
  let at = align8(4 * CONTROL_INTS(lengths.length));
  const keys = lengths.map((length) => {
    const laneBytes = LANE_HEADER + 8 * length * groupsPerLane;
    const key = { length, lanes: at, laneBytes, totals: at + threads * laneBytes };
    at = key.totals + 2 * 8 * length;
    return key;
  });
  return { keys, bytes: at };
}

/** The board for `threads` compute threads and a model with BatchNorm layers of these channel counts. */
export function createBnBoard(channels: readonly number[], threads: number, groupsPerLane = 1): BnBoardInit {
  if (threads < 1 || threads > MAX_BOARD_THREADS) throw new ConfigError(`A BatchNorm board holds 1 to ${MAX_BOARD_THREADS} threads, not ${threads}.`);
  if (!Number.isInteger(groupsPerLane) || groupsPerLane < 1) throw new ConfigError(`A BatchNorm board lane holds at least one vector, not ${groupsPerLane}.`);
  return { buffer: new SharedArrayBuffer(layout(channels, threads, groupsPerLane).bytes), channels: [...channels], threads, groupsPerLane };
}

class BoardView {
  readonly control: Int32Array;
  readonly keys: KeyLayout[];
  readonly layers: number;

  constructor(readonly init: BnBoardInit) {
    const { keys } = layout(init.channels, init.threads, init.groupsPerLane);
    this.keys = keys;
    this.layers = init.channels.length;
    this.control = new Int32Array(init.buffer, 0, CONTROL_INTS(keys.length));
  }

  arriveIndex(key: number): number {
    return 1 + 2 * key;
  }

  doneIndex(key: number): number {
    return 2 + 2 * key;
  }

  laneHeader(key: number, thread: number): Int32Array {
    const k = this.keys[key];
    return new Int32Array(this.init.buffer, k.lanes + thread * k.laneBytes, 3);
  }

  /** The lane's first `count` values (all it can hold if not given). */
  laneValues(key: number, thread: number, count = this.keys[key].length * this.init.groupsPerLane): Float64Array {
    const k = this.keys[key];
    return new Float64Array(this.init.buffer, k.lanes + thread * k.laneBytes + LANE_HEADER, count);
  }

  /** The totals buffer of rounds of this parity. */
  totals(key: number, round: number): Float64Array {
    const k = this.keys[key];
    return new Float64Array(this.init.buffer, k.totals + (round & 1) * 8 * k.length, k.length);
  }
}

/** The owning thread's side: opens and ends rounds. */
export class BnBoardHost {
  private readonly view: BoardView;

  /** `cores`: the cores the compute threads share (the spin they are told depends on it). */
  constructor(readonly init: BnBoardInit, private readonly cores = availableParallelism()) {
    this.view = new BoardView(init);
  }

  attachMessage(index: number): BnBoardAttachMessage {
    return { type: 'bn_board_attach', init: this.init, index, spinMicros: boardSpinMicros(this.init.threads, this.cores) };
  }

  /** Starts round `round` of `slices` slices (one per thread). Call before its tasks are sent. */
  open(round: number, slices: number): void {
    const { control, keys } = this.view;
    const tag = round & TAG_MASK;
    Atomics.store(control, 0, slices);
    for (let k = 0; k < keys.length; k++) {
      Atomics.store(control, this.view.doneIndex(k), doneWord(tag, PENDING));
      Atomics.store(control, this.view.arriveIndex(k), tag << COUNT_BITS);
    }
  }

  /** Ends round `round`: later arrivals, and threads still waiting on it, get BN_SYNC_ABORTED. */
  end(round: number): void {
    const { control, keys } = this.view;
    const tag = round & TAG_MASK;
    for (let k = 0; k < keys.length; k++) {
      const a = this.view.arriveIndex(k);
      for (let w = Atomics.load(control, a); w >>> COUNT_BITS === tag && (w & ENDED) !== ENDED; w = Atomics.load(control, a)) {
        if (Atomics.compareExchange(control, a, w, (tag << COUNT_BITS) | ENDED) === w) break;
      }
      const d = this.view.doneIndex(k);
      for (const state of [PENDING, COMBINING]) advance(control, d, tag, state, ABORTED);
    }
  }
}

/** A compute thread's side: `exchange` has the signature of the session's blocking exchange. */
export class BnBoardClient {
  private readonly view: BoardView;
  private readonly index: number;

  private readonly spinMicros: number;

  constructor(msg: BnBoardAttachMessage) {
    if (!(msg.spinMicros >= 0 && msg.spinMicros <= 1e6)) throw new RangeError(`A BatchNorm board's spin must be 0 to 1,000,000 µs, got ${msg.spinMicros}.`);
    this.view = new BoardView(msg.init);
    this.index = msg.index;
    this.spinMicros = msg.spinMicros;
  }

  exchange(request: BnSumsMessage, timeoutMs: number): Float64Array {
    const { view } = this;
    const key = request.phase === 'forward' ? request.layer : view.layers + request.layer;
    const sums = bytesToFloat64(request.sums);
    const length = view.keys[key]?.length ?? 0;
    const fits = request.layer >= 0 && request.layer < view.layers && sums.length > 0 && sums.length % length === 0 && sums.length / length <= view.init.groupsPerLane;
    if (!fits) {
      throw new BnSyncUnsupportedError(`BatchNorm layer ${request.layer} (${request.phase}) with ${sums.length} values does not fit this board (${view.layers} layers, expected 1 to ${view.init.groupsPerLane} vectors of ${length || 'none'} values).`);
    }
    const lane = view.laneHeader(key, this.index);
    view.laneValues(key, this.index, sums.length).set(sums);
    lane[1] = request.firstSample;
    lane[2] = sums.length;
    Atomics.store(lane, 0, request.round);
    const arrived = this.arrive(key, request.round);
    if (arrived === Atomics.load(view.control, 0)) this.combine(key, request.round, arrived);
    this.await(key, request, timeoutMs);
    return view.totals(key, request.round).slice();
  }

  /** Counts this thread in; returns how many slices have arrived, itself included. */
  private arrive(key: number, round: number): number {
    const { control } = this.view;
    const tag = round & TAG_MASK;
    const a = this.view.arriveIndex(key);
    for (;;) {
      const w = Atomics.load(control, a);
      if (w >>> COUNT_BITS !== tag || (w & ENDED) === ENDED) throw this.aborted(round);
      if (Atomics.compareExchange(control, a, w, w + 1) === w) return (w & ENDED) + 1;
    }
  }

  /** The last arrival: combines the round's lanes in first-sample order and wakes the others. */
  private combine(key: number, round: number, slices: number): void {
    const { view } = this;
    const tag = round & TAG_MASK;
    const d = view.doneIndex(key);
    // Claimed first: if the round ended meanwhile, nothing is written.
    if (!advance(view.control, d, tag, PENDING, COMBINING)) throw this.aborted(round);
    const parts: { firstSample: number; sums: Float64Array }[] = [];
    for (let t = 0; t < view.init.threads; t++) {
      const h = view.laneHeader(key, t);
      if (Atomics.load(h, 0) === round) parts.push({ firstSample: h[1], sums: view.laneValues(key, t, h[2]) });
    }
    let state = ABORTED;
    if (parts.length === slices) {
      const channels = view.init.channels[key % view.layers];
      view.totals(key, round).set(combineSlices(key < view.layers ? 'forward' : 'backward', parts, channels));
      state = READY;
    }
    advance(view.control, d, tag, COMBINING, state);
  }

  /** Waits until the key's totals are ready; throws if the round ends first or time runs out. */
  private await(key: number, request: BnSumsMessage, timeoutMs: number): void {
    const { control } = this.view;
    const d = this.view.doneIndex(key);
    const tag = request.round & TAG_MASK;
    const pending = doneWord(tag, PENDING);
    // While the last arrival combines (a few microseconds), spin rather than sleep.
    const waiting = (w: number) => w === pending || w === doneWord(tag, COMBINING);
    // The spin never outlasts the wait.
    const spinUntil = performance.now() + Math.min(this.spinMicros / 1000, timeoutMs);
    const deadline = Date.now() + timeoutMs;
    while (waiting(Atomics.load(control, d)) && performance.now() < spinUntil);
    for (let w = Atomics.load(control, d); waiting(w); w = Atomics.load(control, d)) {
      const left = deadline - Date.now();
      if (left <= 0) throw new BnSyncTimeoutError(`No BatchNorm totals for layer ${request.layer} (${request.phase}) of round ${request.round} within ${timeoutMs} ms.`);
      if (w === pending) Atomics.wait(control, d, pending, left);
    }
    if (Atomics.load(control, d) !== doneWord(tag, READY)) throw this.aborted(request.round);
  }

  private aborted(round: number): BnSyncAbortedError {
    return new BnSyncAbortedError(`The BatchNorm exchange of round ${round} was abandoned: the step is being recomputed.`);
  }
}
