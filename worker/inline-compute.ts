/**
 * A WebSocket worker's compute on its own main thread, where the socket is: a task goes from its
 * frame to the backend and its result back to a frame with no hand-off to a compute thread. Each
 * hand-off wakes a thread (post the task, post the result back): on this 2-core machine, with two
 * workers computing, 0.26 and 0.18 ms at the median and about 1 ms per step together on average,
 * mostly waiting for a core (docs/shared-step.md, "A WebSocket step, hop by hop").
 *
 * Two kinds of work still go to a compute thread of their own (worker/compute-thread.ts), so that
 * the socket keeps answering heartbeats and relaying frames while they run:
 * - models with synchronized BatchNorm: a step blocks mid-pass until the coordinator's totals come
 *   back over this very socket, which a blocked main thread could not read;
 * - steps that turn out long on a backend that computes synchronously (wasm, cpu, tensorflow; webgpu
 *   awaits its device, and its first step's shader compilation alone can take a second): after a
 *   train task that computed for longer than `longStepMs`, the
 *   welcome's model moves to a thread, and so do later welcomes of that model (a ping unanswered
 *   at the coordinator's next 2 s heartbeat tick ends the connection, so the event loop must turn
 *   well within that).
 * Evaluation tasks run in chunks of EVAL_CHUNK images with an event-loop turn between them.
 */
import { selectBackend, type BackendChoice, type BackendSelection } from '../common/backend.ts';
import type { BnSumsMessage, ResultMessage, TaskMessage, WelcomeMessage } from '../common/protocol.ts';
import { IMAGE_BYTES } from '../common/data/types.ts';
import { SYNC_READ_BACKENDS } from '../common/sync-read.ts';
import { tf } from '../common/tf.ts';
import { ThreadBackend, type BackendFallbackMessage } from './backend-fallback.ts';
import { ComputeThread, DuplicateTaskError, WorkerLostError } from './compute-thread.ts';
import { WorkerSession } from './session.ts';
import { SharedResult } from './shared-result.ts';

/** What a WebSocket worker asks of its compute, wherever it runs (ComputeThread, InlineCompute). */
export interface WorkerCompute {
  onLost: (reason: string) => void;
  onBackendFallback: (m: BackendFallbackMessage) => void;
  onBnSums: (m: BnSumsMessage) => Promise<Float64Array>;
  resultsReadAtOnce: boolean;
  started(): Promise<BackendSelection>;
  welcome(msg: WelcomeMessage): Promise<string>;
  run(task: TaskMessage): Promise<ResultMessage>;
  abandon(reason: string): void;
  terminate(): Promise<void>;
}

/** Images per evaluation chunk: an event-loop turn between chunks keeps heartbeats answered. */
export const EVAL_CHUNK = 256;
/** A train task computing longer than this moves its model to a compute thread (ms). */
export const LONG_STEP_MS = 500;

/** Whether a welcome's model has BatchNorm statistics (non-trainable weights): its steps may exchange sums mid-pass. */
export function hasBatchNorm(msg: Pick<WelcomeMessage, 'weightCount' | 'trainableCount'>): boolean {
  return (msg.trainableCount ?? msg.weightCount) < msg.weightCount;
}

interface Pending {
  resolve(r: ResultMessage): void;
  reject(e: Error): void;
}

export class InlineCompute implements WorkerCompute {
  onLost: (reason: string) => void = () => {};
  onBackendFallback: (m: BackendFallbackMessage) => void = () => {};
  onBnSums: (m: BnSumsMessage) => Promise<Float64Array> = () => Promise.reject(new Error('no BatchNorm rounds on this connection'));
  resultsReadAtOnce = false;
  /** Called when a welcome's model moves to a compute thread, with why. */
  onMoved: (reason: string) => void = () => {};
  /** Called when a long step's model could not move to a compute thread: its tasks stay on this thread. */
  onMoveFailed: (reason: string) => void = () => {};

