/**
 * The WebSocket transport, coordinator side. A connection must say hello (protocol version and
 * token) within the handshake timeout; it is then welcomed, and joins the membership once its model
 * is built. Every frame goes through the codec; a bad frame is logged with its stable code, the
 * connection is closed with the matching close code, and training goes on without it.
 */
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { Server as HttpServer } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../common/logger.ts';
import type { NetLimits } from '../common/config.ts';
import { NET_DEFAULTS } from '../common/config.ts';
import { decodeWorkerMessage, encode, FrameError, FRAME_ERRORS, type ResultExpectations } from '../common/codec.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type ResultMessage, type TaskMessage, type WelcomeMessage, type WorkerMessage } from '../common/protocol.ts';
import { Heartbeat } from '../common/heartbeat.ts';
import { WorkerLostError } from '../worker/compute-thread.ts';
import type { Membership, WorkerHandle } from './membership.ts';

const HELLO_MAX_BYTES = 8 * 1024;

export interface WsServerOptions {
  port: number;
  host?: string;
  token: string;
  welcome: Omit<WelcomeMessage, 'workerId'>;
  expect: Omit<ResultExpectations, 'taskCount'>;
  limits?: Partial<NetLimits>;
  log: Logger;
  /** Serve the WebSocket on this HTTP server (which also answers GET routes, coordinator/http/); it is listened on here. */
  httpServer?: HttpServer;
  /** Called for every refused frame or handshake (`frame_rejected`, `auth_failed`), for metrics. */
  onRejected?(event: string, code: string, joined: boolean): void;
}

