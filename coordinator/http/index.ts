/**
 * The coordinator's HTTP side: one http.Server that answers the read-only routes below and, for
 * `dtrain coordinator`, also carries the workers' WebSocket upgrades (ws-server.ts attaches to it).
 *
 *   /                 the live dashboard (dashboard/index.html)
 *   /api/status       JSON: run, model, progress, workers, recent steps, history, events
 *   /api/events       Server-Sent Events: the same, live
 *   /metrics          Prometheus text format (prom-client), every name prefixed dtrain_
 *   /healthz          200 {"status":"ok"} while the process serves
 *   /predictions.png  the run's prediction grid, once the run has drawn it
 *
 * To add a route, add one `routes.register(path, handler)` line in `standardRoutes` (or call
 * `register` on `HttpFrontend.routes` before or after it starts listening). See routes.ts.
 */
import { createServer, type Server } from 'node:http';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { listenOn } from '../listen.ts';
import type { Logger } from '../../common/logger.ts';
import { RUN_PICTURE_FILES } from '../../common/report/run-artifacts.ts';
import { RouteTable, sendBody, sendJson } from './routes.ts';
import { EventStreams, FLUSH_MS } from './events.ts';
import { dashboardRoutes } from './dashboard.ts';
import type { RunMonitor } from './monitor.ts';

export { RouteTable, sendBody, sendJson } from './routes.ts';
export type { RouteHandler } from './routes.ts';
export { RunMonitor } from './monitor.ts';

export function standardRoutes(monitor: RunMonitor, streams: EventStreams, runDir: string): RouteTable {
  const routes = new RouteTable();
  dashboardRoutes(routes);
  routes.register('/api/status', (_req, res) => sendJson(res, 200, monitor.state.snapshot()));
  routes.register('/api/events', streams.handler);
  routes.register('/healthz', (_req, res) => sendJson(res, 200, { status: 'ok', state: monitor.state.snapshot().run.state }));
  routes.register('/metrics', async (_req, res) => {
    const { contentType, text } = await monitor.metrics.render();
    sendBody(res, contentType, text);
  });
  routes.register('/predictions.png', async (_req, res) => {
    // A fixed file name in the run folder: no path from the request is ever used.
    const png = await readFile(join(runDir, RUN_PICTURE_FILES.predictions)).catch(() => undefined);
    if (png) sendBody(res, 'image/png', png);
    else sendJson(res, 404, { error: 'No prediction grid yet: it is drawn when the run ends.' });
  });
  return routes;
}

export interface HttpFrontend {
  readonly server: Server;
  readonly routes: RouteTable;
  /** Starts listening (not needed when ws-server listens on `server` for us). */
  listen(port: number, host: string): Promise<number>;
  /** Lets live dashboards receive the last messages, then ends their streams (the server stays up). */
  endStreams(): Promise<void>;
  /** Ends the streams and closes the server. */
  close(): Promise<void>;
}

/** An http.Server answering the standard routes of `monitor`; it does not listen yet. */
export function createHttpFrontend(monitor: RunMonitor, opts: { runDir: string; log: Logger }): HttpFrontend {
  const streams = new EventStreams(monitor.state);
  const routes = standardRoutes(monitor, streams, opts.runDir);
  const server = createServer(routes.listener(opts.log));
  const endStreams = async () => {
    if (streams.size === 0) return;
    await new Promise((r) => setTimeout(r, FLUSH_MS * 2));
    streams.closeAll();
  };
  return {
    server,
    routes,
    listen: (port, host) => listenOn(server, port, host),
    endStreams,
    close: async () => {
      await endStreams();
      server.closeAllConnections();
      await new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
    },
  };
}
