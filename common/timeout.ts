/**
 * Time limits on promises. Every wait that depends on another party (a worker's answer, a thread's
 * start-up, a welcome) goes through `withTimeout`, so none waits without an end.
 */
import { DtrainError } from './errors.ts';

/** The largest delay setTimeout can hold (2^31 - 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Something took longer than its limit. `code` says what: a step, a thread start-up, a welcome. */
export class TimeoutError extends DtrainError {
  constructor(message: string, code = 'DTRAIN_ERR_STEP_TIMEOUT') {
    super(code, message, { expected: false });
  }
}

/** Rejects with TimeoutError after `ms`; the timer never outlives the promise. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string, code?: string): Promise<T> {
  if (!(ms > 0 && ms <= MAX_TIMER_MS)) throw new RangeError(`A timeout must be between 1 and ${MAX_TIMER_MS} ms, got ${ms}.`);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`${what} took longer than ${ms} ms`, code)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * `promise`, unless `signal` aborts first: then a rejection with the signal's reason. The listener
 * never outlives the race; a later rejection of `promise` is the caller's to clean up after.
 */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(signal.reason);
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener('abort', onAbort!));
}
