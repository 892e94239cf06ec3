/**
 * A compute thread seen from the thread that owns it: start it with a backend, welcome it, run
 * tasks. Used by the in-process transport (one per worker) and by a WebSocket worker for what its
 * socket's thread must not compute itself (worker/inline-compute.ts: synchronized BatchNorm, long
 * steps, or always with --compute-thread), so that it keeps answering heartbeats meanwhile.
 */
import { Worker } from 'node:worker_threads';
import { sourcePath } from '../common/runtime.ts';
import { DtrainError } from '../common/errors.ts';
import type { BackendChoice, BackendSelection } from '../common/backend.ts';
import type { BnSumsMessage, ResultMessage, TaskMessage, WelcomeMessage, WorkerMessage } from '../common/protocol.ts';
import type { BackendFallbackMessage } from './backend-fallback.ts';
import type { ThreadInit } from './thread.ts';
import type { SharedAttachMessage } from './shared-step-server.ts';
import type { BnBoardAttachMessage } from '../common/bn-board.ts';
import { createExchangeBuffer, ExchangeHost, type ExchangeRequest } from './bn-exchange-channel.ts';
import { TaskArena } from './task-arena.ts';

export type ThreadMessage = WorkerMessage | { type: 'fatal'; message: string } | { type: 'backend'; selection: BackendSelection; warmedUp: number } | { type: 'shared_ready' } | { type: 'bn_board_ready' } | BackendFallbackMessage | ExchangeRequest;

/**
 * A task as the thread gets it. `sharedResult`: the thread writes the gradients into memory it
 * shares with its owner and keeps for the next such task (worker/shared-result.ts).
 */
export type ThreadTask = TaskMessage & { sharedResult?: boolean };

export class WorkerLostError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_WORKER_LOST', message, { expected: false });
  }
}

/** A task under the id of one still being computed: it would take that one's answer. */
export class DuplicateTaskError extends DtrainError {
  constructor(taskId: number) {
    super('DTRAIN_ERR_DUPLICATE_TASK', `Expected a new task id, but task ${taskId} is still being computed.`);
  }
}

export class ComputeThread {
  private readonly thread: Worker;
  private readonly pending = new Map<number, { resolve(r: ResultMessage): void; reject(e: Error): void }>();
  private waiter: { type: string; resolve(m: ThreadMessage): void; reject(e: Error): void } | undefined;
  private exited = false;
  /** Resolves when the thread has exited, however it ended: it runs nothing more. */
  readonly gone: Promise<void>;
  /** Called once if the thread dies (error or exit) other than through terminate(). */
  onLost: (reason: string) => void = () => {};
  /** Called when the thread's backend failed its first step and the thread moved to the next one. */
  onBackendFallback: (m: BackendFallbackMessage) => void = () => {};
  /**
   * Synchronized BatchNorm: the owner combines the thread's sums with the other slices' and
   * resolves with the totals (or rejects: the thread's wait is then aborted). Default: no rounds.
   */
  onBnSums: (m: BnSumsMessage) => Promise<Float64Array> = () => Promise.reject(new Error('this compute thread takes part in no BatchNorm rounds'));
  private readonly exchange: ExchangeHost;
  /** Where a task's weights and pixels go instead of a clone of their own (see TaskArena). */
  private readonly arena = new TaskArena();
  /** Tasks posted to the thread and not yet answered, abandoned ones included (abandon() does not stop the thread computing them). */
  private tasksInThread = 0;
  /** Per task id, answers still to come from tasks abandoned while in the thread. */
  private readonly staleAnswers = new Map<number, number>();
  /**
   * Set by an owner that is done with each result when its promise settles (a WebSocket worker
   * encodes it into a frame in the continuation): a train task that runs alone then gets its
   * gradients in shared memory the thread rewrites with the next such task, instead of a new array.
   * No other owner may set it: an in-process step keeps results past the next task of the thread.
   */
  resultsReadAtOnce = false;

  /** The thread's report that it loaded its backend (and ran its warm-up), awaited from the start so it is not missed. */
  private readonly loaded: Promise<Extract<ThreadMessage, { type: 'backend' }>>;

  /** `options`: the warm-up (warm-up.ts) and test hooks. */
  constructor(backend: BackendChoice, options: Omit<ThreadInit, 'backend' | 'exchangeBuffer'> = {}) {
    const exchangeBuffer = createExchangeBuffer();
    this.exchange = new ExchangeHost(exchangeBuffer);
    const init: ThreadInit = { backend, ...options, exchangeBuffer };
    this.thread = new Worker(sourcePath('./thread-entry.mjs', import.meta.url), { workerData: init });
    this.thread.on('message', (m: ThreadMessage) => this.dispatch(m));
    this.thread.on('error', (err) => this.lost(`compute thread error: ${err.message}`));
    this.thread.on('exit', (code) => this.lost(`compute thread exited with code ${code}`));
    this.gone = new Promise((resolve) => this.thread.once('exit', () => resolve()));
    this.loaded = this.next('backend');
    // Its failure is reported to whoever awaits started().
    this.loaded.catch(() => {});
  }

