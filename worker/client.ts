/**
 * The WebSocket worker: connects to the coordinator, says hello, builds the model it is told to,
 * and answers tasks from a compute thread (so heartbeats are answered while it computes). When
 * the coordinator goes away it reconnects with exponential backoff and jitter; it exits 0 when the
 * coordinator says training is finished, and 1 when it is refused (wrong token or version).
 */
import WebSocket from 'ws';
import { hostname } from 'node:os';
import type { Logger } from '../common/logger.ts';
import { NET_DEFAULTS, type NetLimits } from '../common/config.ts';
import { decodeCoordinatorMessage, encode, FrameError } from '../common/codec.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type WorkerMessage } from '../common/protocol.ts';
import { Heartbeat } from '../common/heartbeat.ts';
import type { BackendChoice } from '../common/backend.ts';
import { ComputeThread } from './compute-thread.ts';

export interface WorkerClientOptions {
  url: string;
  token: string;
  backend: BackendChoice;
  name?: string;
  limits?: Partial<NetLimits>;
  log: Logger;
  signal?: AbortSignal;
}

export type WorkerExit = { code: 0; reason: string } | { code: 1; reason: string };

/** Exponential backoff with full jitter, capped. */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, minMs * 2 ** attempt);
  return Math.max(minMs, Math.floor(random() * ceiling));
}

export async function runWorker(opts: WorkerClientOptions): Promise<WorkerExit> {
  const limits = { ...NET_DEFAULTS, ...opts.limits };
  const { log } = opts;
  const compute = new ComputeThread(opts.backend);
  // A dead compute thread cannot come back: leave with an error, so a supervisor restarts us.
  let computeLost: string | undefined;
  let dropConnection: () => void = () => {};
  compute.onLost = (reason) => {
    computeLost = reason;
    log.error({ event: 'compute_lost', reason }, `compute thread lost: ${reason}`);
    dropConnection();
  };
  const selection = await compute.started();
  log.info({ event: 'backend_selected', backend: selection.name, source: selection.source, skipped: selection.skipped }, `backend: ${selection.name}`);
  let attempt = 0;
  try {
    for (;;) {
      if (opts.signal?.aborted) return { code: 0, reason: 'stopped by signal' };
      if (computeLost) return { code: 1, reason: `compute thread lost: ${computeLost}` };
      const outcome = await connectOnce(opts, limits, compute, () => (attempt = 0), (drop) => (dropConnection = drop));
      if (computeLost) return { code: 1, reason: `compute thread lost: ${computeLost}` };
      if (outcome.final) return outcome.exit;
      const delay = backoffDelay(attempt++, limits.reconnectMinMs, limits.reconnectMaxMs);
      log.info({ event: 'reconnecting', inMs: delay, attempt, reason: outcome.exit.reason }, `coordinator unavailable (${outcome.exit.reason}); retrying in ${delay} ms`);
      await new Promise((r) => setTimeout(r, delay));
    }
  } finally {
    await compute.terminate();
  }
}

function connectOnce(
  opts: WorkerClientOptions,
  limits: NetLimits,
  compute: ComputeThread,
  onJoined: () => void,
  exposeDrop: (drop: () => void) => void,
): Promise<{ final: boolean; exit: WorkerExit }> {
  const { log } = opts;
  return new Promise((resolve) => {
    const socket = new WebSocket(opts.url, { maxPayload: limits.maxPayloadBytes, perMessageDeflate: false, handshakeTimeout: limits.handshakeTimeoutMs });
    let weightCount: number | undefined;
    let settled = false;
    const send = (m: WorkerMessage) => socket.readyState === socket.OPEN && socket.send(encode(m), { binary: true });
    const heartbeat = new Heartbeat({ ping: () => socket.ping(), onPong: (cb) => socket.on('pong', cb), terminate: () => socket.terminate() }, limits.heartbeatIntervalMs * 2);
    const finish = (final: boolean, exit: WorkerExit) => {
      if (settled) return;
      settled = true;
      heartbeat.stop();
      opts.signal?.removeEventListener('abort', onAbort);
      compute.abandon('connection closed');
      resolve({ final, exit });
    };
    const onAbort = () => {
      socket.close(CLOSE_CODES.goingAway, 'worker shutting down');
      finish(true, { code: 0, reason: 'stopped by signal' });
    };
    opts.signal?.addEventListener('abort', onAbort);
    exposeDrop(() => socket.terminate());

    socket.on('open', () => {
      send({ type: 'hello', protocolVersion: PROTOCOL_VERSION, token: opts.token, workerName: opts.name ?? hostname() });
      heartbeat.start();
    });
    socket.on('message', async (data: Buffer, isBinary: boolean) => {
      try {
        if (!isBinary) throw new FrameError('DTRAIN_ERR_FRAME_SHAPE', 'Expected a binary frame from the coordinator, but got text.');
        const msg = decodeCoordinatorMessage(data, weightCount);
        if (msg.type === 'welcome') {
          if (msg.protocolVersion !== PROTOCOL_VERSION) throw new FrameError('DTRAIN_ERR_VERSION', `Expected protocol ${PROTOCOL_VERSION}, coordinator speaks ${msg.protocolVersion}.`, CLOSE_CODES.version);
          weightCount = msg.weightCount;
          const backend = await compute.welcome(msg);
          onJoined();
          log.info({ event: 'joined', workerId: msg.workerId, model: msg.model, backend }, `joined as ${msg.workerId}, training ${msg.model}`);
          send({ type: 'ready', backend });
        } else if (msg.type === 'task') {
          try {
            send(await compute.run(msg));
          } catch (err) {
            const e = err as { code?: string; message?: string };
            if (!settled) send({ type: 'task_failed', taskId: msg.taskId, code: e.code ?? 'DTRAIN_ERR_WORKER', message: e.message ?? String(err) });
          }
        } else if (msg.type === 'shutdown') {
          log.info({ event: 'shutdown', reason: msg.reason }, `coordinator says: ${msg.reason}`);
          socket.close(CLOSE_CODES.normal, 'bye');
          finish(true, { code: 0, reason: msg.reason });
        }
      } catch (err) {
        const e = err as FrameError;
        log.error({ event: 'frame_rejected', code: e.code, reason: e.message }, `bad frame from coordinator: ${e.message}`);
        socket.close(e.closeCode ?? CLOSE_CODES.badFrame, e.code ?? 'error');
      }
    });
    socket.on('close', (code, reasonBuf) => {
      const reason = reasonBuf.toString() || `close code ${code}`;
      if (code === CLOSE_CODES.finished) {
        log.info({ event: 'finished', code }, 'coordinator finished training');
        finish(true, { code: 0, reason });
      } else if (code === CLOSE_CODES.auth || code === CLOSE_CODES.version) {
        log.error({ event: 'auth_failed', code, reason }, code === CLOSE_CODES.auth ? 'the coordinator refused our token: check --token-file / DTRAIN_TOKEN' : 'the coordinator speaks another protocol version: use the same dtrain version');
        finish(true, { code: 1, reason });
      } else {
        finish(false, { code: 1, reason });
      }
    });
    socket.on('error', (err) => {
      log.debug({ event: 'socket_error', err: err.message }, 'socket error');
    });
  });
}