  private readonly session: WorkerSession;
  private backend: ThreadBackend | undefined;
  private readonly loaded: Promise<BackendSelection>;
  private readonly sharedResult = new SharedResult();
  private readonly pending = new Map<number, Pending>();
  /** Tasks run one at a time, in arrival order. */
  private queue: Promise<void> = Promise.resolve();
  /** Tasks queued or running, abandoned ones included. */
  private tasksQueued = 0;
  private thread: ComputeThread | undefined;
  /** Where the current welcome's tasks run. */
  private where: 'inline' | 'thread' = 'inline';
  private lastWelcome: WelcomeMessage | undefined;
  /**
   * The weights of the last task that brought some. The coordinator sends a version once per worker,
   * so a thread that takes over mid-step (a long step) gets them from here with its first task.
   */
  private lastWeights: { version: number; bytes: Uint8Array } | undefined;
  private threadHasWeights = false;
  private stopped = false;
  /** Counts welcomes: a move started for one welcome does not apply to a later one. */
  private generation = 0;
  /** Models whose train steps proved long here, with why: later welcomes of them go to the thread at once. */
  private readonly longSteps = new Map<string, string>();
  /** While a long step's model moves to a compute thread. Never rejects: a failed move leaves tasks here. */
  private moving: Promise<void> | undefined;

  private readonly longStepMs: number;
  private readonly evalChunk: number;

  /** `options`: LONG_STEP_MS and EVAL_CHUNK by default (tests change them). */
  constructor(private readonly choice: BackendChoice, options: { longStepMs?: number; evalChunk?: number } = {}) {
    this.longStepMs = options.longStepMs ?? LONG_STEP_MS;
    this.evalChunk = options.evalChunk ?? EVAL_CHUNK;
    this.session = new WorkerSession((err) => this.backend?.fallback(err) ?? Promise.resolve(false));
    this.loaded = selectBackend(choice).then((selection) => {
      this.backend = new ThreadBackend(choice, selection, (m) => this.onBackendFallback(m));
      return selection;
    });
    // Its failure is reported to whoever awaits started().
    this.loaded.catch(() => {});
  }

  /** Where the current welcome's tasks run: on this thread, or in a compute thread. */
  get runsOn(): 'inline' | 'thread' {
    return this.where;
  }

  started(): Promise<BackendSelection> {
    return this.loaded;
  }

  async welcome(msg: WelcomeMessage): Promise<string> {
    // A move under way belongs to an earlier welcome: it ends first, and then counts for nothing.
    const generation = ++this.generation;
    await this.moving;
    this.lastWelcome = msg;
    if (hasBatchNorm(msg)) return this.moveToThread(msg, `${msg.model} synchronizes BatchNorm mid-step`, generation);
    const long = this.longSteps.get(msg.model);
    if (long) return this.moveToThread(msg, long, generation);
    this.where = 'inline';
    await this.loaded;
    // After the tasks before it, as a thread takes its messages (an abandoned one may still be running).
    await (this.queue = this.queue.then(() => this.session.welcome(msg)));
    return this.backend!.name;
  }

  run(task: TaskMessage): Promise<ResultMessage> {
    // Tasks that arrive while the model moves to a thread go there once it is ready.
    if (this.moving) return this.moving.then(() => this.run(task));
    if (this.where === 'thread') return this.thread!.run(this.withWeightsFor(task));
    if (task.weights) this.lastWeights = { version: task.weightsVersion, bytes: task.weights };
    if (this.stopped) return Promise.reject(new WorkerLostError('compute has stopped'));
    if (this.pending.has(task.taskId)) return Promise.reject(new DuplicateTaskError(task.taskId));
    return new Promise((resolve, reject) => {
      const entry: Pending = { resolve, reject };
      this.pending.set(task.taskId, entry);
      // Alone (nothing queued, abandoned tasks included) and read at once: gradients into the reused result memory.
      const into = this.tasksQueued === 0 && this.resultsReadAtOnce && task.kind === 'train' ? this.sharedResult : undefined;
      const generation = this.generation;
      this.tasksQueued++;
      this.queue = this.queue.then(async () => {
        try {
          // Abandoned while it waited (its connection closed): not computed. Its weights do not matter:
          // a task is abandoned only with its connection, and a new connection sends weights first.
          const live = () => this.pending.get(task.taskId) === entry && !this.stopped;
          if (!live()) return;
          const result = task.kind === 'eval' ? await this.evaluateInChunks(task, live) : await this.session.run(task, into);
          this.settle(task.taskId, entry, (p) => p.resolve(result));
          // Only a backend that computes synchronously holds the event loop for a step (webgpu awaits its device).
          if (task.kind === 'train' && result.computeMs > this.longStepMs && SYNC_READ_BACKENDS.has(tf.getBackend())) {
            this.moving = this.moveLongSteps(result.computeMs, generation).finally(() => (this.moving = undefined));
            await this.moving;
          }
        } catch (err) {
          this.settle(task.taskId, entry, (p) => p.reject(err as Error));
        } finally {
          this.tasksQueued--;
        }
      });
    });
  }

