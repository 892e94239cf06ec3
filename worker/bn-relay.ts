/**
 * The WebSocket worker's relay for synchronized BatchNorm: its compute thread's sums go to the
 * coordinator as bn_sums, and each bn_totals answer comes back to the waiting request. When the
 * connection ends every waiting request is rejected, which aborts the compute thread's wait.
 */
import type { BnSumsMessage, BnTotalsMessage } from '../common/protocol.ts';
import { bytesToFloat64 } from '../common/codec.ts';
import { BnSyncAbortedError } from '../common/bn-sync-errors.ts';

interface Waiting {
  resolve(totals: Float64Array): void;
  reject(err: Error): void;
}

function key(m: { round: number; layer: number; phase: string }): string {
  return `${m.round}:${m.layer}:${m.phase}`;
}

export class BnRelay {
  private readonly waiting = new Map<string, Waiting>();

  /** `send` returns false when the message could not be sent (the socket is not open). */
  constructor(private readonly send: (m: BnSumsMessage) => boolean) {}

  request(m: BnSumsMessage): Promise<Float64Array> {
    return new Promise((resolve, reject) => {
      const k = key(m);
      this.waiting.get(k)?.reject(new BnSyncAbortedError(`a second request for ${k} replaced the first`));
      this.waiting.set(k, { resolve, reject });
      if (!this.send(m)) this.fail(k, new BnSyncAbortedError('the connection to the coordinator is closed'));
    });
  }

  /** An answer from the coordinator; one that nobody waits for (late, after an abort) is dropped. */
  deliver(m: BnTotalsMessage): void {
    const k = key(m);
    const w = this.waiting.get(k);
    if (!w) return;
    this.waiting.delete(k);
    if (m.totals) w.resolve(bytesToFloat64(m.totals).slice());
    else w.reject(new BnSyncAbortedError(m.aborted ?? 'the coordinator abandoned the round'));
  }

  abortAll(reason: string): void {
    for (const k of [...this.waiting.keys()]) this.fail(k, new BnSyncAbortedError(reason));
  }

  get pending(): number {
    return this.waiting.size;
  }

  private fail(k: string, err: Error): void {
    const w = this.waiting.get(k);
    this.waiting.delete(k);
    w?.reject(err);
  }
}
