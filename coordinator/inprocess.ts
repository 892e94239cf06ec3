/**
 * The single-machine transport: K compute threads in this process, no network. Each thread is
 * welcomed like a remote worker and joins the same Membership, so the step loop cannot tell them
 * from WebSocket workers.
 */
import type { Logger } from '../common/logger.ts';
import type { BackendChoice, BackendSelection } from '../common/backend.ts';
import { CLOSE_CODES, type ResultMessage, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { ComputeThread } from '../worker/compute-thread.ts';
import type { Membership, WorkerHandle } from './membership.ts';

class ThreadWorker implements WorkerHandle {
  weightsVersion = -1;

  constructor(readonly id: string, readonly backend: string, private readonly thread: ComputeThread) {}

  get name(): string {
    return this.id;
  }

  run(task: TaskMessage): Promise<ResultMessage> {
    return this.thread.run(task);
  }

  close(_code: number, reason: string): void {
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
}

/** Starts the threads, waits for each to load its backend and model, and joins them. */
export async function startInProcessWorkers(membership: Membership, opts: InProcessOptions): Promise<{ backend: BackendSelection; stop(): Promise<void> }> {
  membership.canGrow = false;
  const threads: ComputeThread[] = [];
  const started = await Promise.all(
    Array.from({ length: opts.workers }, async (_, i) => {
      const id = `thread-${i + 1}`;
      const thread = new ComputeThread(opts.backend);
      threads.push(thread);
      thread.onBackendFallback = (m) => opts.log.warn({ event: 'backend_fallback', workerId: id, from: m.from, backend: m.selection.name, source: m.selection.source, reason: m.reason }, `${id}: ${m.from} failed its first step (${m.reason}); training goes on with ${m.selection.name}`);
      const selection = await thread.started();
      const backend = await thread.welcome({ ...opts.welcome, workerId: id });
      thread.onLost = (reason) => membership.leave(id, 'left', reason);
      return { handle: new ThreadWorker(id, backend, thread), selection };
    }),
  );
  for (const s of started) membership.join(s.handle);
  return {
    backend: started[0].selection,
    async stop() {
      membership.closeAll(CLOSE_CODES.finished, 'training finished');
      await Promise.all(threads.map((t) => t.terminate()));
    },
  };
}
