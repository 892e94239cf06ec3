/**
 * The WebSocket transport, coordinator side. It runs on our own `http.Server` (ws's `noServer` +
 * `handleUpgrade` pattern) so that a peer is checked before it gets a WebSocket:
 *
 *  1. an address in cool-down (too many failed tokens or evictions, see admission.ts) gets 429;
 *  2. a full server (`maxWorkers` connections) gets 503;
 *  3. a missing or wrong token (`Authorization: Bearer <token>`, compared in constant time) gets 401.
 *
 * Only then is the upgrade completed, and the peer becomes a `Connection` (connection.ts), which
 * accepts a hello of at most HELLO_MAX_BYTES (enforced by ws on the frame header, before the body is
 * buffered) and then results up to the model's largest. Refusals are logged at most once per address
 * per LOG_INTERVAL_MS, with the count of the lines held back.
 *
 * The http.Server is exposed as `httpServer`, and one can be passed in (`opts.httpServer`): other
 * plain HTTP routes (a dashboard, /metrics) can be served on the same port. Only upgrade requests
 * are handled here; ordinary requests are left to whoever listens for 'request' (on a server made
 * here, they get 404).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { createHash, timingSafeEqual } from 'node:crypto';
import { listenOn } from './listen.ts';
import type { Logger } from '../common/logger.ts';
import type { NetLimits } from '../common/config.ts';
import { NET_DEFAULTS } from '../common/config.ts';
import type { ResultExpectations } from '../common/codec.ts';
import { CLOSE_CODES, type WelcomeMessage } from '../common/protocol.ts';
import type { Membership } from './membership.ts';
import { Connection, HELLO_MAX_BYTES, Stage } from './connection.ts';
import { ADMISSION_DEFAULTS, LogLimiter, StrikeCounter, type AdmissionOptions } from './admission.ts';

export { ADMISSION_DEFAULTS, type AdmissionOptions };
import { tokenFromProtocols, WORKER_PROTOCOL } from '../common/token-protocol.ts';

export { safeClose } from './connection.ts';

/** Refusal log lines per address, at most one per this interval. */
const LOG_INTERVAL_MS = 10_000;


export interface WsServerOptions {
  port: number;
  host?: string;
  token: string;
  welcome: Omit<WelcomeMessage, 'workerId'>;
  expect: Omit<ResultExpectations, 'taskCount'>;
  limits?: Partial<NetLimits>;
  admission?: Partial<AdmissionOptions>;
  /** Serve on this server instead of a new one (it must not be listening yet; it is listened on here). */
  httpServer?: Server;
  /** Called for every refused frame, handshake or upgrade (`frame_rejected`, `auth_failed`, `connection_refused`), for metrics. */
  onRejected?(event: string, code: string, joined: boolean): void;
  log: Logger;
}

