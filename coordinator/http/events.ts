/**
 * `GET /api/events`: Server-Sent Events that keep a dashboard live without reloading. A client
 * first gets `status` (the whole snapshot), then every change as it happens (`step`, `epoch`,
 * `workers`, `event`, `finished`). Messages are flushed every FLUSH_MS rather than one write per
 * step, so a run of hundreds of steps a second costs a few writes a second; a step still reaches
 * the browser well within a second of the coordinator finishing it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { baseHeaders, sendJson } from './routes.ts';
import type { RunState, StateMessage } from './run-state.ts';

export const FLUSH_MS = 100;
const KEEPALIVE_MS = 15_000;
/** Each client holds a socket and a queue: a bound, so a page opened in a loop cannot pile them up. */
export const MAX_CLIENTS = 64;

export class EventStreams {
  private readonly clients = new Set<ServerResponse>();

  constructor(private readonly state: RunState) {}

  get size(): number {
    return this.clients.size;
  }

  handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (this.clients.size >= MAX_CLIENTS) {
      sendJson(res, 503, { error: `Too many live dashboards: at most ${MAX_CLIENTS} at once.` });
      return;
    }
    baseHeaders(res);
    res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive', 'X-Accel-Buffering': 'no' });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.write(`retry: 2000\n${frame('status', this.state.snapshot())}`);
    let queue: StateMessage[] = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      timer = undefined;
      const text = queue.map((m) => frame(m.type, m.data)).join('');
      queue = [];
      res.write(text);
    };
    const unsubscribe = this.state.subscribe((m) => {
      queue.push(m);
      timer ??= setTimeout(flush, FLUSH_MS);
    });
    const keepalive = setInterval(() => res.write(': keepalive\n\n'), KEEPALIVE_MS);
    keepalive.unref();
    this.clients.add(res);
    res.on('close', () => {
      unsubscribe();
      clearTimeout(timer);
      clearInterval(keepalive);
      this.clients.delete(res);
    });
  };

  /** Ends every stream (the server is closing); wait FLUSH_MS first for queued messages to go out. */
  closeAll(): void {
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}

function frame(type: string, data: unknown): string {
  return `event: ${type}\ndata: ${JSON.stringify(data)}\n\n`;
}
