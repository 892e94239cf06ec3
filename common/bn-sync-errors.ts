/**
 * Failures of synchronized BatchNorm's exchange. An abandoned round is nobody's fault (another
 * slice's worker went away and the coordinator recomputes the step), so a task that fails with
 * BN_SYNC_ABORTED never counts against its worker.
 */
import { DtrainError } from './errors.ts';

export const BN_SYNC_ABORTED = 'DTRAIN_ERR_BN_SYNC_ABORTED';
export const BN_SYNC_TIMEOUT = 'DTRAIN_ERR_BN_SYNC_TIMEOUT';
export const BN_SYNC_UNSUPPORTED = 'DTRAIN_ERR_BN_SYNC_UNSUPPORTED';

export class BnSyncAbortedError extends DtrainError {
  constructor(message: string) {
    super(BN_SYNC_ABORTED, message, { expected: false });
  }
}

export class BnSyncTimeoutError extends DtrainError {
  constructor(message: string) {
    super(BN_SYNC_TIMEOUT, message, { expected: false });
  }
}

/** A BatchNorm exchange this worker cannot take part in (no channel, or sums that do not fit). */
export class BnSyncUnsupportedError extends DtrainError {
  constructor(message: string) {
    super(BN_SYNC_UNSUPPORTED, message, { expected: false });
  }
}

export function isBnSyncAborted(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === BN_SYNC_ABORTED;
}
