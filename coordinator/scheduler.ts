/**
 * Runs a set of independent tasks (the slices of one step, or evaluation chunks) on whoever is live,
 * and returns when every task has a result. A worker that fails, disconnects or overruns the step
 * timeout is evicted and its task goes back in the queue, so nothing is lost. With no workers, it
 * waits, and says so once.
 */
import type { Logger } from '../common/logger.ts';
import { DtrainError } from '../common/errors.ts';
import { TimeoutError, withTimeout } from '../common/timeout.ts';
import { CLOSE_CODES, type ResultMessage, type SamplePosition, type SplitName, type TaskBatchNorm, type TaskKind, type TaskMessage } from '../common/protocol.ts';
import { isBnSyncAborted } from '../common/bn-sync-errors.ts';
import { weightsByteLength, wireByteLength, type WireDtype } from '../common/wire-dtype.ts';
import type { Membership, WorkerHandle } from './membership.ts';
import type { Rejection } from './result-check.ts';

export interface TaskSpec {
  kind: TaskKind;
  images: Uint8Array;
  labels: Uint8Array;
  /** Where the samples come from: workers that read the dataset themselves get these indices instead of pixels. */
  source?: { split: SplitName; indices: Uint32Array };
  /** Train tasks: the slice's place in the run (dropout masks) and how BatchNorm normalizes (step-sync.ts). */
  position?: SamplePosition;
  batchNorm?: TaskBatchNorm;
}

export interface WeightsSource {
  version: number;
  bytes: Uint8Array;
  /** Trainable weights (sent in the wire dtype); the rest are BatchNorm statistics. Default: all. */
  trainableCount?: number;
}

export interface ScheduleStats {
  /** Largest worker-reported compute time among the results used. */
  maxComputeMs: number;
  bytesSent: number;
  retries: number;
  /** One entry per worker whose result was used, for the dashboard and metrics. */
  perWorker: WorkerStepStats[];
  /** The last result used: the one the step waited for. */
  last?: LastResultTiming;
}

/** Where the step's last result spent its round trip (ms), as the coordinator and its worker timed it. */
export interface LastResultTiming {
  /** From handing the task to the worker's transport to the result in hand. */
  roundTripMs: number;
  computeMs: number;
  /** The worker's own time for it (ResultMessage.workerMs): absent where the worker does not report one (in-process). */
  workerMs?: number;
}

export interface WorkerStepStats {
  workerId: string;
  computeMs: number;
  bytesOut: number;
  bytesIn: number;
}

/**
 * The last result's round trip in two parts (ms), where its worker reported its own time: the frames
 * (encoding, sending, delivery and decoding, both ways) and the worker outside its compute (decoding
 * its task, the hand-off to its compute thread and back). Neither is below 0: the parts come from two
 * processes' clocks, and a peer's timings are not trusted to add up.
 */
export function roundTripParts(last: LastResultTiming | undefined): { transferMs: number; workerOverheadMs: number } | undefined {
  if (last?.workerMs === undefined) return undefined;
  const workerMs = Math.min(last.workerMs, last.roundTripMs);
  return { transferMs: last.roundTripMs - workerMs, workerOverheadMs: Math.max(0, workerMs - last.computeMs) };
}

/** A task failed on too many workers in a row: a poison task, not a bad worker. */
export class TaskFailedError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_TASK_FAILED', message);
  }
}

/** A compute thread's recomputation of a task was rejected again: the fault is reproducible, not transient. */
export class ResultRejectedError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_RESULT_REJECTED', message, { expected: false });
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
  /** Called with each result as it arrives (task index, result), e.g. to aggregate it at once. */
  onResult?(index: number, result: ResultMessage): void;
  /** Checks a result as it arrives, before onResult: a rejection evicts its worker and recomputes the task elsewhere. */
  check?(index: number, result: ResultMessage): Rejection | undefined;
  /** Checks every result together once each task has one (when `check` cannot judge alone); rejected ones are recomputed. */
  review?(results: ResultMessage[]): { index: number; rejection: Rejection }[];
  /**
   * A second opinion on outliers: with it, a result rejected only as an outlier (`Rejection.outlier`)
   * is held, not counted against its worker, and the task is recomputed on a different worker when
   * one is live. Two results that agree within `tolerance` (relative; 0 asks for identical values)
   * confirm each other: the later one is used. A later result within the bound that agrees with no
   * held outlier proves them wrong: their workers are rejected as for any rejection.
   */
  agree?(index: number, a: ResultMessage, b: ResultMessage, tolerance: number): boolean;
  /**
   * An outlier confirmed by a second opinion is used: e.g. to count its norm in the screen's history.
   * Called again after each later review that still flags it (a review rebuilds what it counts).
   */
  onConfirmed?(index: number, result: ResultMessage): void;
}

