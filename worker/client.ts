/**
 * The WebSocket worker: connects to the coordinator (the token in the HTTP upgrade, as
 * `Authorization: Bearer`), says hello, builds the model it is told to, and answers tasks from a
 * compute thread (so heartbeats are answered while it computes). When the coordinator goes away it
 * reconnects with exponential backoff and jitter. It exits 0 when the coordinator says training is
 * finished, and 1 (so a supervisor notices) when it is refused (wrong token or version), when its
 * compute thread dies or hangs, when the same error ends `maxSameFailures` connections in a row, or
 * when it has not reached the coordinator for `giveUpAfterMs`.
 */
import WebSocket from 'ws';
import { hostname } from 'node:os';
import type { Logger } from '../common/logger.ts';
import { NET_DEFAULTS, type NetLimits } from '../common/config.ts';
import { decodeCoordinatorMessage, encode, FrameError, resultForWire, type TaskWire } from '../common/codec.ts';
import type { WireDtype } from '../common/wire-dtype.ts';
import type { LocalData } from './local-data.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type WorkerMessage } from '../common/protocol.ts';
import { Heartbeat } from '../common/heartbeat.ts';
import { withTimeout } from '../common/timeout.ts';
import { describeSelection, type BackendChoice } from '../common/backend.ts';
import { ComputeThread } from './compute-thread.ts';
import { InlineCompute, type WorkerCompute } from './inline-compute.ts';
import { BnRelay } from './bn-relay.ts';
import { FrameEncoder } from '../common/frame-encoder.ts';
import { gcMode, warnGcMode } from '../common/gc-mode.ts';
import { keepFreedMemory } from '../common/freed-memory.ts';

/** Result frames, gradients included, in buffers reused once ws has sent them (ws masks a copy at once). */
const resultFrames = new FrameEncoder(2);

export interface WorkerClientOptions {
  url: string;
  token: string;
  backend: BackendChoice;
  name?: string;
  limits?: Partial<NetLimits>;
  log: Logger;
  signal?: AbortSignal;
  /** Exit 1 after this long without reaching the coordinator (0: never). Default 0. */
  giveUpAfterMs?: number;
  /** Exit 1 when the same error ends this many connections in a row. Default 3. */
  maxSameFailures?: number;
  /** Ask for this wire dtype (--wire-dtype); absent: whatever the coordinator uses. */
  wireDtype?: WireDtype;
  /** Our own copy of the dataset (--data-dir): tasks then carry indices instead of pixels. */
  localData?: LocalData;
  /** Compute every task in a thread of its own (--compute-thread); default: on the socket's thread where it can (worker/inline-compute.ts). */
  computeThread?: boolean;
}

/** The worker's compute: on its main thread (InlineCompute, which moves what must to a thread), or always in a thread. */
function startCompute(opts: WorkerClientOptions): WorkerCompute {
  if (opts.computeThread) return new ComputeThread(opts.backend);
  const inline = new InlineCompute(opts.backend);
  inline.onMoved = (reason) => opts.log.info({ event: 'compute_moved', to: 'thread', reason }, `computing in a thread of its own from now on: ${reason}`);
  inline.onMoveFailed = (reason) => opts.log.warn({ event: 'compute_move_failed', reason }, `could not start a compute thread (${reason}); computing on the socket's thread`);
  return inline;
}

export type WorkerExit = { code: 0; reason: string } | { code: 1; reason: string };

/** One connection's end: `errorCode` names a failure on our side or the coordinator's refusal. */
interface ConnectionOutcome {
  final: boolean;
  exit: WorkerExit;
  errorCode?: string;
  /** True once the coordinator welcomed us on this connection. */
  reached: boolean;
}

/** Counts consecutive connections ended by the same error, and time since the coordinator was last reached. */
export class GiveUp {
  private lastCode: string | undefined;
  private repeats = 0;
  private lastReached: number;

  constructor(private readonly maxSame: number, private readonly giveUpAfterMs: number, private readonly now: () => number = Date.now) {
    this.lastReached = now();
  }

