/**
 * A browser tab's side of the worker protocol: the same messages, codec and checks as the Node
 * worker (worker/client.ts), over the browser's WebSocket. It connects with the token as a
 * subprotocol (common/token-protocol.ts: a browser cannot set an Authorization header), says hello,
 * builds the model it is told to (worker/session.ts, the same code a Node worker runs), and
 * answers tasks in order. It reconnects with backoff when the coordinator goes away, and gives up
 * after MAX_FAILED_JOINS connections in a row that ended before a welcome (a wrong token is refused
 * at the HTTP upgrade, which a browser only sees as a failed connection).
 *
 * What a browser cannot do, and the Node worker does: cap the size of incoming frames before they
 * are buffered (ws's maxPayload), and ping the coordinator (the browser answers the
 * coordinator's pings by itself, so the coordinator still evicts a tab that stops answering).
 */
import { decodeCoordinatorMessage, encode, FrameError } from '../../common/codec.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type CoordinatorMessage, type TaskMessage, type WorkerMessage } from '../../common/protocol.ts';
import { tokenProtocols, WORKER_PROTOCOL } from '../../common/token-protocol.ts';
import { WorkerSession } from '../session.ts';
import { tf } from '../../common/tf.ts';

/** What the client needs of a WebSocket: the browser's, or `ws` in tests. */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}
export type SocketFactory = (url: string, protocols: string[]) => SocketLike;

const OPEN = 1;
export const MAX_FAILED_JOINS = 5;

export interface BrowserWorkerOptions {
  url: string;
  token: string;
  workerName: string;
  /** The tfjs backend already selected (backend.ts); reported to the coordinator as `browser/<name>`. */
  backend: string;
  connect: SocketFactory;
  welcomeTimeoutMs?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Called on every change, for the page. */
  onUpdate?(status: BrowserWorkerStatus): void;
}

export type BrowserWorkerState = 'connecting' | 'joined' | 'waiting' | 'finished' | 'refused' | 'stopped';

export interface BrowserWorkerStatus {
  state: BrowserWorkerState;
  /** What happened last, in words. */
  message: string;
  workerId?: string;
  model?: string;
  trainTasks: number;
  trainSamples: number;
  evalSamples: number;
  lastComputeMs?: number;
  /** tf.memory().numTensors after the first and the latest train slice: equal unless a step leaks. */
  tensorsAfterFirstTrain?: number;
  tensorsAfterLastTrain?: number;
  bytesIn: number;
  bytesOut: number;
}

/**
 * A browser's close() accepts only 1000 and 3000-4999 (anything else throws), and a reason of at
 * most 123 bytes: other codes (such as 1001 or 1009) are sent as 1000.
 */
export function closeSocket(socket: SocketLike, code: number, reason: string): void {
  const allowed = code === 1000 || (code >= 3000 && code <= 4999);
  try {
    socket.close(allowed ? code : 1000, reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 120));
  } catch {
    // Already closing: nothing more to say.
  }
}

/** The close codes after which retrying cannot help. */
const FINAL_CLOSES: Record<number, { state: BrowserWorkerState; message: string }> = {
  [CLOSE_CODES.finished]: { state: 'finished', message: 'training finished' },
  [CLOSE_CODES.auth]: { state: 'refused', message: 'the coordinator refused the token' },
  [CLOSE_CODES.version]: { state: 'refused', message: 'the coordinator speaks another protocol version: reload the page' },
};

export class BrowserWorker {
  readonly status: BrowserWorkerStatus = { state: 'connecting', message: 'connecting', trainTasks: 0, trainSamples: 0, evalSamples: 0, bytesIn: 0, bytesOut: 0 };
  private readonly session = new WorkerSession();
  private socket: SocketLike | undefined;
  private stopped = false;
  private failedJoins = 0;
  private attempt = 0;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private resolveDone: (s: BrowserWorkerStatus) => void = () => {};
  /** Resolves when the worker stops for good: finished, refused, gave up or stopped. */
  readonly done = new Promise<BrowserWorkerStatus>((resolve) => (this.resolveDone = resolve));

  constructor(private readonly opts: BrowserWorkerOptions) {}

  start(): Promise<BrowserWorkerStatus> {
    this.connect();
    return this.done;
  }

  stop(message = 'stopped'): void {
    if (this.stopped) return;
    if (this.socket) closeSocket(this.socket, CLOSE_CODES.normal, 'worker leaving');
    this.end('stopped', message);
  }

  private update(state: BrowserWorkerState, message: string): void {
    this.status.state = state;
    this.status.message = message;
    this.opts.onUpdate?.(this.status);
  }

