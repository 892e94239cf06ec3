/**
 * Runs a set of independent tasks (the slices of one step, or evaluation chunks) on whoever is live,
 * and returns when every task has a result. A worker that fails, disconnects or overruns the step
 * timeout is evicted and its task goes back in the queue, so nothing is lost. With no workers, it
 * waits, and says so once.
 */
import type { Logger } from '../common/logger.ts';
import { DtrainError } from '../common/errors.ts';
import { TimeoutError, withTimeout } from '../common/timeout.ts';
import { CLOSE_CODES, type ResultMessage, type TaskKind, type TaskMessage } from '../common/protocol.ts';
import type { Membership, WorkerHandle } from './membership.ts';

export interface TaskSpec {
  kind: TaskKind;
  images: Uint8Array;
  labels: Uint8Array;
}

export interface WeightsSource {
  version: number;
  bytes: Uint8Array;
}

export interface ScheduleStats {
  /** Largest worker-reported compute time among the results used. */
  maxComputeMs: number;
  bytesSent: number;
  retries: number;
  /** One entry per worker whose result was used, for the dashboard and metrics. */
  perWorker: WorkerStepStats[];
}

export interface WorkerStepStats {
  workerId: string;
  computeMs: number;
  bytesOut: number;
  bytesIn: number;
}

/** A task failed on too many workers in a row: a poison task, not a bad worker. */
export class TaskFailedError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_TASK_FAILED', message);
  }
}

/** The pool cannot grow (worker threads) and every worker is gone. */
export class NoWorkersError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_NO_WORKERS', message);
  }
}

export { TimeoutError, withTimeout } from '../common/timeout.ts';

export interface SchedulerOptions {
  stepTimeoutMs: number;
  log: Logger;
  /** Aborting stops dispatching; runTasks then rejects with the signal's reason. */
  signal?: AbortSignal;
  /** A task that fails on this many workers fails the step. Default 5. */
  maxAttempts?: number;
}

let nextTaskId = 1;

/** Approximate bytes of a task frame: the tensors dominate. */
function taskBytes(t: TaskMessage): number {
  return (t.weights?.byteLength ?? 0) + t.images.byteLength + t.labels.byteLength + 64;
}

export async function runTasks(
  tasks: TaskSpec[],
  weights: WeightsSource,
  membership: Membership,
  opts: SchedulerOptions,
): Promise<{ results: ResultMessage[]; stats: ScheduleStats }> {
  const results: (ResultMessage | undefined)[] = new Array(tasks.length);
  const pending: number[] = tasks.map((_, i) => i);
  const busy = new Set<string>();
  const stats: ScheduleStats = { maxComputeMs: 0, bytesSent: 0, retries: 0, perWorker: [] };
  let remaining = tasks.length;
  let waitingLogged = false;
  const attempts: number[] = tasks.map(() => 0);
  let fatal: Error | undefined;
  let wake: () => void = () => {};

  const dispatch = (worker: WorkerHandle, index: number) => {
    busy.add(worker.id);
    const spec = tasks[index];
    const message: TaskMessage = { type: 'task', taskId: nextTaskId++, kind: spec.kind, weightsVersion: weights.version, images: spec.images, labels: spec.labels };
    if (worker.weightsVersion !== weights.version) message.weights = weights.bytes;
    const sent = taskBytes(message);
    stats.bytesSent += sent;
    withTimeout(worker.run(message), opts.stepTimeoutMs, `worker ${worker.id}'s ${spec.kind} task`)
      .then((result) => {
        worker.weightsVersion = weights.version;
        results[index] = result;
        stats.maxComputeMs = Math.max(stats.maxComputeMs, result.computeMs);
        stats.perWorker.push({ workerId: worker.id, computeMs: result.computeMs, bytesOut: sent, bytesIn: (result.gradients?.byteLength ?? 0) + (result.stats?.byteLength ?? 0) });
        remaining--;
      })
      .catch((err: Error) => {
        pending.push(index);
        stats.retries++;
        if (++attempts[index] >= (opts.maxAttempts ?? 5)) fatal = new TaskFailedError(`A ${spec.kind} task of ${spec.labels.length} samples failed on ${attempts[index]} workers in a row; the last said: ${err.message}`);
        const timedOut = err instanceof TimeoutError;
        membership.leave(worker.id, timedOut ? 'evicted' : 'left', err.message, CLOSE_CODES.evicted);
      })
      .finally(() => {
        busy.delete(worker.id);
        wake();
      });
  };

  const poke = () => wake();
  const unsubscribe = membership.onChange(poke);
  opts.signal?.addEventListener('abort', poke);
  try {
  while (remaining > 0) {
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');
    if (fatal) throw fatal;
    if (membership.size === 0 && !membership.canGrow) throw new NoWorkersError('Every worker thread has failed; nothing is left to train with. See the worker_left lines above for why.');
    const idle = membership.live().filter((w) => !busy.has(w.id));
    if (membership.size === 0 && pending.length > 0 && !waitingLogged) {
      opts.log.warn({ event: 'waiting_for_workers', pendingTasks: pending.length }, 'no workers connected: waiting for one to join');
      waitingLogged = true;
    }
    if (membership.size > 0) waitingLogged = false;
    for (const w of idle) {
      const index = pending.shift();
      if (index === undefined) break;
      dispatch(w, index);
    }
    await new Promise<void>((resolve) => (wake = resolve));
  }
  } finally {
    unsubscribe();
    opts.signal?.removeEventListener('abort', poke);
  }
  return { results: results as ResultMessage[], stats };
}