/** Compares secrets in constant time, whatever their lengths. */
export function tokensMatch(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The token of an upgrade request: `Authorization: Bearer <token>`, or, from a browser (which
 * cannot set that header), the `dtrain.bearer.<base64url>` subprotocol (common/token-protocol.ts);
 * empty when absent.
 */
export function bearerToken(request: IncomingMessage): string {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return tokenFromProtocols(request.headers['sec-websocket-protocol']);
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : '';
}

const STATUS_TEXT: Record<number, string> = { 401: 'Unauthorized', 429: 'Too Many Requests', 503: 'Service Unavailable' };

/** Answers an upgrade request with a plain HTTP error and closes the TCP connection. */
function refuseUpgrade(socket: Duplex, status: number, message: string, retryAfterS?: number): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const headers = [`HTTP/1.1 ${status} ${STATUS_TEXT[status]}`, 'Connection: close', 'Content-Type: text/plain', `Content-Length: ${Buffer.byteLength(message)}`];
  if (retryAfterS !== undefined) headers.push(`Retry-After: ${retryAfterS}`);
  socket.end(`${headers.join('\r\n')}\r\n\r\n${message}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

export interface WsServer {
  port: number;
  /** The HTTP server the WebSockets run on; plain HTTP routes may be added to it. */
  httpServer: Server;
  /** Closes every connection: 4010 when training finished, 1001 (reconnect later) on shutdown. */
  close(why: 'finished' | 'shutdown'): Promise<void>;
}

export async function startWsServer(membership: Membership, opts: WsServerOptions): Promise<WsServer> {
  const limits: NetLimits = { ...NET_DEFAULTS, ...opts.limits };
  const admission: AdmissionOptions = { ...ADMISSION_DEFAULTS, ...opts.admission };
  const { log } = opts;
  // Workers only ever send results: no frame needs more than the gradients and statistics plus
  // slack, so a peer cannot make us buffer more (the configured limit still caps it).
  const largestResult = (opts.expect.gradientCount + opts.expect.statsCount) * 4 + 64 * 1024;
  const maxPayload = Math.min(limits.maxPayloadBytes, largestResult);
  // A browser that offers subprotocols must get one back: `dtrain`, never the one holding its token.
  const handleProtocols = (offered: Set<string>) => (offered.has(WORKER_PROTOCOL) ? WORKER_PROTOCOL : false);
  const wss = new WebSocketServer({ noServer: true, maxPayload, perMessageDeflate: false, handleProtocols });
  // Without HTTP routes (--no-http), a plain request is answered 404 at once instead of hanging.
  const server = opts.httpServer ?? createServer((_req, res) => res.writeHead(404, { 'Content-Type': 'text/plain' }).end('Only WebSocket upgrades are served on this port (HTTP routes are off: --no-http).\n'));
  // Slow or idle clients cannot hold sockets open before the upgrade for long, nor many of them.
  server.headersTimeout = Math.min(server.headersTimeout || limits.handshakeTimeoutMs, limits.handshakeTimeoutMs);
  server.requestTimeout = limits.handshakeTimeoutMs;
  server.maxConnections = admission.maxWorkers * 2 + 32;
  const authStrikes = new StrikeCounter(admission.authStrikes);
  const evictionStrikes = new StrikeCounter(admission.evictionStrikes);
  const refusalLog = new LogLimiter(LOG_INTERVAL_MS);
  const connections = new Set<Connection>();
  let nextId = 1;

  const refuse = (socket: Duplex, address: string, status: number, event: string, code: string, message: string, retryAfterMs?: number) => {
    opts.onRejected?.(event, code, false);
    const held = refusalLog.allow(`${event}:${address}`);
    if (held !== undefined) log.warn({ event, code, status, address, heldBack: held }, `refused ${address}: ${message}`);
    refuseUpgrade(socket, status, message, retryAfterMs === undefined ? undefined : Math.ceil(retryAfterMs / 1000));
  };

  // Once the run is over (close() called), nobody new is welcomed into it: a worker arriving in the
  // server's last moments is told to come back later (503), not joined and cut off.
  let closing = false;
  server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy()); // a reset before the upgrade completes is not ours to report
    const address = request.socket.remoteAddress ?? 'unknown';
    if (closing) return refuse(socket, address, 503, 'connection_refused', 'DTRAIN_ERR_CLOSING', 'The coordinator is stopping: this run takes no more workers.', 5000);
    const coolDown = Math.max(authStrikes.coolDownLeft(address), evictionStrikes.coolDownLeft(address));
    if (coolDown > 0) return refuse(socket, address, 429, 'connection_refused', 'DTRAIN_ERR_COOL_DOWN', `Too many failures from ${address}: try again in ${Math.ceil(coolDown / 1000)} s.`, coolDown);
    if (connections.size >= admission.maxWorkers) return refuse(socket, address, 503, 'connection_refused', 'DTRAIN_ERR_FULL', `The coordinator already has ${connections.size} workers (--max-workers ${admission.maxWorkers}).`, 5000);
    if (!tokensMatch(bearerToken(request), opts.token)) {
      const started = authStrikes.strike(address);
      return refuse(socket, address, 401, 'auth_failed', 'DTRAIN_ERR_AUTH', started ? `Wrong or missing token; ${address} is refused for ${admission.authStrikes.coolDownMs} ms.` : 'Wrong or missing token (expected Authorization: Bearer <token>).');
    }
    wss.handleUpgrade(request, socket, head, (ws) => accept(ws, address, request.socket.remotePort));
  });

  function accept(ws: WebSocket, address: string, port: number | undefined): void {
    limitFirstFrame(ws, HELLO_MAX_BYTES);
    const id = `w${nextId++}`;
    const conn = new Connection(id, address, ws, log.child({ workerId: id, remote: `${address}:${port}` }), {
      membership,
      welcome: opts.welcome,
      expect: opts.expect,
      limits,
      maxPayload,
      onHello: () => limitFirstFrame(ws, maxPayload),
      onRejected: opts.onRejected,
      onEnded: (c, ending) => {
        connections.delete(c);
        if (ending.kind === 'evicted' && evictionStrikes.strike(address)) {
          log.warn({ event: 'cool_down', address, ms: admission.evictionStrikes.coolDownMs, strikes: admission.evictionStrikes.maxStrikes }, `${address} was evicted ${admission.evictionStrikes.maxStrikes} times: refused for ${admission.evictionStrikes.coolDownMs} ms`);
        }
      },
    });
    connections.add(conn);
  }

  const port = await listenOn(server, opts.port, opts.host);
  log.info({ event: 'listening', port, host: opts.host ?? '0.0.0.0' }, `coordinator listening on port ${port}`);
  return {
    port,
    httpServer: server,
    close: (why) =>
      new Promise<void>((resolve) => {
        closing = true;
        for (const c of connections) {
          if (why === 'finished') c.close(CLOSE_CODES.finished, 'training finished');
          else c.close(CLOSE_CODES.goingAway, 'coordinator shutting down');
        }
        // Give workers a moment to read the close frame before the server goes.
        setTimeout(() => {
          for (const c of connections) if (c.stage !== Stage.CLOSED) c.terminate('server closing');
          for (const ws of wss.clients) ws.terminate();
          server.closeAllConnections();
          wss.close();
          server.close(() => resolve());
        }, 300).unref();
      }),
  };
}

/**
 * Sets the largest frame ws will accept on this socket. ws takes `maxPayload` per server, so the
 * hello's smaller limit is set on the socket's receiver (ws 8 keeps it in `_receiver._maxPayload`
 * and compares it with each frame header's declared length before buffering the body). If that
 * private field ever moves, the hello is still refused after decoding (connection.ts).
 */
function limitFirstFrame(ws: WebSocket, bytes: number): void {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (receiver && typeof receiver._maxPayload === 'number') receiver._maxPayload = bytes;
}
