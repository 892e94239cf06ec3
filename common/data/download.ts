/**
 * Downloads one file into a cache folder so that the final path only ever holds a complete,
 * checksum-verified file: bytes stream into a per-process temporary file, are hashed on the way,
 * and the file is renamed into place only if the md5 matches. A crash or a dropped connection
 * leaves at most a `.part` file, which the next attempt ignores; two processes downloading at once
 * each write their own temporary file and the second rename replaces identical bytes.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as NodeReadableStream } from 'node:stream/web';
import { DataError } from '../errors.ts';
import type { Logger } from '../logger.ts';

export interface DownloadOptions {
  url: string;
  /** Final path. Exists only after a verified download. */
  dest: string;
  /** Expected md5, lowercase hex. */
  md5: string;
  /** What is being downloaded, for messages: "CIFAR-10". */
  label: string;
  /** The sentence after the reason in a failure message: what the user can do instead. */
  remedy: string;
  /**
   * Abort when no bytes arrive for this long (default 30 s). An idle limit rather than a total one:
   * a 170 MB file on a slow link may take many minutes yet still be making progress.
   */
  idleTimeoutMs?: number;
  logger: Logger;
}

const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export async function downloadVerified(o: DownloadOptions): Promise<void> {
  const idleTimeoutMs = o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const fail = (reason: string, cause?: unknown): DataError =>
    new DataError('DTRAIN_ERR_DATA_DOWNLOAD', `Could not download ${o.label} from ${o.url}: ${reason}. ${o.remedy}`, cause);

  try {
    await mkdir(dirname(o.dest), { recursive: true });
  } catch (err) {
    throw new DataError(
      'DTRAIN_ERR_DATA_CACHE',
      `Cannot create the cache folder ${dirname(o.dest)}: ${err instanceof Error ? err.message : String(err)}. ` +
        'Set DTRAIN_CACHE_DIR to a writable folder.',
      err,
    );
  }
  const partPath = `${o.dest}.${process.pid}-${randomBytes(4).toString('hex')}.part`;
  const abort = new AbortController();
  let idleTimer: NodeJS.Timeout | undefined;
  const touch = (): void => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => abort.abort(new IdleTimeout(idleTimeoutMs)), idleTimeoutMs);
  };

  o.logger.info({ event: 'data_download_started', url: o.url, dest: o.dest }, `Downloading ${o.label} from ${o.url}`);
  const started = Date.now();
  const hash = createHash('md5');
  let received = 0;
  let expectedBytes: number | undefined;
  try {
    touch();
    let response: Response;
    try {
      // identity: a transparently decompressed body would fail the md5 of the .tar.gz.
      response = await fetch(o.url, { signal: abort.signal, headers: { 'accept-encoding': 'identity' } });
    } catch (err) {
      throw fail(describeFetchError(err, abort.signal), err);
    }
    if (!response.ok) {
      // Release the connection now rather than when the unread body is garbage-collected.
      await response.body?.cancel().catch(() => undefined);
      throw fail(`HTTP ${response.status} ${response.statusText}`.trim());
    }
    if (response.body === null) throw fail('the server sent no body');
    const length = Number(response.headers.get('content-length'));
    expectedBytes = Number.isFinite(length) && length > 0 ? length : undefined;

    let nextProgress = 0.1;
    const tap = new Transform({
      transform(chunk: Buffer, _encoding, callback) {
        touch();
        hash.update(chunk);
        received += chunk.length;
        if (expectedBytes !== undefined && received / expectedBytes >= nextProgress) {
          o.logger.info({ event: 'data_download_progress', receivedBytes: received, totalBytes: expectedBytes });
          nextProgress += 0.1;
        }
        callback(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(response.body as NodeReadableStream<Uint8Array>), tap, createWriteStream(partPath));
    } catch (err) {
      const of = expectedBytes === undefined ? '' : ` of ${expectedBytes}`;
      throw fail(`${describeFetchError(err, abort.signal)} after ${received}${of} bytes`, err);
    }
  } catch (err) {
    await rm(partPath, { force: true });
    throw err;
  } finally {
    clearTimeout(idleTimer);
  }

  if (expectedBytes !== undefined && received !== expectedBytes) {
    await rm(partPath, { force: true });
    throw fail(`the connection closed after ${received} of ${expectedBytes} bytes`);
  }
  const actualMd5 = hash.digest('hex');
  if (actualMd5 !== o.md5) {
    // Kept rather than deleted: a proxy's HTML error page or a captive portal is obvious once opened.
    const quarantine = `${o.dest}.corrupt`;
    await rename(partPath, quarantine);
    throw new DataError(
      'DTRAIN_ERR_DATA_CHECKSUM',
      `Checksum mismatch for ${basename(o.dest)} downloaded from ${o.url}: expected md5 ${o.md5}, got md5 ${actualMd5} ` +
        `(${received} bytes). The bad file was moved to ${quarantine}. Run again to retry the download. ${o.remedy}`,
    );
  }
  await rename(partPath, o.dest);
  o.logger.info(
    { event: 'data_download_finished', dest: o.dest, bytes: received, ms: Date.now() - started },
    `Downloaded ${o.label} (${received} bytes)`,
  );
}

/** md5 of a file on disk, lowercase hex. */
export async function md5File(path: string): Promise<string> {
  const hash = createHash('md5');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

class IdleTimeout extends Error {
  constructor(readonly ms: number) {
    super(`no data for ${ms / 1000} s`);
  }
}

/** fetch reports "fetch failed" and hides the useful part (ECONNREFUSED, ENOTFOUND) in `cause`. */
function describeFetchError(err: unknown, signal: AbortSignal): string {
  if (signal.aborted && signal.reason instanceof IdleTimeout) return signal.reason.message;
  if (err instanceof Error) {
    const cause = err.cause;
    if (cause instanceof Error && cause.message) return cause.message;
    return err.message;
  }
  return String(err);
}
