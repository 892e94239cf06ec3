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
  return pino(options, stepBatchingDestination(settings.destination ?? 1));
}

/**
 * The buffered destination below, but every line other than a `step` line (run events, warnings,
 * errors: a few a second at most) is written at once with whatever is buffered before it, so
 * whoever follows a run sees them when they happen, in order; only the step lines, up to ~1,250 a
 * second, wait for a batch.
 */
function stepBatchingDestination(dest: number | string): { write(line: string): void } {
  const { stream, flush } = bufferedDestination(dest);
  return {
    write(line: string) {
      stream.write(line);
      if (!line.includes(STEP_EVENT)) flush();
    },
  };
}

const STEP_EVENT = '"event":"step"';

/** Bytes of log lines gathered before a write (see bufferedDestination). */
export const LOG_BUFFER_BYTES = 4096;
/** The longest a line waits in the buffer, ms. */
export const LOG_FLUSH_MS = 100;

/**
 * Step lines written in batches of LOG_BUFFER_BYTES, and at least every LOG_FLUSH_MS: whatever
 * reads a pipe from dtrain (a log shipper, docker, `| jq`) wakes once per batch instead of once
 * per line, and takes a core from the compute threads less often. At ~1,250 step lines a second
 * (mlp), a line-by-line write into a pipe read by a Node process cost 10-20% of an epoch
 * (2026-12-01: 19.8k and 18.9k img/s against 22.8k and 20.5k with the lines going to a file).
 * What is left is written when the process exits (not on SIGKILL, which loses at most the last
 * LOG_FLUSH_MS).
 */
function bufferedDestination(dest: number | string): { stream: ReturnType<typeof pino.destination>; flush: () => void } {
  // Synchronous writes, batched: asynchronous ones go through libuv's thread pool, a thread woken
  // per write, which costs a core as much as the reader's wake-ups did.
  const stream = pino.destination({ dest, sync: true, minLength: LOG_BUFFER_BYTES });
  // flush() writes what is buffered (synchronously, as the stream is); flushSync() also fsyncs the
  // file, which on a log file blocked the owning thread for 2-7 ms every LOG_FLUSH_MS (`--log-file`
  // or stdout redirected to a file: 75 ms of fsync in a profile of a 2 s mlp epoch), so only the
  // exit uses it. Both throw if the stream is closed (or, for an asynchronous one, not yet open).
  const flush = () => attempt(() => stream.flush());
  const flushToDisk = () => attempt(() => stream.flushSync());
  const timer = setInterval(flush, LOG_FLUSH_MS);
  timer.unref();
  if (!exitHooked) process.on('exit', flushAll);
  exitHooked = true;
  openStreams.add(flushToDisk);
  stream.on('close', () => {
    clearInterval(timer);
    openStreams.delete(flushToDisk);
  });
  return { stream, flush };
}

/** Runs a flush; one that throws leaves the lines to the next flush (timer, line or exit). */
function attempt(flush: () => void): void {
  try {
    flush();
  } catch {
    // written by the next flush
  }
}

/** The flush of every buffered destination still open: one exit listener writes them all. */
const openStreams = new Set<() => void>();
let exitHooked = false;

function flushAll(): void {
  for (const flush of openStreams) flush();
}

/** A logger that drops everything: for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