  private end(state: BrowserWorkerState, message: string): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.session.dispose();
    this.update(state, message);
    this.resolveDone(this.status);
  }

  private connect(): void {
    this.update('connecting', `connecting to ${this.opts.url}`);
    let socket: SocketLike;
    try {
      socket = this.opts.connect(this.opts.url, tokenProtocols(this.opts.token));
    } catch (err) {
      this.end('refused', `cannot open ${this.opts.url}: ${(err as Error).message}`);
      return;
    }
    this.socket = socket;
    socket.binaryType = 'arraybuffer';
    let weightCount: number | undefined;
    let welcomed = false;
    let closedBy: { code: number; message: string } | undefined;
    // Tasks are answered one at a time, in the order they came.
    let queue: Promise<void> = Promise.resolve();
    const welcomeTimer = setTimeout(() => fail(new FrameError('DTRAIN_ERR_WELCOME_TIMEOUT', `Expected a welcome within ${this.opts.welcomeTimeoutMs ?? 10_000} ms, but got none.`, CLOSE_CODES.handshakeTimeout)), this.opts.welcomeTimeoutMs ?? 10_000);

    const send = (m: WorkerMessage) => {
      if (socket.readyState !== OPEN) return;
      const bytes = encode(m);
      this.status.bytesOut += bytes.byteLength;
      socket.send(bytes);
    };
    const fail = (err: FrameError) => {
      closedBy = { code: err.closeCode, message: `${err.code}: ${err.message}` };
      closeSocket(socket, err.closeCode, err.code);
    };

    socket.onopen = () => {
      if (socket.protocol !== WORKER_PROTOCOL) {
        fail(new FrameError('DTRAIN_ERR_PROTOCOL', `Expected the coordinator to select subprotocol "${WORKER_PROTOCOL}", but it selected "${socket.protocol}".`));
        return;
      }
      send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: this.opts.workerName });
    };
    socket.onmessage = (ev) => {
      const arrived = performance.now();
      let msg: CoordinatorMessage;
      try {
        if (!(ev.data instanceof ArrayBuffer)) throw new FrameError('DTRAIN_ERR_FRAME_SHAPE', 'Expected a binary frame from the coordinator, but got text.');
        this.status.bytesIn += ev.data.byteLength;
        msg = decodeCoordinatorMessage(new Uint8Array(ev.data), weightCount);
        if (msg.type === 'welcome') {
          if (msg.protocolVersion !== PROTOCOL_VERSION) throw new FrameError('DTRAIN_ERR_VERSION', `Expected protocol ${PROTOCOL_VERSION}, the coordinator speaks ${msg.protocolVersion}.`, CLOSE_CODES.version);
          clearTimeout(welcomeTimer);
          weightCount = msg.weightCount;
          this.session.welcome(msg);
          welcomed = true;
          this.failedJoins = 0;
          this.attempt = 0;
          this.status.workerId = msg.workerId;
          this.status.model = msg.model;
          send({ type: 'ready', backend: `browser/${this.opts.backend}` });
          this.update('joined', `joined as ${msg.workerId}, training ${msg.model}`);
          return;
        }
      } catch (err) {
        fail(err instanceof FrameError ? err : new FrameError('DTRAIN_ERR_WORKER', (err as Error).message));
        return;
      }
      if (msg.type === 'shutdown') {
        closedBy = { code: CLOSE_CODES.normal, message: msg.reason };
        closeSocket(socket, CLOSE_CODES.normal, 'bye');
        this.end('finished', `the coordinator says: ${msg.reason}`);
        return;
      }
      // Browser workers normalize BatchNorm locally (the coordinator never puts them in an exchange round).
      if (msg.type === 'bn_totals') return;
      const task = msg;
      queue = queue.then(() => this.answer(task, send, arrived));
    };
    socket.onclose = (ev) => {
      clearTimeout(welcomeTimer);
      if (this.stopped) return;
      const final = FINAL_CLOSES[ev.code];
      if (final) return this.end(final.state, final.message);
      const why = closedBy?.message ?? (ev.reason || `connection closed (code ${ev.code})`);
      if (!welcomed && ++this.failedJoins >= MAX_FAILED_JOINS) {
        return this.end('refused', `${MAX_FAILED_JOINS} connections in a row ended before a welcome (last: ${why}): is the token right, and the coordinator up?`);
      }
      this.retry(why);
    };
    socket.onerror = () => {
      // Always followed by onclose, which decides.
    };
  }

  /** `arrived`: when the task's frame came in (performance.now()), for the result's workerMs. */
  private async answer(task: TaskMessage, send: (m: WorkerMessage) => void, arrived: number): Promise<void> {
    try {
      const result = await this.session.run(task);
      if (task.kind === 'train') {
        this.status.trainTasks++;
        this.status.trainSamples += task.labels.length;
        this.status.tensorsAfterLastTrain = tf.memory().numTensors;
        this.status.tensorsAfterFirstTrain ??= this.status.tensorsAfterLastTrain;
      } else {
        this.status.evalSamples += task.labels.length;
      }
      this.status.lastComputeMs = result.computeMs;
      result.workerMs = performance.now() - arrived;
      send(result);
      this.opts.onUpdate?.(this.status);
    } catch (err) {
      const e = err as { code?: string; message?: string };
      send({ type: 'task_failed', taskId: task.taskId, code: e.code ?? 'DTRAIN_ERR_WORKER', message: (e.message ?? String(err)).slice(0, 2000) });
    }
  }

  private retry(why: string): void {
    const min = this.opts.reconnectMinMs ?? 250;
    const ceiling = Math.min(this.opts.reconnectMaxMs ?? 5000, min * 2 ** this.attempt++);
    const delay = Math.max(min, Math.floor(Math.random() * ceiling));
    this.update('waiting', `${why}; retrying in ${delay} ms`);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }
}
