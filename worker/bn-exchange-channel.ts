/**
 * The blocking half of synchronized BatchNorm's exchange, between a compute thread and the thread
 * that owns it (the coordinator's main thread in-process, the worker process's main thread over
 * WebSockets). The compute thread posts its sums as a message and sleeps in Atomics.wait on a
 * small SharedArrayBuffer; the owner gathers the totals (however long that takes: its event loop
 * stays free) and writes them there, then wakes it.
 *
 * One Int32 word holds (sequence << 2) | state, so an answer to an earlier, timed-out request can
 * never be taken for the current one: the owner answers with compareExchange on the exact word.
 */
import { BnSyncAbortedError, BnSyncTimeoutError } from '../common/bn-sync-errors.ts';
import type { BnSumsMessage } from '../common/protocol.ts';

const WAITING = 1;
const ANSWERED = 2;
const ABORTED = 3;
const HEADER_BYTES = 16;
/** Room for the largest exchange: 1 + 2·C float64 values, C up to 4096 channels. */
export const MAX_EXCHANGE_VALUES = 1 + 2 * 4096;

export function createExchangeBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(HEADER_BYTES + 8 * MAX_EXCHANGE_VALUES);
}

/** The sums as they leave the compute thread: a bn_sums message with the request's sequence number. */
export interface ExchangeRequest {
  type: 'bn_exchange';
  seq: number;
  request: BnSumsMessage;
}

function views(buffer: SharedArrayBuffer): { control: Int32Array; values: Float64Array } {
  return { control: new Int32Array(buffer, 0, 2), values: new Float64Array(buffer, HEADER_BYTES) };
}

/** Compute-thread side. */
export class ExchangeClient {
  private readonly control: Int32Array;
  private readonly values: Float64Array;
  private seq = 0;

  constructor(buffer: SharedArrayBuffer, private readonly post: (r: ExchangeRequest) => void) {
    ({ control: this.control, values: this.values } = views(buffer));
  }

  /** Sends `request` and blocks until its totals arrive, the round is abandoned, or `timeoutMs` pass. */
  exchange(request: BnSumsMessage, timeoutMs: number): Float64Array {
    this.seq = (this.seq + 1) & 0x1fffffff;
    const waiting = (this.seq << 2) | WAITING;
    Atomics.store(this.control, 0, waiting);
    this.post({ type: 'bn_exchange', seq: this.seq, request });
    const deadline = Date.now() + timeoutMs;
    let word = Atomics.load(this.control, 0);
    while (word === waiting) {
      const left = deadline - Date.now();
      if (left <= 0) {
        // Give up unless the answer lands at this very moment.
        if (Atomics.compareExchange(this.control, 0, waiting, this.seq << 2) === waiting) {
          throw new BnSyncTimeoutError(`No BatchNorm totals for layer ${request.layer} (${request.phase}) of round ${request.round} within ${timeoutMs} ms.`);
        }
      } else {
        Atomics.wait(this.control, 0, waiting, left);
      }
      word = Atomics.load(this.control, 0);
    }
    if ((word & 3) === ABORTED) throw new BnSyncAbortedError(`The BatchNorm exchange of round ${request.round} was abandoned: the step is being recomputed.`);
    return this.values.slice(0, this.control[1]);
  }
}

/** Owner side: answers the compute thread's request number `seq`; false if it no longer waits for it. */
export class ExchangeHost {
  private readonly control: Int32Array;
  private readonly values: Float64Array;

  constructor(buffer: SharedArrayBuffer) {
    ({ control: this.control, values: this.values } = views(buffer));
  }

  answer(seq: number, totals: Float64Array): boolean {
    if (totals.length > this.values.length) return this.abort(seq);
    if (Atomics.load(this.control, 0) !== ((seq << 2) | WAITING)) return false;
    this.values.set(totals);
    this.control[1] = totals.length;
    return this.settle(seq, ANSWERED);
  }

  abort(seq: number): boolean {
    return this.settle(seq, ABORTED);
  }

  private settle(seq: number, state: number): boolean {
    const ok = Atomics.compareExchange(this.control, 0, (seq << 2) | WAITING, (seq << 2) | state) === ((seq << 2) | WAITING);
    if (ok) Atomics.notify(this.control, 0);
    return ok;
  }
}