  private dispatch(m: ThreadMessage): void {
    if (m.type === 'result' || m.type === 'task_failed') {
      this.tasksInThread--;
      // The answer of a task abandoned while the thread computed it: dropped, even where a new task took its id.
      const stale = this.staleAnswers.get(m.taskId);
      if (stale) {
        if (stale === 1) this.staleAnswers.delete(m.taskId);
        else this.staleAnswers.set(m.taskId, stale - 1);
        return;
      }
      const p = this.pending.get(m.taskId);
      this.pending.delete(m.taskId);
      if (m.type === 'result') p?.resolve(m);
      else p?.reject(new DtrainError(m.code, `task ${m.taskId} failed: ${m.message}`, { expected: false }));
    } else if (m.type === 'bn_exchange') {
      this.onBnSums(m.request).then(
        (totals) => this.exchange.answer(m.seq, totals),
        () => this.exchange.abort(m.seq),
      );
    } else if (m.type === 'backend_fallback') {
      this.onBackendFallback(m);
    } else if (m.type === 'fatal') {
      this.waiter?.reject(new DtrainError('DTRAIN_ERR_WORKER_START', m.message));
      this.waiter = undefined;
    } else if (this.waiter && m.type === this.waiter.type) {
      this.waiter.resolve(m);
      this.waiter = undefined;
    }
  }

  private lost(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    const err = new WorkerLostError(reason);
    this.waiter?.reject(err);
    this.rejectAll(err);
    this.onLost(reason);
  }

  private next<T extends ThreadMessage['type']>(type: T): Promise<Extract<ThreadMessage, { type: T }>> {
    if (this.exited) return Promise.reject(new WorkerLostError('compute thread has exited'));
    return new Promise((resolve, reject) => {
      this.waiter = { type, resolve: resolve as (m: ThreadMessage) => void, reject };
    });
  }

  /** Resolves once the thread has loaded its backend (and run its warm-up, if it was given one). */
  async started(): Promise<BackendSelection> {
    return (await this.loaded).selection;
  }

  /** The warm-up steps the thread ran before it reported in (0: none asked for, or its backend failed them). */
  async warmedUp(): Promise<number> {
    return (await this.loaded).warmedUp;
  }

  /** Builds the model; resolves with the backend name the thread reports. */
  async welcome(msg: WelcomeMessage): Promise<string> {
    const ready = this.next('ready');
    this.thread.postMessage(msg);
    return (await ready).backend;
  }

  /** Maps the shared-memory step's memory (coordinator/shared-step.ts); resolves once it serves. */
  async attachShared(msg: SharedAttachMessage): Promise<void> {
    const ready = this.next('shared_ready');
    this.thread.postMessage(msg);
    await ready;
  }

  /** Has the thread exchange BatchNorm sums on the board (common/bn-board.ts) from now on. */
  async attachBnBoard(msg: BnBoardAttachMessage): Promise<void> {
    const ready = this.next('bn_board_ready');
    this.thread.postMessage(msg);
    await ready;
  }

  run(task: TaskMessage): Promise<ResultMessage> {
    if (this.exited) return Promise.reject(new WorkerLostError('compute thread has exited'));
    // One answer per id: a second task under the id of one in flight would take its answer, and the arena under it.
    if (this.pending.has(task.taskId)) return Promise.reject(new DuplicateTaskError(task.taskId));
    return new Promise((resolve, reject) => {
      // Alone in flight (abandoned tasks the thread still computes count): its arrays go through the
      // arena, and (if the owner reads results at once) its gradients come back in shared memory.
      const alone = this.tasksInThread === 0;
      const posted: ThreadTask = alone ? this.arena.place(task) : task;
      this.thread.postMessage(alone && this.resultsReadAtOnce && task.kind === 'train' ? { ...posted, sharedResult: true } : posted);
      this.tasksInThread++;
      this.pending.set(task.taskId, { resolve, reject });
    });
  }

  /**
   * Fails every pending task (e.g. its connection closed); the thread stays usable. It still answers
   * them, in order, before any task posted after this: those answers are dropped (staleAnswers).
   */
  abandon(reason: string): void {
    for (const id of this.pending.keys()) this.staleAnswers.set(id, (this.staleAnswers.get(id) ?? 0) + 1);
    this.rejectAll(new WorkerLostError(reason));
  }

  private rejectAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  async terminate(): Promise<void> {
    this.exited = true;
    // Whoever awaits its start or a welcome learns it will not come.
    this.waiter?.reject(new WorkerLostError('compute thread terminated'));
    this.waiter = undefined;
    this.abandon('terminated');
    await this.thread.terminate();
  }
}
