/**
 * CIFAR-10, binary version: where the six batch files come from (a folder the user names, an
 * archive the user names, or a verified download in the cache) and how their records become HWC
 * images.
 *
 * Each .bin file holds 10,000 records of 1 label byte and 3072 pixel bytes: the 1024 red values of
 * the 32×32 image row by row, then the 1024 green, then the 1024 blue.
 */
import { mkdtemp, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { x as extractTar } from 'tar';
import { DataError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { downloadVerified, md5File } from './download.ts';
import { readClassNames } from './class-names.ts';
import { IMAGE_BYTES, type ImageSet } from './types.ts';

export const CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz';
export const CIFAR10_MD5 = 'c32a1d4ab5d03f1284b67883e8d87530';
export const CIFAR10_ARCHIVE = 'cifar-10-binary.tar.gz';
export const CIFAR10_BATCHES_DIR = 'cifar-10-batches-bin';
export const CIFAR10_DEV_FILES = ['data_batch_1.bin', 'data_batch_2.bin', 'data_batch_3.bin', 'data_batch_4.bin', 'data_batch_5.bin'];
export const CIFAR10_TEST_FILE = 'test_batch.bin';
export const RECORD_BYTES = 1 + IMAGE_BYTES;
export const RECORDS_PER_FILE = 10_000;

const REMEDY = `Download ${CIFAR10_ARCHIVE} yourself and pass --data-dir DIR, or try --dataset synthetic.`;

export interface Cifar10Options {
  dataDir?: string;
  cacheDir: string;
  url: string;
  /** The published md5 unless a test serves its own archive. */
  expectedMd5: string;
  /** 10,000 unless a test builds small batch files. */
  recordsPerFile: number;
  idleTimeoutMs?: number;
  logger: Logger;
}

export interface Cifar10Data {
  dev: ImageSet;
  test: ImageSet;
  source: string;
  /** "cifar10:" + sha256 of the six .bin files' bytes in order, computed while they are read. */
  fingerprint: string;
  /** From the folder's batches.meta.txt, else CIFAR-10's (class-names.ts). */
  classNames: readonly string[];
}

export async function loadCifar10(o: Cifar10Options): Promise<Cifar10Data> {
  const found = o.dataDir === undefined ? { batchesDir: await ensureCached(o) } : await locate(o.dataDir);
  if ('batchesDir' in found) {
    return { ...(await readBatchesDir(found.batchesDir, o.recordsPerFile)), source: `cifar10 (${found.batchesDir})` };
  }
  // A user-supplied archive is extracted to a scratch folder and never copied into the cache: the
  // cache then only ever holds what this code downloaded and verified itself.
  const actualMd5 = await md5File(found.archive);
  if (actualMd5 !== o.expectedMd5) {
    throw new DataError(
      'DTRAIN_ERR_DATA_CHECKSUM',
      `Checksum mismatch for ${found.archive}: expected md5 ${o.expectedMd5}, got md5 ${actualMd5}. ` +
        `Is it the binary version (${CIFAR10_ARCHIVE}, not the Python or MATLAB one) and completely downloaded?`,
    );
  }
  const scratch = await mkdtemp(join(tmpdir(), 'dtrain-cifar10-'));
  try {
    const batchesDir = await extractArchive(found.archive, scratch, o.logger);
    return { ...(await readBatchesDir(batchesDir, o.recordsPerFile)), source: `cifar10 (${found.archive})` };
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * `<cacheDir>/cifar10/cifar-10-batches-bin`, downloading and extracting first if needed. The
 * archive is kept after extraction so that a deleted or damaged folder never costs a download.
 */
async function ensureCached(o: Cifar10Options): Promise<string> {
  const root = join(o.cacheDir, 'cifar10');
  const batchesDir = join(root, CIFAR10_BATCHES_DIR);
  if (await isDirectory(batchesDir)) return batchesDir;
  const archive = join(root, CIFAR10_ARCHIVE);
  if (!(await isFile(archive))) {
    await downloadVerified({
      url: o.url,
      dest: archive,
      md5: o.expectedMd5,
      label: 'CIFAR-10',
      remedy: REMEDY,
      idleTimeoutMs: o.idleTimeoutMs,
      logger: o.logger,
    });
  }
  // Extract beside the target and rename: the target folder appears complete or not at all.
  const scratch = await mkdtemp(join(root, '.extract-'));
  try {
    const extracted = await extractArchive(archive, scratch, o.logger);
    try {
      await rename(extracted, batchesDir);
    } catch (err) {
      // Another process sharing the cache finished first; its folder holds the same bytes.
      if (!(await isDirectory(batchesDir))) throw err;
    }
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  return batchesDir;
}

async function extractArchive(archive: string, into: string, logger: Logger): Promise<string> {
  const started = Date.now();
  try {
    // strict: a damaged gzip stream or tar header is an error, not a warning and a short file.
    await extractTar({ file: archive, cwd: into, strict: true });
  } catch (err) {
    throw new DataError(
      'DTRAIN_ERR_DATA_CORRUPT',
      `Could not extract ${archive}: ${err instanceof Error ? err.message : String(err)}. Delete it and run again to download it anew. ${REMEDY}`,
      err,
    );
  }
  const batchesDir = join(into, CIFAR10_BATCHES_DIR);
  if (!(await isDirectory(batchesDir))) {
    throw new DataError(
      'DTRAIN_ERR_DATA_MISSING',
      `${archive} does not contain a ${CIFAR10_BATCHES_DIR}/ folder. Expected the binary version of CIFAR-10 (${CIFAR10_ARCHIVE}).`,
    );
  }
  logger.info({ event: 'data_extracted', archive, ms: Date.now() - started }, `Extracted ${archive}`);
  return batchesDir;
}

type Located = { batchesDir: string } | { archive: string };

/** Accepts the batches folder itself, its parent, a folder holding the archive, or the archive. */
async function locate(dataDir: string): Promise<Located> {
  const info = await stat(dataDir).catch(() => undefined);
  if (info === undefined) {
    throw new DataError('DTRAIN_ERR_DATA_MISSING', `--data-dir ${dataDir} does not exist. ${REMEDY}`);
  }
  if (info.isFile()) {
    if (/\.(tar\.gz|tgz)$/.test(dataDir)) return { archive: dataDir };
    throw new DataError(
      'DTRAIN_ERR_DATA_MISSING',
      `--data-dir ${dataDir} is a file but not a .tar.gz archive. Expected a folder with the CIFAR-10 binary files or ${CIFAR10_ARCHIVE}.`,
    );
  }
  if (await isFile(join(dataDir, CIFAR10_DEV_FILES[0]))) return { batchesDir: dataDir };
  if (await isDirectory(join(dataDir, CIFAR10_BATCHES_DIR))) return { batchesDir: join(dataDir, CIFAR10_BATCHES_DIR) };
  if (await isFile(join(dataDir, CIFAR10_ARCHIVE))) return { archive: join(dataDir, CIFAR10_ARCHIVE) };
  const pythonVersion = (await isFile(join(dataDir, 'data_batch_1'))) || (await isDirectory(join(dataDir, 'cifar-10-batches-py')));
  throw new DataError(
    'DTRAIN_ERR_DATA_MISSING',
    `No CIFAR-10 binary files in --data-dir ${dataDir}: expected ${CIFAR10_DEV_FILES[0]} there, a ${CIFAR10_BATCHES_DIR}/ folder, ` +
      `or ${CIFAR10_ARCHIVE}.` +
      (pythonVersion ? ' That folder holds the Python (pickle) version; the binary version is needed.' : '') +
      ` Get it from ${CIFAR10_URL}, or leave out --data-dir to download it automatically.`,
  );
}

async function readBatchesDir(dir: string, recordsPerFile: number): Promise<{ dev: ImageSet; test: ImageSet; fingerprint: string; classNames: readonly string[] }> {
  const files = [...CIFAR10_DEV_FILES, CIFAR10_TEST_FILE].map((name) => join(dir, name));
  // Every file is checked before any is read, so a bad last file fails in milliseconds, not seconds.
  for (const file of files) await checkSize(file, recordsPerFile);
  // The hash is taken from the bytes already in memory: a worker's --data-dir is compared with the
  // coordinator's by it (handshake), at no extra read.
  const hash = createHash('sha256');
  const dev = emptySet(CIFAR10_DEV_FILES.length * recordsPerFile);
  for (let f = 0; f < CIFAR10_DEV_FILES.length; f++) {
    const bytes = await readFile(files[f]);
    hash.update(bytes);
    parseRecords(bytes, files[f], dev, f * recordsPerFile);
  }
  const test = emptySet(recordsPerFile);
  const testBytes = await readFile(files[files.length - 1]);
  hash.update(testBytes);
  parseRecords(testBytes, files[files.length - 1], test, 0);
  return { dev, test, fingerprint: `cifar10:${hash.digest('hex')}`, classNames: await readClassNames(dir) };
}

async function checkSize(file: string, recordsPerFile: number): Promise<void> {
  const expected = recordsPerFile * RECORD_BYTES;
  const info = await stat(file).catch(() => undefined);
  if (info === undefined || !info.isFile()) {
    throw new DataError('DTRAIN_ERR_DATA_MISSING', `CIFAR-10 file ${file} is missing. ${refetchAdvice(file)}`);
  }
  if (info.size !== expected) {
    throw new DataError(
      info.size < expected ? 'DTRAIN_ERR_DATA_TRUNCATED' : 'DTRAIN_ERR_DATA_CORRUPT',
      `CIFAR-10 file ${file} has the wrong size: expected ${expected} bytes (${recordsPerFile} records of ${RECORD_BYTES}), ` +
        `got ${info.size} bytes. ${refetchAdvice(file)}`,
    );
  }
}

function refetchAdvice(file: string): string {
  return `Extract ${CIFAR10_ARCHIVE} again, or delete the folder holding ${file} if it is in the cache so that it is rebuilt.`;
}

/** Converts the planar (CHW) records to interleaved HWC pixels at `set[offset..]`. */
export function parseRecords(bytes: Uint8Array, file: string, set: ImageSet, offset: number): void {
  const records = bytes.length / RECORD_BYTES;
  const plane = 32 * 32;
  for (let r = 0; r < records; r++) {
    const src = r * RECORD_BYTES;
    const label = bytes[src];
    if (label > 9) {
      throw new DataError(
        'DTRAIN_ERR_DATA_CORRUPT',
        `CIFAR-10 file ${file} is corrupt: record ${r} has label ${label}, expected 0-9. ${refetchAdvice(file)}`,
      );
    }
    set.labels[offset + r] = label;
    const dst = (offset + r) * IMAGE_BYTES;
    for (let p = 0; p < plane; p++) {
      set.images[dst + 3 * p] = bytes[src + 1 + p];
      set.images[dst + 3 * p + 1] = bytes[src + 1 + plane + p];
      set.images[dst + 3 * p + 2] = bytes[src + 1 + 2 * plane + p];
    }
  }
}

function emptySet(count: number): ImageSet {
  return { images: new Uint8Array(count * IMAGE_BYTES), labels: new Uint8Array(count), count };
}

async function isFile(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isFile() ?? false;
}

async function isDirectory(path: string): Promise<boolean> {
  return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
}
