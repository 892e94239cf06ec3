/**
 * The single-machine transport: K compute threads in this process, no network. Each thread is
 * welcomed like a remote worker and joins the same Membership, so the step loop cannot tell them
 * from WebSocket workers.
 */
import { availableParallelism } from 'node:os';
import type { Logger } from '../common/logger.ts';
import { untilAborted, withTimeout } from '../common/timeout.ts';
import { DtrainError } from '../common/errors.ts';
import type { BackendChoice, BackendSelection } from '../common/backend.ts';
import { CLOSE_CODES, type ResultMessage, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { ComputeThread } from '../worker/compute-thread.ts';
import type { WarmUp } from '../worker/warm-up.ts';
import { bnRounds } from './bn-rounds.ts';
import type { Membership, WorkerHandle } from './membership.ts';
import { Adam } from '../common/adam.ts';
import { SharedStep } from './shared-step.ts';
import type { ImageSet } from '../common/data/types.ts';
import { BnBoardHost, createBnBoard } from '../common/bn-board.ts';

class ThreadWorker implements WorkerHandle {
  weightsVersion = -1;
  /** A thread is recomputed, not evicted, when its result is rejected (membership.ts). */
  readonly keepOnRejection = true;

  constructor(readonly id: string, readonly backend: string, private readonly thread: ComputeThread, private readonly index: number, private readonly shared: SharedStep | undefined) {}

  get name(): string {
    return this.id;
  }

  inSharedMemory(task: TaskMessage): boolean {
    return this.shared?.slotFor(task) !== undefined;
  }

  run(task: TaskMessage): Promise<ResultMessage> {
    // Train slices gathered into shared memory go through Atomics; everything else is a message.
    const slot = this.shared?.slotFor(task);
    if (slot !== undefined) return this.shared!.train(this.index, slot, task);
    return this.thread.run(task);
  }

  close(_code: number, reason: string): void {
    this.shared?.fail(this.index, reason);
    // A thread stuck in a long kernel cannot be asked to stop: it is terminated.
    this.thread.abandon(reason);
    void this.thread.terminate();
  }
}

export interface InProcessOptions {
  workers: number;
  backend: BackendChoice;
  welcome: Omit<WelcomeMessage, 'workerId'>;
  log: Logger;
  /**
   * The shared-memory step (coordinator/shared-step.ts), when given: the trainable and statistics
   * counts and the largest slice. Without it, every step is messages, as over WebSockets.
   */
  /** `grain`: the run's reduction grain (common/reduce-grain.ts), whose slots hold float64 gradients. */
  /** `trainSet`: the run's training split; where it lies in shared memory the threads read their slices ahead in place (SharedStep.shareTrainSet). */
  sharedMemory?: { trainable: number; stats: number; slotSamples: number; grain?: number; trainSet?: ImageSet } | false;
  /**
   * Channels of the model's BatchNorm layers: with two threads or more, their synchronized
   * BatchNorm exchanges go through a board in shared memory (common/bn-board.ts), not messages.
   */
  batchNormChannels?: readonly number[];
  /** Time each thread has to load its backend and build its model; then the start fails. Default 120 s. */
  startupTimeoutMs?: number;
  /** Aborting it while the threads start terminates them and rejects with its reason. */
  signal?: AbortSignal;
  /** Threads started earlier (prestartThreads), one per worker; otherwise they are started here. */
  threads?: ComputeThread[];
}

/**
 * Starts `workers` compute threads now, each loading its backend and then warming up on `warmUp`
 * (worker/warm-up.ts), so that this happens while the owning thread loads the data; hand them to
 * startInProcessWorkers. Terminate them if they are never handed over.
 */
export function prestartThreads(workers: number, backend: BackendChoice, warmUp?: WarmUp): ComputeThread[] {
  return Array.from({ length: workers }, () => new ComputeThread(backend, warmUp ? { warmUp } : {}));
}

type InProcessPool = { backend: BackendSelection; warmedUp: number; sharedStep?: SharedStep; bnBoard?: BnBoardHost; stop(): Promise<void> };

/**
 * Starts the threads, waits for each to load its backend and model, and joins them. Prestarted
 * threads (opts.threads) are its own from the call on: a start that fails terminates them.
 */
export async function startInProcessWorkers(membership: Membership, opts: InProcessOptions): Promise<InProcessPool> {
  try {
    return await startThreads(membership, opts);
  } catch (err) {
    await Promise.all((opts.threads ?? []).map((t) => t.terminate().catch(() => {})));
    throw err;
  }
}

/**
 * A thread that did not start in time is most often one of too many for the cores (each loads and
 * compiles its backend): the error says so and is a user's to fix, with no stack trace.
 */
export function startupError(err: unknown, workers: number, cores = availableParallelism()): unknown {
  if (!(err instanceof DtrainError) || err.code !== 'DTRAIN_ERR_THREAD_START' || err.expected) return err;
  const hint = workers > cores ? `${workers} threads were starting on ${cores} cores: give fewer --workers (at most ${cores} keeps one per core)` : 'the machine may be overloaded, or the backend hung while loading: try --backend wasm';
  return new DtrainError('DTRAIN_ERR_THREAD_START', `A compute thread did not start in time (${err.message}); ${hint}.`, { cause: err });
}

async function startThreads(membership: Membership, opts: InProcessOptions): Promise<InProcessPool> {
  membership.canGrow = false;
  if (opts.threads && opts.threads.length !== opts.workers) throw new DtrainError('DTRAIN_ERR_THREAD_START', `Expected ${opts.workers} prestarted threads, but got ${opts.threads.length}.`, { expected: false });
  /** By index: thread i serves the shared step's control block i. */
  const threads: ComputeThread[] = [];
  const sm = opts.sharedMemory;
  // The stripes run the SIMD Adam exactly when the trainer's Adam does (same availability check).
  const shared = sm ? new SharedStep({ trainable: sm.trainable, stats: sm.stats, slotSamples: sm.slotSamples, grain: sm.grain, slots: opts.workers, threads: opts.workers }, new Adam(1).kind === 'simd') : undefined;
  if (shared && sm && sm.trainSet) shared.shareTrainSet(sm.trainSet);
  const channels = opts.batchNormChannels ?? [];
  // With a reduction grain a slice exchanges one vector per group of its samples (common/reduce-grain.ts).
  const groupsPerLane = sm && sm.grain ? Math.ceil(sm.slotSamples / sm.grain) : 1;
  const board = channels.length > 0 && opts.workers > 1 ? new BnBoardHost(createBnBoard(channels, opts.workers, groupsPerLane)) : undefined;
  const startupMs = opts.startupTimeoutMs ?? 120_000;
  const startup = <T>(p: Promise<T>, id: string, what: string) => withTimeout(p, startupMs, `${id}: ${what}`, 'DTRAIN_ERR_THREAD_START');
  const starting = Promise.all(
    Array.from({ length: opts.workers }, async (_, i) => {
      const id = `thread-${i + 1}`;
      const thread = opts.threads?.[i] ?? new ComputeThread(opts.backend);
      // Synchronized BatchNorm: the thread's sums go straight to this step's round.
      thread.onBnSums = (m) => bnRounds.contribute(m);
      threads[i] = thread;
      thread.onBackendFallback = (m) => opts.log.warn({ event: 'backend_fallback', workerId: id, from: m.from, backend: m.selection.name, source: m.selection.source, reason: m.reason }, `${id}: ${m.from} failed its first step (${m.reason}); training goes on with ${m.selection.name}`);
      const selection = await startup(thread.started(), id, 'loading the backend');
      const warmedUp = await thread.warmedUp();
      const backend = await startup(thread.welcome({ ...opts.welcome, workerId: id }), id, 'building the model');
      if (shared) await thread.attachShared(shared.attachMessage(i));
      if (board) await thread.attachBnBoard(board.attachMessage(i));
      thread.onLost = (reason) => {
        shared?.fail(i, reason);
        membership.leave(id, 'left', reason);
      };
      return { handle: new ThreadWorker(id, backend, thread, i, shared), selection, warmedUp };
    }),
  );
  // A thread that hangs while starting must not hold the process before its signals are handled.
  // A signal while the threads load (SIGINT, SIGTERM) stops the start instead of waiting it out.
  starting.catch(() => {});
  const started = await untilAborted(starting, opts.signal).catch(async (err: unknown) => {
    await Promise.all(threads.map((t) => t.terminate()));
    throw startupError(err, opts.workers);
  });
  for (const s of started) membership.join(s.handle);
  if (shared) {
    shared.onThreadFailed = (i, reason) => membership.leave(`thread-${i + 1}`, 'evicted', reason, CLOSE_CODES.evicted);
    shared.threadGone = (i) => threads[i].gone;
  }
  return {
    backend: started[0].selection,
    warmedUp: Math.min(...started.map((s) => s.warmedUp)),
    sharedStep: shared,
    bnBoard: board,
    async stop() {
      membership.closeAll(CLOSE_CODES.finished, 'training finished');
      await Promise.all(threads.map((t) => t.terminate()));
    },
  };
}
