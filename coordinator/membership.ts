/**
 * Who is in the job right now. Joins and leaves bump the generation number; the step loop reads
 * the live set at the start of each step. Evictions close the connection with a reason.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/logger.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import type { WireDtype } from '../common/wire-dtype.ts';

/** One connected, welcomed worker, whatever the transport. */
export interface WorkerHandle {
  readonly id: string;
  readonly name: string;
  readonly backend: string;
  /** The weights version this worker holds; the scheduler omits weights it already has. */
  weightsVersion: number;
  /** Resolves with the worker's result; rejects if the worker goes away first. */
  run(task: TaskMessage): Promise<ResultMessage>;
  /** Ends the worker's connection; `kind` says whether it was evicted (misbehaved) or left. */
  close(code: number, reason: string, kind?: LeaveKind): void;
  /** Where the worker connects from (its address); failures are counted per origin. Default: its id. */
  readonly origin?: string;
  /** The dtype of its weights and gradients on the wire (for byte counts). Default float32. */
  readonly wireDtype?: WireDtype;
  /** True when it reads the dataset itself: the scheduler sends sample indices instead of pixels. */
  readonly localData?: boolean;
  /**
   * True for a compute thread in this process: a rejected result of it is recomputed without
   * evicting it (it is no adversary, and the pool cannot grow back), and the same rejection twice
   * for one task fails the run (scheduler.ts, `ResultRejectedError`). Default: evicted.
   */
  readonly keepOnRejection?: boolean;
  /**
   * True when `task` reaches the worker through shared memory (a compute thread's slot, read in
   * place): nothing is sent for it, so the scheduler counts no bytes. Default: every task is sent.
   */
  inSharedMemory?(task: TaskMessage): boolean;
}

export type LeaveKind = 'left' | 'evicted';

/** A worker in a log line: its id, and the name its operator gave it where that differs ("w2 (gpu-node-1)"). */
function who(worker: Pick<WorkerHandle, 'id' | 'name'>): string {
  return worker.name && worker.name !== worker.id ? `${worker.id} (${worker.name})` : worker.id;
}

/** What happened to whom, for observers (dashboard, metrics); the step loop only needs `onChange`. */
export type MembershipEvent =
  | { kind: 'joined'; workerId: string; name: string; backend: string }
  | { kind: LeaveKind; workerId: string; reason: string };

export class Membership {
  private readonly workers = new Map<string, WorkerHandle>();
  private readonly events = new EventEmitter();
  generation = 0;
  /** False when no worker can join later (worker threads): losing them all is then an error. */
  canGrow = true;
  /** While held (holdNews): leave lines and events, to be told in order once released. */
  private held: (() => void)[] | undefined;

  constructor(private readonly log: Logger) {}

  join(worker: WorkerHandle): void {
    this.workers.set(worker.id, worker);
    this.generation++;
    this.events.emit('event', { kind: 'joined', workerId: worker.id, name: worker.name, backend: worker.backend } satisfies MembershipEvent);
    this.log.info({ event: 'worker_joined', workerId: worker.id, workerName: worker.name, backend: worker.backend, workers: this.workers.size, generation: this.generation }, `worker ${who(worker)} joined`);
    this.events.emit('change');
  }

  /**
   * Removes a worker; idempotent, so a socket close after an eviction is not counted twice.
   * `orderly`: we ended it ourselves (training finished, shutting down), so it is news, not a warning.
   */
  leave(id: string, kind: LeaveKind, reason: string, closeCode?: number, orderly = false): void {
    const worker = this.workers.get(id);
    if (!worker) return;
    this.workers.delete(id);
    this.generation++;
    const event = kind === 'evicted' ? 'worker_evicted' : 'worker_left';
    const fields = { event, workerId: id, reason, workers: this.workers.size, generation: this.generation };
    const tell = () => {
      this.log[orderly && kind === 'left' ? 'info' : 'warn'](fields, `worker ${who(worker)} ${kind}: ${reason}`);
      this.events.emit('event', { kind, workerId: id, reason } satisfies MembershipEvent);
    };
    if (this.held) this.held.push(tell);
    else tell();
    if (closeCode !== undefined) worker.close(closeCode, reason, kind);
    this.events.emit('change');
  }

  /**
   * Holds back the log lines and observer events of leaves (the live set still changes at once)
   * until the returned function is called, which tells them in order. A run of steps reports its
   * steps after it ends (Trainer.runSteps): a thread lost during it is told after the steps it
   * committed before it left.
   */
  holdNews(): () => void {
    if (this.held) return () => {};
    const held: (() => void)[] = [];
    this.held = held;
    return () => {
      if (this.held === held) this.held = undefined;
      for (const tell of held.splice(0)) tell();
    };
  }

  live(): WorkerHandle[] {
    return [...this.workers.values()];
  }

  get size(): number {
    return this.workers.size;
  }

  /** Calls `listener` on every join or leave; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.events.on('change', listener);
    return () => this.events.off('change', listener);
  }

  /** Calls `listener` with each join, leave and eviction; returns the unsubscribe function. */
  onEvent(listener: (e: MembershipEvent) => void): () => void {
    this.events.on('event', listener);
    return () => this.events.off('event', listener);
  }

  /** Resolves on the next join or leave, or when the signal aborts. */
  changed(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        off();
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const off = this.onChange(done);
      signal?.addEventListener('abort', done);
    });
  }

  closeAll(code: number, reason: string): void {
    for (const w of this.workers.values()) w.close(code, reason);
    this.workers.clear();
  }
}
