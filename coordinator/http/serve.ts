/**
 * What the CLI needs to serve a run over HTTP: a RunMonitor to watch it and an HttpFrontend to
 * show it. `dtrain coordinator` hands `frontend.server` to the WebSocket server (one port for
 * workers and browsers); `dtrain train --port N` listens on its own.
 */
import type { Logger } from '../../common/logger.ts';
import type { TrainConfig } from '../../common/config.ts';
import { createHttpFrontend, type HttpFrontend } from './index.ts';
import { RunMonitor } from './monitor.ts';
import { envBool } from '../cli/train.ts';

export interface RunWeb {
  readonly monitor: RunMonitor;
  readonly frontend: HttpFrontend;
  /** Closes the server (the job has told live dashboards the outcome through `monitor.finished`). */
  close(): Promise<void>;
}

export function createRunWeb(config: TrainConfig, transport: 'threads' | 'websocket', log: Logger): RunWeb {
  const monitor = new RunMonitor({ model: config.model, dataset: config.dataset, epochs: config.epochs, batchSize: config.batchSize, transport, out: config.out });
  const frontend = createHttpFrontend(monitor, { runDir: config.out, log });
  // Dashboards get the outcome, then a clean end of stream before the transport closes the server.
  monitor.afterFinished = () => frontend.endStreams();
  return {
    monitor,
    frontend,
    close: () => frontend.close(),
  };
}

/** `--no-http` on the command line wins; otherwise DTRAIN_HTTP=0 turns the routes off. Default on. */
export function httpEnabled(flags: { http?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (flags.http === false) return false;
  return envBool('DTRAIN_HTTP', env) ?? true;
}

/** One line with the URL to open (a wildcard bind address is shown as localhost). */
export function logDashboardUrl(log: Logger, host: string, port: number): void {
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${shown}:${port}/`;
  log.info({ event: 'http_listening', url, host, port, routes: ['/', '/api/status', '/api/events', '/metrics', '/healthz'] }, `dashboard: ${url} (metrics: ${url}metrics)`);
}
