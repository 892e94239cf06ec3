/**
 * Structured logs. Every line is pino JSON with a stable `event` field that `jq` can filter
 * (`run_started`, `step`, `epoch`, ...). On a TTY the same lines go through pino-pretty.
 */
import { pino, type Logger, type LoggerOptions } from 'pino';
import { build as prettyStream } from 'pino-pretty';

export type { Logger };

export interface LoggerSettings {
  level?: string;
  /** Pretty-print for humans; defaults to "stdout is a TTY". */
  pretty?: boolean;
  /** Write JSON lines to this file descriptor or path instead of stdout. */
  destination?: number | string;
  base?: Record<string, unknown>;
}

export function createLogger(settings: LoggerSettings = {}): Logger {
  const options: LoggerOptions = {
    level: settings.level ?? process.env.DTRAIN_LOG_LEVEL ?? 'info',
    base: settings.base ?? { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  const pretty = settings.pretty ?? (settings.destination === undefined && process.stdout.isTTY === true);
  if (pretty) {
    // The message of every event carries its key numbers, so humans get one line per event.
    // In-thread and synchronous (not a transport), so nothing is lost when the CLI exits.
    return pino(options, prettyStream({ colorize: true, hideObject: true, translateTime: 'HH:MM:ss', sync: true }));
  }
  return pino(options, pino.destination({ dest: settings.destination ?? 1, sync: true }));
}

/** A logger that drops everything: for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
