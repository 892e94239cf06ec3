/**
 * Entry point of an in-process worker thread: the single-machine transport. Each thread loads its
 * own tfjs backend (wasm is single-threaded, so K threads use K cores) and speaks the same messages
 * as a WebSocket worker, as structured-cloned objects instead of msgpack frames.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { selectBackend, type BackendChoice } from '../common/backend.ts';
import type { CoordinatorMessage, WorkerMessage } from '../common/protocol.ts';
import { WorkerSession } from './session.ts';
import { ExchangeClient } from './bn-exchange-channel.ts';
import { ThreadBackend, failFirstReadBack, type BackendFallbackMessage } from './backend-fallback.ts';
import { SharedStepServer, type SharedAttachMessage } from './shared-step-server.ts';
import { BnBoardClient, type BnBoardAttachMessage } from '../common/bn-board.ts';
import { warmUp, type WarmUp } from './warm-up.ts';
import { SharedResult } from './shared-result.ts';
import type { ThreadTask } from './compute-thread.ts';

export interface ThreadInit {
  backend: BackendChoice;
  /** Test hook: the first read-back on this backend fails, so the thread must fall back. */
  failFirstReadBackOn?: string;
  /** Synchronized BatchNorm's blocking exchange with the owning thread (bn-exchange-channel.ts). */
  exchangeBuffer?: SharedArrayBuffer;
  /** Steps to run and throw away once the backend is loaded, before the thread reports in (warm-up.ts). */
  warmUp?: WarmUp;
}

const port = parentPort!;
const { backend, failFirstReadBackOn, exchangeBuffer, warmUp: warmUpSpec } = workerData as ThreadInit;
let current: ThreadBackend | undefined;
// A backend that fails its first real step is replaced by the next one (see backend-fallback.ts).
const session = new WorkerSession((err) => current?.fallback(err) ?? Promise.resolve(false));
if (exchangeBuffer) {
  const channel = new ExchangeClient(exchangeBuffer, (request) => port.postMessage(request));
  session.bnExchange = (request, timeoutMs) => channel.exchange(request, timeoutMs);
}
/** Train results for an owner that reads each one before the next task (ComputeThread.resultsReadAtOnce). */
const sharedResult = new SharedResult();
/** Messages and shared-step commands run one at a time, in arrival order. */
let queue: Promise<void> = Promise.resolve();

function post(message: WorkerMessage | { type: 'fatal'; message: string } | { type: 'shared_ready' } | { type: 'bn_board_ready' } | BackendFallbackMessage): void {
  // A gradient in the shared result (worker/shared-result.ts) is shared memory already: not transferred.
  const transfer = message.type === 'result' && message.gradients?.buffer instanceof ArrayBuffer ? [message.gradients.buffer] : [];
  port.postMessage(message, transfer);
}

async function handle(msg: CoordinatorMessage | ThreadTask | SharedAttachMessage | BnBoardAttachMessage, backendName: string): Promise<void> {
  try {
    if (msg.type === 'shared_attach') {
      // The shared-memory step (coordinator/shared-step.ts): commands arrive through Atomics, and
      // run in the same order as messages.
      void new SharedStepServer(msg, session, (job) => (queue = queue.then(job))).serve();
      post({ type: 'shared_ready' });
    } else if (msg.type === 'bn_board_attach') {
      // In-process: synchronized BatchNorm meets the other threads in shared memory, not through messages.
      const board = new BnBoardClient(msg);
      session.bnExchange = (request, timeoutMs) => board.exchange(request, timeoutMs);
      post({ type: 'bn_board_ready' });
    } else if (msg.type === 'welcome') {
      session.welcome(msg);
      post({ type: 'ready', backend: backendName });
    } else if (msg.type === 'task') {
      post(await session.run(msg, (msg as ThreadTask).sharedResult ? sharedResult : undefined));
    } else if (msg.type === 'shutdown') {
      session.dispose();
      current?.release();
      port.close();
    }
  } catch (err) {
    const e = err as { code?: string; message?: string };
    if (msg.type === 'task') post({ type: 'task_failed', taskId: msg.taskId, code: e.code ?? 'DTRAIN_ERR_WORKER', message: e.message ?? String(err) });
    else post({ type: 'fatal', message: e.message ?? String(err) });
  }
}

try {
  const selection = await selectBackend(backend);
  const threadBackend = new ThreadBackend(backend, selection, post);
  current = threadBackend;
  const warmed = warmUpSpec ? await warmUp(warmUpSpec) : 0;
  if (failFirstReadBackOn === selection.name) failFirstReadBack(selection.name);
  // Tasks are asynchronous (one awaited read-back each); messages are handled strictly in arrival
  // order, so a welcome or a second task never interleaves with a step in flight.
  port.on('message', (msg: CoordinatorMessage) => {
    queue = queue.then(() => handle(msg, threadBackend.name));
  });
  port.postMessage({ type: 'backend', selection, warmedUp: warmed });
} catch (err) {
  post({ type: 'fatal', message: (err as Error).message });
}