/** Compares secrets in constant time, whatever their lengths. */
export function tokensMatch(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** A close reason must be at most 123 bytes of UTF-8: keep it ASCII and short, and never throw. */
export function safeClose(socket: WebSocket, code: number, reason: string): void {
  if (socket.readyState !== socket.OPEN && socket.readyState !== socket.CONNECTING) return;
  try {
    socket.close(code, reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 120));
  } catch {
    socket.terminate();
  }
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

class SocketWorker implements WorkerHandle {
  weightsVersion = -1;
  backend = 'unknown';
  private readonly pending = new Map<number, { count: number; kind: TaskMessage['kind']; resolve(r: ResultMessage): void; reject(e: Error): void }>();

  constructor(readonly id: string, readonly name: string, private readonly socket: WebSocket, private readonly statsCount: number) {}

  run(task: TaskMessage): Promise<ResultMessage> {
    return new Promise((resolve, reject) => {
      this.pending.set(task.taskId, { count: task.labels.length, kind: task.kind, resolve, reject });
      this.socket.send(encode(task), { binary: true }, (err) => {
        if (err) this.fail(task.taskId, new WorkerLostError(`send to ${this.id} failed: ${err.message}`));
      });
    });
  }

  /** Routes a decoded result; a result for no pending task, or of the wrong size, is a bad frame. */
  settle(msg: ResultMessage | Extract<WorkerMessage, { type: 'task_failed' }>): void {
    const p = this.pending.get(msg.taskId);
    if (!p) throw new FrameError(FRAME_ERRORS.unexpected, `Expected a result for a pending task, but got one for task ${msg.taskId}.`);
    if (msg.type === 'task_failed') {
      this.fail(msg.taskId, new WorkerLostError(`task ${msg.taskId} failed on ${this.id}: ${msg.code}: ${msg.message}`));
      return;
    }
    if (msg.count !== p.count) throw new FrameError(FRAME_ERRORS.tensorLength, `Expected a result for ${p.count} samples, but got ${msg.count}.`);
    // The codec checked the sizes of what is there; what must be there depends on the task.
    if (p.kind === 'train' && !msg.gradients) throw new FrameError(FRAME_ERRORS.shape, `Expected gradients in the result of train task ${msg.taskId}, but got none.`);
    if (p.kind === 'train' && this.statsCount > 0 && !msg.stats) throw new FrameError(FRAME_ERRORS.shape, `Expected BatchNorm statistics in the result of train task ${msg.taskId}, but got none.`);
    if (p.kind === 'eval' && !msg.predictions) throw new FrameError(FRAME_ERRORS.shape, `Expected predictions in the result of eval task ${msg.taskId}, but got none.`);
    this.pending.delete(msg.taskId);
    p.resolve(msg);
  }

  private fail(taskId: number, err: Error): void {
    const p = this.pending.get(taskId);
    this.pending.delete(taskId);
    p?.reject(err);
  }

  /** Called when the socket is gone, whatever the reason. */
  drop(reason: string): void {
    for (const p of this.pending.values()) p.reject(new WorkerLostError(`${this.id}: ${reason}`));
    this.pending.clear();
  }

  close(code: number, reason: string): void {
    this.drop(reason);
    safeClose(this.socket, code, reason);
    // A peer that does not complete the closing handshake is cut off.
    setTimeout(() => this.socket.terminate(), 1000).unref();
  }
}

export interface WsServer {
  port: number;
  /** Closes every connection: 4010 when training finished, 1001 (reconnect later) on shutdown. */
  close(why: 'finished' | 'shutdown'): Promise<void>;
}

export async function startWsServer(membership: Membership, opts: WsServerOptions): Promise<WsServer> {
  const limits = { ...NET_DEFAULTS, ...opts.limits };
  const { log } = opts;
  // Workers only ever send results: no frame needs more than the gradients and statistics plus
  // slack, so a peer cannot make us buffer more (the configured limit still caps it).
  const largestResult = (opts.expect.gradientCount + opts.expect.statsCount) * 4 + 64 * 1024;
  const maxPayload = Math.min(limits.maxPayloadBytes, largestResult);
  const wss = opts.httpServer
    ? new WebSocketServer({ server: opts.httpServer, maxPayload, perMessageDeflate: false })
    : new WebSocketServer({ port: opts.port, host: opts.host, maxPayload, perMessageDeflate: false });
  opts.httpServer?.listen(opts.port, opts.host);
  let nextId = 1;

  wss.on('connection', (socket, request) => {
    const remote = `${request.socket.remoteAddress}:${request.socket.remotePort}`;
    const id = `w${nextId++}`;
    const conn = log.child({ workerId: id, remote });
    let handle: SocketWorker | undefined;
    let stage: 'hello' | 'building' | 'joined' | 'closed' = 'hello';
    const heartbeat = new Heartbeat(
      { ping: () => socket.ping(), onPong: (cb) => socket.on('pong', cb), terminate: (reason) => reject(new FrameError('DTRAIN_ERR_HEARTBEAT', reason, CLOSE_CODES.evicted), 'worker_evicted') },
      limits.heartbeatIntervalMs,
    );
    const handshakeTimer = setTimeout(() => reject(new FrameError('DTRAIN_ERR_HANDSHAKE_TIMEOUT', `Expected a hello within ${limits.handshakeTimeoutMs} ms, but got none.`, CLOSE_CODES.handshakeTimeout), 'frame_rejected'), limits.handshakeTimeoutMs);
    handshakeTimer.unref();

    function reject(err: FrameError, event: string): void {
      if (stage === 'closed') return;
      const wasJoined = stage === 'joined';
      // An eviction of a joined worker is logged once, by the membership.
      if (event !== 'worker_evicted') opts.onRejected?.(event, err.code, wasJoined);
      if (!(wasJoined && event === 'worker_evicted')) conn.warn({ event, code: err.code, closeCode: err.closeCode, reason: err.message }, `${id}: ${err.message}`);
      stage = 'closed';
      clearTimeout(handshakeTimer);
      heartbeat.stop();
      if (wasJoined) membership.leave(id, 'evicted', `${err.code}: ${err.message}`);
      handle?.drop(err.message);
      safeClose(socket, err.closeCode, err.code);
      setTimeout(() => socket.terminate(), 1000).unref();
    }

    socket.on('message', (data, isBinary) => {
      if (stage === 'closed') return;
      try {
        if (!isBinary) throw new FrameError(FRAME_ERRORS.shape, 'Expected a binary frame, but got a text frame.');
        const bytes = toBytes(data);
        // A hello is a few hundred bytes: refuse anything larger before decoding it.
        if (stage === 'hello' && bytes.byteLength > HELLO_MAX_BYTES) throw new FrameError(FRAME_ERRORS.tooLarge, `Expected a hello of at most ${HELLO_MAX_BYTES} bytes, but got ${bytes.byteLength}.`, CLOSE_CODES.tooLarge);
        const msg = decodeWorkerMessage(bytes, opts.expect);
        if (stage === 'hello') {
          if (msg.type !== 'hello') throw new FrameError(FRAME_ERRORS.unexpected, `Expected a hello first, but got ${msg.type}.`);
          clearTimeout(handshakeTimer);
          if (msg.protocolVersion !== PROTOCOL_VERSION) {
            reject(new FrameError('DTRAIN_ERR_VERSION', `Expected protocol version ${PROTOCOL_VERSION}, but the worker speaks ${msg.protocolVersion}.`, CLOSE_CODES.version), 'auth_failed');
            return;
          }
          if (!tokensMatch(msg.token, opts.token)) {
            reject(new FrameError('DTRAIN_ERR_AUTH', 'The worker sent a wrong token.', CLOSE_CODES.auth), 'auth_failed');
            return;
          }
          stage = 'building';
          handle = new SocketWorker(id, msg.workerName, socket, opts.expect.statsCount);
          const welcome: WelcomeMessage = { ...opts.welcome, workerId: id };
          socket.send(encode(welcome), { binary: true });
          heartbeat.start();
          return;
        }
        if (stage === 'building') {
          if (msg.type !== 'ready') throw new FrameError(FRAME_ERRORS.unexpected, `Expected ready after welcome, but got ${msg.type}.`);
          handle!.backend = msg.backend;
          stage = 'joined';
          membership.join(handle!);
          return;
        }
        if (msg.type === 'result' || msg.type === 'task_failed') handle!.settle(msg);
        else throw new FrameError(FRAME_ERRORS.unexpected, `Expected a result, but got ${msg.type}.`);
      } catch (err) {
        if (err instanceof FrameError) reject(err, 'frame_rejected');
        else reject(new FrameError('DTRAIN_ERR_INTERNAL', (err as Error).message), 'frame_rejected');
      }
    });

    socket.on('error', (err: Error & { code?: string }) => {
      const tooLarge = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      reject(new FrameError(tooLarge ? FRAME_ERRORS.tooLarge : 'DTRAIN_ERR_SOCKET', `${err.message}${tooLarge ? ` (limit ${maxPayload} bytes)` : ''}`, tooLarge ? CLOSE_CODES.tooLarge : CLOSE_CODES.badFrame), 'frame_rejected');
    });

    socket.on('close', (code, reason) => {
      clearTimeout(handshakeTimer);
      heartbeat.stop();
      if (stage === 'closed') return;
      const wasJoined = stage === 'joined';
      stage = 'closed';
      handle?.drop(`connection closed (${code})`);
      if (wasJoined) membership.leave(id, 'left', `connection closed with code ${code}${reason.length ? `: ${reason.toString()}` : ''}`);
    });
  });

  await new Promise<void>((resolve, reject) => {
    wss.once('listening', resolve);
    wss.once('error', reject);
  });
  const port = (wss.address() as AddressInfo).port;
  log.info({ event: 'listening', port, host: opts.host ?? '0.0.0.0' }, `coordinator listening on port ${port}`);
  return {
    port,
    close: (why) =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) {
          if (why === 'finished') client.close(CLOSE_CODES.finished, 'training finished');
          else client.close(CLOSE_CODES.goingAway, 'coordinator shutting down');
        }
        // Give workers a moment to read the close frame before the server goes.
        setTimeout(() => {
          for (const client of wss.clients) client.terminate();
          wss.close(() => resolve());
        }, 300).unref();
      }),
  };
}