  /** Returns why to give up, or undefined to try again. */
  record(outcome: { errorCode?: string; reached: boolean }): string | undefined {
    if (outcome.reached) this.lastReached = this.now();
    if (outcome.errorCode === undefined) {
      this.lastCode = undefined;
      this.repeats = 0;
    } else {
      this.repeats = outcome.errorCode === this.lastCode ? this.repeats + 1 : 1;
      this.lastCode = outcome.errorCode;
      if (this.repeats >= this.maxSame) return `the same error (${outcome.errorCode}) ended ${this.repeats} connections in a row`;
    }
    const unreachedMs = this.now() - this.lastReached;
    if (this.giveUpAfterMs > 0 && unreachedMs >= this.giveUpAfterMs) return `could not reach the coordinator for ${Math.round(unreachedMs / 1000)} s (--give-up-after ${this.giveUpAfterMs} ms)`;
    return undefined;
  }
}

/** Exponential backoff with full jitter, capped. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** attempt);
  return Math.max(minMs, Math.floor(random() * ceiling));
}

export async function runWorker(opts: WorkerClientOptions): Promise<WorkerExit> {
  const limits = { ...NET_DEFAULTS, ...opts.limits };
  const { log } = opts;
  // Before the thread starts allocating: mallopt is process-wide.
  const malloc = keepFreedMemory();
  const compute = startCompute(opts);
  // Each result is encoded into its frame as soon as it arrives (below), before the next task goes to the thread.
  compute.resultsReadAtOnce = true;
  // A dead compute thread cannot come back: leave with an error, so a supervisor restarts us.
  let computeLost: string | undefined;
  let dropConnection: () => void = () => {};
  compute.onLost = (reason) => {
    computeLost = reason;
    log.error({ event: 'compute_lost', reason }, `compute thread lost: ${reason}`);
    dropConnection();
  };
  compute.onBackendFallback = (m) => log.warn({ event: 'backend_fallback', from: m.from, backend: m.selection.name, source: m.selection.source, reason: m.reason }, `${m.from} failed its first step (${m.reason}); training goes on with ${m.selection.name}`);
  try {
    const selection = await withTimeout(compute.started(), limits.readyTimeoutMs, 'loading the compute backend', 'DTRAIN_ERR_THREAD_START');
    // The give-up clock starts with the first connection attempt, not before the thread's start (seconds on a loaded host).
    const giveUp = new GiveUp(opts.maxSameFailures ?? 3, opts.giveUpAfterMs ?? 0);
    log.info({ event: 'backend_selected', backend: selection.name, source: selection.source, skipped: selection.skipped, adapter: selection.adapter, kernels: selection.kernels, ...gcMode(), ...malloc }, `backend: ${describeSelection(selection)}${selection.kernels ? `, kernels: ${selection.kernels.set}` : ''}`);
    warnGcMode(log);
    let attempt = 0;
    for (;;) {
      if (opts.signal?.aborted) return { code: 0, reason: 'stopped by signal' };
      if (computeLost) return { code: 1, reason: `compute thread lost: ${computeLost}` };
      const outcome = await connectOnce(opts, limits, compute, () => (attempt = 0), (drop) => (dropConnection = drop));
      if (computeLost) return { code: 1, reason: `compute thread lost: ${computeLost}` };
      if (outcome.final) return outcome.exit;
      const why = giveUp.record(outcome);
      if (why) {
        log.error({ event: 'giving_up', reason: why, lastError: outcome.exit.reason }, `giving up: ${why}`);
        return { code: 1, reason: why };
      }
      const delay = backoffDelay(attempt++, limits.reconnectMinMs, limits.reconnectMaxMs);
      log.info({ event: 'reconnecting', inMs: delay, attempt, reason: outcome.exit.reason }, `coordinator unavailable (${outcome.exit.reason}); retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  } catch (err) {
    const e = err as { code?: string; message?: string };
    log.error({ event: 'worker_failed', code: e.code, reason: e.message }, `worker failed: ${e.message}`);
    return { code: 1, reason: e.message ?? String(err) };
  } finally {
    await compute.terminate();
  }
}

function connectOnce(
  opts: WorkerClientOptions,
  limits: NetLimits,
  compute: WorkerCompute,
  onJoined: () => void,
  exposeDrop: (drop: () => void) => void,
): Promise<ConnectionOutcome> {
  const { log } = opts;
  return new Promise((resolve) => {
    const socket = new WebSocket(opts.url, {
      maxPayload: limits.maxPayloadBytes,
      perMessageDeflate: false,
      handshakeTimeout: limits.handshakeTimeoutMs,
      headers: { authorization: `Bearer ${opts.token}` },
    });
    let weightCount: number | undefined;
    let wire: TaskWire | undefined;
    let settled = false;
    let reached = false;
    /** Our own reason for ending the connection, if it was ours. */
    let failure: { code: string; message: string } | undefined;
    let httpStatus: number | undefined;
    let socketError: string | undefined;
    const send = (m: WorkerMessage) => {
      if (socket.readyState !== socket.OPEN) return;
      const frame = resultFrames.encode(m);
      socket.send(frame.bytes, { binary: true }, () => frame.release());
    };
    // Synchronized BatchNorm: the compute thread's sums go to the coordinator, its totals come back.
    const relay = new BnRelay((m) => {
      if (socket.readyState !== socket.OPEN) return false;
      socket.send(encode(m), { binary: true });
      return true;
    });
    compute.onBnSums = (m) => relay.request(m);
    const heartbeat = new Heartbeat({ ping: () => socket.ping(), onPong: (cb) => socket.on('pong', cb), terminate: () => socket.terminate() }, limits.heartbeatIntervalMs * 2);
    let welcomeTimer: NodeJS.Timeout | undefined;
    const finish = (final: boolean, exit: WorkerExit, errorCode = failure?.code) => {
      if (settled) return;
      settled = true;
      heartbeat.stop();
      clearTimeout(welcomeTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      relay.abortAll('connection closed');
      compute.abandon('connection closed');
      resolve({ final, exit, errorCode, reached });
    };
    const fail = (code: string, message: string, closeCode: number) => {
      failure = { code, message };
      log.error({ event: 'connection_failed', code, reason: message }, message);
      socket.close(closeCode, code);
      setTimeout(() => socket.terminate(), 1000).unref();
    };
    const onAbort = () => {
      socket.close(CLOSE_CODES.goingAway, 'worker shutting down');
      finish(true, { code: 0, reason: 'stopped by signal' });
    };
    opts.signal?.addEventListener('abort', onAbort);
    exposeDrop(() => socket.terminate());

    socket.on('open', () => {
      const hello: WorkerMessage = { type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: opts.name ?? hostname() };
      hello.wireDtype = opts.wireDtype ?? 'auto';
      if (opts.localData) hello.dataset = opts.localData.fingerprint;
      send(hello);
      heartbeat.start();
      welcomeTimer = setTimeout(() => fail('DTRAIN_ERR_WELCOME_TIMEOUT', `Expected a welcome within ${limits.handshakeTimeoutMs} ms of the hello, but got none.`, CLOSE_CODES.handshakeTimeout), limits.handshakeTimeoutMs);
      welcomeTimer.unref();
    });
    socket.on('message', async (data: Buffer, isBinary: boolean) => {
      const arrived = performance.now();
      try {
        if (!isBinary) throw new FrameError('DTRAIN_ERR_FRAME_SHAPE', 'Expected a binary frame from the coordinator, but got text.');
        const msg = decodeCoordinatorMessage(data, weightCount, wire);
        if (msg.type === 'welcome') {
          clearTimeout(welcomeTimer);
          reached = true;
          if (msg.protocolVersion !== PROTOCOL_VERSION) throw new FrameError('DTRAIN_ERR_VERSION', `Expected protocol ${PROTOCOL_VERSION}, coordinator speaks ${msg.protocolVersion}.`, CLOSE_CODES.version);
          weightCount = msg.weightCount;
          wire = { dtype: msg.wireDtype ?? 'float32', trainableCount: msg.trainableCount ?? msg.weightCount };
          if (msg.localData) opts.localData?.use(msg.localData);
          // A compute thread that never finishes building the model is hung: a supervisor must restart us.
          const backend = await withTimeout(compute.welcome(msg), limits.readyTimeoutMs, 'building the model', 'DTRAIN_ERR_READY_TIMEOUT');
          onJoined();
          const computesOn = compute instanceof InlineCompute ? compute.runsOn : 'thread';
          log.info({ event: 'joined', workerId: msg.workerId, model: msg.model, backend, wireDtype: wire.dtype, localData: msg.localData !== undefined, compute: computesOn }, `joined as ${msg.workerId}, training ${msg.model} (${wire.dtype} on the wire, ${msg.localData ? 'indices' : 'pixels'} in tasks, computing ${computesOn === 'inline' ? 'on the socket\'s thread' : 'in a thread of its own'})`);
          send({ type: 'ready', backend });
        } else if (msg.type === 'task') {
          try {
            const task = opts.localData ? opts.localData.resolve(msg) : msg;
            const result = await compute.run(task);
            // The coordinator splits its round trip into this worker's time and the frames' (ResultMessage.workerMs).
            result.workerMs = performance.now() - arrived;
            send(resultForWire(result, wire?.dtype ?? 'float32'));
          } catch (err) {
            const e = err as { code?: string; message?: string };
            if (!settled) send({ type: 'task_failed', taskId: msg.taskId, code: e.code ?? 'DTRAIN_ERR_WORKER', message: e.message ?? String(err) });
          }
        } else if (msg.type === 'bn_totals') {
          relay.deliver(msg);
        } else if (msg.type === 'shutdown') {
          log.info({ event: 'shutdown', reason: msg.reason }, `coordinator says: ${msg.reason}`);
          socket.close(CLOSE_CODES.normal, 'bye');
          finish(true, { code: 0, reason: msg.reason });
        }
      } catch (err) {
        const e = err as FrameError;
        if (e.code === 'DTRAIN_ERR_READY_TIMEOUT') {
          socket.terminate();
          finish(true, { code: 1, reason: `compute thread hung: ${e.message}` });
          return;
        }
        fail(e.code ?? 'DTRAIN_ERR_WORKER', `bad frame from coordinator: ${e.message}`, e.closeCode ?? CLOSE_CODES.badFrame);
      }
    });
    socket.on('close', (code, reasonBuf) => {
      // With no reason from the coordinator, what the socket saw says most: "connect ECONNREFUSED 127.0.0.1:8787".
      const reason = reasonBuf.toString() || (httpStatus ? `HTTP ${httpStatus}` : (socketError ?? `close code ${code}`));
      if (code === CLOSE_CODES.finished) {
        log.info({ event: 'finished', code }, 'coordinator finished training');
        finish(true, { code: 0, reason });
      } else if (code === CLOSE_CODES.dataset) {
        log.error({ event: 'dataset_mismatch', code, reason }, 'the coordinator trains on other data than our --data-dir holds: use the same files, or drop --data-dir');
        finish(true, { code: 1, reason });
      } else if (code === CLOSE_CODES.auth || code === CLOSE_CODES.version || httpStatus === 401) {
        log.error({ event: 'auth_failed', code: httpStatus ?? code, reason }, code === CLOSE_CODES.version ? 'the coordinator speaks another protocol version: use the same dtrain version' : 'the coordinator refused our token: check --token-file / DTRAIN_TOKEN');
        finish(true, { code: 1, reason });
      } else {
        // Our own failures, and the coordinator calling our frames bad, repeat the same way each time;
        // a refusal (429 cool-down, 503 full) or an eviction may not, and counts only toward --give-up-after.
        finish(false, { code: 1, reason }, failure?.code ?? (code === CLOSE_CODES.badFrame ? `CLOSE_${code}` : undefined));
      }
    });
    socket.on('error', (err) => {
      // ws reports a refused upgrade as "Unexpected server response: <status>".
      const status = /Unexpected server response: (\d+)/.exec(err.message);
      if (status) httpStatus = Number(status[1]);
      socketError = err.message;
      log.debug({ event: 'socket_error', err: err.message }, 'socket error');
    });
  });
}