/** An outlier held for a second opinion. */
interface Opinion {
  worker: WorkerHandle;
  result: ResultMessage;
  rejection: Rejection;
}

let nextTaskId = 1;
/** However many addresses, a task that failed this many times maxAttempts fails the step. */
const MAX_TOTAL_FACTOR = 4;
/** The code of the error a worker's pending tasks fail with when it is evicted for misbehaving (connection.ts). */
export const WORKER_EVICTED = 'DTRAIN_ERR_WORKER_EVICTED';

/** Approximate bytes of a task frame: the tensors dominate. */
function taskBytes(t: TaskMessage, dtype: WireDtype, trainableCount: number): number {
  const weights = t.weights ? weightsByteLength(dtype, t.weights.byteLength / 4, trainableCount) : 0;
  return weights + t.images.byteLength + t.labels.byteLength + (t.indices?.byteLength ?? 0) + 64;
}

/** The task for one worker: sample indices for a worker with local data, pixels for the others. */
function taskFor(worker: WorkerHandle, spec: TaskSpec, version: number): TaskMessage {
  const message: TaskMessage = { type: 'task', taskId: nextTaskId++, kind: spec.kind, weightsVersion: version, images: spec.images, labels: spec.labels };
  if (worker.localData && spec.source) {
    message.images = NO_PIXELS;
    message.indices = new Uint8Array(Uint32Array.from(spec.source.indices).buffer);
    message.split = spec.source.split;
  }
  if (spec.position) message.position = spec.position;
  if (spec.batchNorm) message.batchNorm = spec.batchNorm;
  return message;
}
const NO_PIXELS = new Uint8Array(0);

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
  // Failures are counted per origin (a worker's address): one bad worker reconnecting again and
  // again counts once toward maxAttempts, and at most MAX_TOTAL_FACTOR × maxAttempts in all.
  const maxAttempts = opts.maxAttempts ?? 5;
  const failedOn: Set<string>[] = tasks.map(() => new Set());
  const attempts: number[] = tasks.map(() => 0);
  const owner: (WorkerHandle | undefined)[] = new Array(tasks.length);
  /** Per task, the kept workers (keepOnRejection) whose result for it was rejected once already. */
  const rejectedBy: Set<string>[] = tasks.map(() => new Set());
  /** Per task, the outliers held for a second opinion (opts.agree). */
  const held: Opinion[][] = tasks.map(() => []);
  /** Per task, the outlier result a second opinion confirmed (a later review flags it again). */
  const confirmed: (ResultMessage | undefined)[] = new Array(tasks.length);
  let fatal: Error | undefined;
  let wake: () => void = () => {};

  // A worker evicted for misbehaving (a bad frame, a rejected result) says nothing about the task:
  // its task goes back in the queue without counting toward the task's attempts.
  const countFailure = (worker: WorkerHandle, index: number, message: string, againstTask = true) => {
    pending.push(index);
    stats.retries++;
    if (!againstTask) return;
    attempts[index]++;
    failedOn[index].add(worker.origin ?? worker.id);
    if (failedOn[index].size >= maxAttempts || attempts[index] >= maxAttempts * MAX_TOTAL_FACTOR) {
      fatal = new TaskFailedError(`A ${tasks[index].kind} task of ${tasks[index].labels.length} samples failed on ${failedOn[index].size} worker addresses (${attempts[index]} attempts); the last said: ${message}`);
    }
  };

  /** A result that does not count: its worker is evicted (logged as result_rejected) and the task recomputed. */
  const rejectResult = (worker: WorkerHandle, index: number, rejection: Rejection, recompute = true) => {
    opts.log.warn({ event: 'result_rejected', workerId: worker.id, origin: worker.origin, task: index, ...rejection.fields, reason: rejection.reason }, `result of ${worker.id} rejected: ${rejection.reason}`);
    if (recompute) countFailure(worker, index, `result rejected: ${rejection.reason}`, false);
    if (worker.keepOnRejection) {
      if (rejectedBy[index].has(worker.id)) {
        fatal = new ResultRejectedError(`${worker.id} computed a ${tasks[index].kind} task of ${tasks[index].labels.length} samples twice, and both results were rejected (the last: ${rejection.reason}); the fault is reproducible, so the run stops rather than count it.`);
      }
      rejectedBy[index].add(worker.id);
      return;
    }
    membership.leave(worker.id, 'evicted', `result rejected: ${rejection.reason}`, CLOSE_CODES.evicted);
  };

  /**
   * The second opinion (opts.agree) on a result for a task with outliers held, or that is itself an
   * outlier. 'use': the result counts (confirmed, or within the bound); 'hold': it waits for another
   * opinion (the task is pending again). Held outliers it proves wrong are rejected here.
   */
  const secondOpinion = (worker: WorkerHandle, index: number, result: ResultMessage, rejection: Rejection | undefined): 'use' | 'hold' => {
    const agrees = (o: Opinion) => opts.agree!(index, o.result, result, tolerance(o.worker, worker, membership));
    const opinions = held[index];
    if (rejection) {
      // A held outlier counts while its worker is live: one that left may come back under a new id to confirm itself.
      const live = new Set(membership.live().map((w) => w.id));
      const confirmedBy = opinions.find((o) => live.has(o.worker.id) && (o.worker.id !== worker.id || selfConfirms(worker, membership)) && agrees(o));
      if (!confirmedBy) return holdOutlier(worker, index, result, rejection);
      opts.log.info({ event: 'outlier_confirmed', workerId: worker.id, firstWorkerId: confirmedBy.worker.id, task: index, ...rejection.fields }, `${worker.id}'s recomputation of task ${index} confirms ${confirmedBy.worker.id}'s outlier (${rejection.reason}): the slice is genuine and counts`);
      confirmed[index] = result;
      opts.onConfirmed?.(index, result);
    }
    // The result counts: every held outlier it does not agree with was wrong.
    held[index] = [];
    for (const o of opinions) if (!agrees(o)) rejectResult(o.worker, index, o.rejection, false);
    return 'use';
  };

  /** Holds an outlier for a second opinion, unless the task has had too many already. */
  const holdOutlier = (worker: WorkerHandle, index: number, result: ResultMessage, rejection: Rejection): 'hold' => {
    const opinions = held[index];
    if (worker.keepOnRejection && opinions.some((o) => o.worker.id === worker.id)) {
      fatal = new ResultRejectedError(`${worker.id} computed a ${tasks[index].kind} task of ${tasks[index].labels.length} samples twice, and both results were outliers that disagree (the last: ${rejection.reason}); the fault is not transient, so the run stops rather than count it.`);
    } else if (opinions.length + 1 >= maxAttempts) {
      fatal = new TaskFailedError(`A ${tasks[index].kind} task of ${tasks[index].labels.length} samples gave ${opinions.length + 1} outlier results that no two workers agree on (the last: ${rejection.reason}); with no honest majority among them, the slice cannot be judged.`);
    }
    opinions.push({ worker, result, rejection });
    opts.log.info({ event: 'result_outlier', workerId: worker.id, origin: worker.origin, task: index, opinions: opinions.length, ...rejection.fields, reason: rejection.reason }, `result of ${worker.id} held for a second opinion: ${rejection.reason}`);
    countFailure(worker, index, `outlier: ${rejection.reason}`, false);
    return 'hold';
  };

  /** Whether a result for task `index` goes to the second opinion: it is an outlier, or it may settle held ones. */
  const wantsOpinion = (index: number, rejection: Rejection | undefined): boolean =>
    opts.agree !== undefined && (rejection?.outlier === true || (!rejection && held[index].length > 0));

  /** Whether `worker` may compute task `index`: not one that already gave an outlier for it, while another worker is live. */
  const mayRun = (worker: WorkerHandle, index: number): boolean => {
    const opinions = held[index];
    if (opinions.length === 0 || !opinions.some((o) => o.worker.id === worker.id)) return true;
    return membership.live().every((w) => opinions.some((o) => o.worker.id === w.id));
  };

  /** Once every task has a result: the review may send some back. True if it did. */
  const reviewRejected = (): boolean => {
    if (!opts.review) return false;
    const rejected = new Map(opts.review(results as ResultMessage[]).map((r) => [r.index, r.rejection]));
    let sentBack = false;
    results.forEach((result, index) => {
      const rejection = rejected.get(index);
      const worker = owner[index]!;
      if (rejection?.outlier && confirmed[index] === result) return opts.onConfirmed?.(index, result!);
      if (wantsOpinion(index, rejection)) {
        if (secondOpinion(worker, index, result!, rejection) === 'use') return;
      } else if (rejection) {
        rejectResult(worker, index, rejection);
      } else {
        return;
      }
      results[index] = undefined;
      remaining++;
      sentBack = true;
    });
    return sentBack;
  };

  const dispatch = (worker: WorkerHandle, index: number) => {
    busy.add(worker.id);
    const spec = tasks[index];
    const message = taskFor(worker, spec, weights.version);
    if (worker.weightsVersion !== weights.version) message.weights = weights.bytes;
    const dtype = worker.wireDtype ?? 'float32';
    const sent = worker.inSharedMemory?.(message) ? 0 : taskBytes(message, dtype, weights.trainableCount ?? weights.bytes.byteLength / 4);
    stats.bytesSent += sent;
    const dispatched = performance.now();
    withTimeout(worker.run(message), opts.stepTimeoutMs, `worker ${worker.id}'s ${spec.kind} task`)
      .then((result) => {
        const roundTripMs = performance.now() - dispatched;
        worker.weightsVersion = weights.version;
        const rejection = opts.check?.(index, result);
        // Without a check (the first step), the review judges the result with the others, second opinion included.
        if (opts.check && wantsOpinion(index, rejection)) {
          if (secondOpinion(worker, index, result, rejection) === 'hold') return;
        } else if (rejection) {
          return rejectResult(worker, index, rejection);
        }
        results[index] = result;
        owner[index] = worker;
        opts.onResult?.(index, result);
        stats.maxComputeMs = Math.max(stats.maxComputeMs, result.computeMs);
        stats.last = { roundTripMs, computeMs: result.computeMs, workerMs: result.workerMs };
        stats.perWorker.push({ workerId: worker.id, computeMs: result.computeMs, bytesOut: sent, bytesIn: (result.gradients ? wireByteLength(dtype, result.gradients.byteLength / 4) : 0) + (result.stats?.byteLength ?? 0) });
        remaining--;
      })
      .catch((err: Error) => {
        // An abandoned step (its BatchNorm round aborted, or the run stopping): whatever its tasks
        // still report counts against nobody; the step is recomputed or the run ends.
        if (opts.signal?.aborted) return;
        // A round that ended without the step being abandoned (a slice's sums refused): the step
        // fails as a whole and is recomputed, since its other slices cannot finish alone.
        if (isBnSyncAborted(err)) {
          fatal ??= err;
          return;
        }
        countFailure(worker, index, err.message, (err as { code?: string }).code !== WORKER_EVICTED);
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
  while (remaining > 0 || reviewRejected()) {
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
      const k = pending.findIndex((i) => mayRun(w, i));
      if (k < 0) continue;
      dispatch(w, pending.splice(k, 1)[0]);
    }
    await new Promise<void>((resolve) => (wake = resolve));
  }
  } finally {
    unsubscribe();
    opts.signal?.removeEventListener('abort', poke);
  }
  return { results: results as ResultMessage[], stats };
}

/** Relative disagreement two honest results may show beyond their wire formats' rounding: float32 kernels of different backends. */
export const AGREEMENT_TOLERANCE = 1e-3;
/** The largest relative rounding error of a gradient in each wire dtype (common/wire-dtype.ts). */
const WIRE_ERROR: Record<WireDtype, number> = { float32: 0, float16: 2 ** -11, bfloat16: 2 ** -8 };

/** How far apart two results for the same task may be and still agree: nothing for a self-confirmation. */
function tolerance(a: WorkerHandle, b: WorkerHandle, membership: Membership): number {
  if (a.id === b.id && selfConfirms(b, membership)) return 0;
  return AGREEMENT_TOLERANCE + WIRE_ERROR[a.wireDtype ?? 'float32'] + WIRE_ERROR[b.wireDtype ?? 'float32'];
}

/**
 * Whether a worker's identical recomputation confirms its own outlier: only when it is the only live
 * worker. A compute thread is our own code and deterministic (a transient fault would not
 * reproduce); a lone WebSocket worker controls the whole run anyway (docs/reliability.md). Never
 * while another worker could judge.
 */
function selfConfirms(worker: WorkerHandle, membership: Membership): boolean {
  return membership.live().every((w) => w.id === worker.id);
}