  abandon(reason: string): void {
    const err = new WorkerLostError(reason);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.thread?.abandon(reason);
  }

  async terminate(): Promise<void> {
    this.stopped = true;
    this.abandon('terminated');
    await this.thread?.terminate();
    // A task still running finishes first (at most one step or chunk: queued ones are skipped); its
    // model is then freed. The backend stays registered: it is this thread's, which may select it
    // again (the process exits right after).
    await this.queue;
    this.session.dispose();
  }

  /** `task`, with the weights it relies on where the compute thread has not had them yet. */
  private withWeightsFor(task: TaskMessage): TaskMessage {
    if (task.weights) this.threadHasWeights = true;
    else if (!this.threadHasWeights && this.lastWeights?.version === task.weightsVersion) {
      this.threadHasWeights = true;
      return { ...task, weights: this.lastWeights.bytes };
    }
    return task;
  }

  /** Settles `taskId` if `entry` is still its pending entry (a task abandoned, then reused by a new connection, is not). */
  private settle(taskId: number, entry: Pending, how: (p: Pending) => void): void {
    if (this.pending.get(taskId) !== entry) return;
    this.pending.delete(taskId);
    how(entry);
  }

  /** An eval task in chunks of `evalChunk` images, with an event-loop turn between them; one result. */
  private async evaluateInChunks(task: TaskMessage, live: () => boolean): Promise<ResultMessage> {
    const count = task.labels.length;
    if (count <= this.evalChunk) return this.session.run(task);
    const merged: ResultMessage = { type: 'result', taskId: task.taskId, count, lossSum: 0, correct: 0, computeMs: 0, predictions: new Uint8Array(count) };
    for (let from = 0; from < count; from += this.evalChunk) {
      const to = Math.min(count, from + this.evalChunk);
      // Only the first chunk brings the weights; the others run on them (same version).
      const chunk: TaskMessage = { ...task, weights: from === 0 ? task.weights : undefined, images: task.images.subarray(from * IMAGE_BYTES, to * IMAGE_BYTES), labels: task.labels.subarray(from, to) };
      const r = await this.session.run(chunk);
      merged.lossSum += r.lossSum;
      merged.correct += r.correct;
      merged.computeMs += r.computeMs;
      merged.predictions!.set(r.predictions!, from);
      if (to < count) await new Promise((resolve) => setImmediate(resolve));
      // Abandoned meanwhile: the rest is not computed (the weights went in with the first chunk).
      if (!live()) break;
    }
    return merged;
  }

  /** After a long train step: this welcome's tasks, and later welcomes of its model, run in a compute thread. */
  private async moveLongSteps(computeMs: number, generation: number): Promise<void> {
    const welcome = this.lastWelcome;
    if (!welcome || generation !== this.generation || this.where === 'thread' || this.stopped) return;
    const reason = `a step computed for ${Math.round(computeMs)} ms, over ${this.longStepMs} ms on the thread that answers heartbeats`;
    this.longSteps.set(welcome.model, `${welcome.model}'s steps are long: ${reason}`);
    try {
      await this.moveToThread(welcome, reason, generation);
    } catch (err) {
      this.onMoveFailed((err as Error).message);
    }
  }

  /** Welcomes the compute thread; its tasks go there only if no later welcome came meanwhile. */
  private async moveToThread(msg: WelcomeMessage, reason: string, generation: number): Promise<string> {
    const thread = (this.thread ??= this.startThread());
    await thread.started();
    const backend = await thread.welcome(msg);
    if (generation !== this.generation) return backend;
    if (this.where !== 'thread') this.onMoved(reason);
    this.where = 'thread';
    this.threadHasWeights = false;
    return backend;
  }

  private startThread(): ComputeThread {
    const thread = new ComputeThread(this.choice);
    thread.resultsReadAtOnce = this.resultsReadAtOnce;
    thread.onLost = (reason) => this.onLost(reason);
    thread.onBackendFallback = (m) => this.onBackendFallback(m);
    thread.onBnSums = (m) => this.onBnSums(m);
    return thread;
  }
}
