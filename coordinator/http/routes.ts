/**
 * The coordinator's HTTP routes: a small table from exact paths to handlers, consulted for every
 * plain (non-upgrade) request on the coordinator's port. Routes are read-only: only GET and HEAD
 * reach a handler; anything else is answered 405, and an unknown path 404, both as JSON.
 *
 * Adding a route is one line wherever the table is built (see `standardRoutes` in ./index.ts):
 *
 *     routes.register('/worker', (req, res) => sendFile(res, WORKER_PAGE, 'text/html; charset=utf-8'));
 *
 * A handler must never put a secret (the auth token) in what it sends: these routes need no token.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../../common/logger.ts';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

export class RouteTable {
  private readonly routes = new Map<string, RouteHandler>();

  /** Registers `handler` for GET and HEAD on exactly `path` (no trailing-slash or prefix matching). */
  register(path: string, handler: RouteHandler): this {
    if (!path.startsWith('/')) throw new TypeError(`A route path must start with "/", got "${path}".`);
    if (this.routes.has(path)) throw new TypeError(`The route ${path} is already registered.`);
    this.routes.set(path, handler);
    return this;
  }

  has(path: string): boolean {
    return this.routes.has(path);
  }

  paths(): string[] {
    return [...this.routes.keys()].sort();
  }

  /** The `request` listener for an http.Server: routes, refuses, and never throws. */
  listener(log: Logger): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      void this.handle(req, res).catch((err: Error) => {
        log.warn({ event: 'http_error', path: req.url, err: err.message }, `HTTP ${req.url}: ${err.message}`);
        if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
        else res.destroy();
      });
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://coordinator');
    const handler = this.routes.get(url.pathname);
    if (!handler) {
      sendJson(res, 404, { error: `No route ${url.pathname}; try one of ${this.paths().join(', ')}.` });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      sendJson(res, 405, { error: `${url.pathname} is read-only: expected GET or HEAD, got ${req.method}.` });
      return;
    }
    await handler(req, res, url);
  }
}

/** Headers every response carries: nothing is cached, nothing is sniffed or framed. */
export function baseHeaders(res: ServerResponse): void {
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  baseHeaders(res);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(res.req.method === 'HEAD' ? undefined : text);
}

export function sendBody(res: ServerResponse, contentType: string, body: string | Buffer): void {
  baseHeaders(res);
  res.writeHead(200, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
