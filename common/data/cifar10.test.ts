import { mkdtemp, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DataError } from '../errors.ts';
import { CIFAR10_ARCHIVE, CIFAR10_BATCHES_DIR, CIFAR10_MD5, parseRecords, RECORD_BYTES } from './cifar10.ts';
import {
  FAKE_RECORDS_PER_FILE,
  fakeBatch,
  fakeLabel,
  fakePixel,
  refusedUrl,
  startFakeServer,
  writeFakeArchive,
  writeFakeBatches,
  type FakeServer,
} from './fake-cifar.ts';
import { loadDataset, type LoadOptions } from './load.ts';
import { selectSplits } from './split.ts';
import { CIFAR10_CLASSES, isSharedSet, type ImageSet } from './types.ts';

const DEV_COUNT = 5 * FAKE_RECORDS_PER_FILE;
const TEST_COUNT = FAKE_RECORDS_PER_FILE;

let work: string;
let archive: { path: string; bytes: Buffer; md5: string };
let server: FakeServer;
let cacheDir: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'dtrain-cifar-test-'));
  archive = await writeFakeArchive(work);
  server = await startFakeServer(archive.bytes);
});

afterAll(async () => {
  await server.close();
  await rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  cacheDir = await mkdtemp(join(work, 'cache-'));
  server.requests.length = 0;
});

afterEach(async () => {
  await rm(cacheDir, { recursive: true, force: true });
});

function load(options: Partial<LoadOptions>, expectedMd5 = archive.md5, idleTimeoutMs = 10_000) {
  return loadDataset({ dataset: 'cifar10', cacheDir, ...options }, { expectedMd5, recordsPerFile: FAKE_RECORDS_PER_FILE, idleTimeoutMs });
}

async function loadError(options: Partial<LoadOptions>, expectedMd5?: string, idleTimeoutMs?: number): Promise<DataError> {
  const error = await load(options, expectedMd5, idleTimeoutMs).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error).toBeInstanceOf(DataError);
  return error as DataError;
}

/** Every image of `set` equals the fake record it was drawn from, pixel for pixel, in HWC order. */
function expectFakeImages(set: ImageSet, part: 'dev' | 'test', indices: Uint32Array): void {
  expect(set.count).toBe(indices.length);
  for (let i = 0; i < set.count; i++) {
    const index = indices[i];
    expect(set.labels[i]).toBe(fakeLabel(part, index));
    for (const p of [0, 1, 31, 32, 500, 1023]) {
      for (let c = 0; c < 3; c++) {
        if (set.images[i * 3072 + 3 * p + c] !== fakePixel(part, index, p, c)) {
          throw new Error(`${part} image ${index}, pixel ${p}, channel ${c}: got ${set.images[i * 3072 + 3 * p + c]}`);
        }
      }
    }
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

describe('parseRecords', () => {
  it('interleaves the R, G and B planes into HWC pixels', () => {
    // One record: label 7, red plane all 10 except pixel (y 1, x 2) = 200, green 20, blue 30.
    const record = new Uint8Array(RECORD_BYTES);
    record[0] = 7;
    record.fill(10, 1, 1025);
    record.fill(20, 1025, 2049);
    record.fill(30, 2049, 3073);
    const p = 1 * 32 + 2;
    record[1 + p] = 200;
    const set = { images: new Uint8Array(3072), labels: new Uint8Array(1), count: 1 };
    parseRecords(record, 'x.bin', set, 0);
    expect(set.labels[0]).toBe(7);
    expect([...set.images.subarray(0, 3)]).toEqual([10, 20, 30]);
    expect([...set.images.subarray(3 * p, 3 * p + 3)]).toEqual([200, 20, 30]);
  });

  it('rejects a label outside 0-9 as corrupt', () => {
    const record = new Uint8Array(RECORD_BYTES);
    record[0] = 12;
    const set = { images: new Uint8Array(3072), labels: new Uint8Array(1), count: 1 };
    expect(() => parseRecords(record, 'x.bin', set, 0)).toThrow(/x\.bin is corrupt: record 0 has label 12/);
  });
});

describe('CIFAR-10 download', () => {
  it('downloads, verifies, extracts and parses the archive into HWC images with the right labels', async () => {
    const splits = await load({ url: server.url('/good') });
    const pick = selectSplits(DEV_COUNT, TEST_COUNT, 42);
    expectFakeImages(splits.train, 'dev', pick.train);
    expectFakeImages(splits.val, 'dev', pick.val);
    expectFakeImages(splits.test, 'test', pick.test);
    expect(splits.train.count).toBe(80);
    expect(splits.val.count).toBe(20);
    expect(splits.test.count).toBe(20);
    // The training split lies in shared memory (compute threads read its slices in place).
    expect([isSharedSet(splits.train), isSharedSet(splits.val), isSharedSet(splits.test)]).toEqual([true, false, false]);
    expect(splits.source).toBe(`cifar10 (${join(cacheDir, 'cifar10', CIFAR10_BATCHES_DIR)})`);
    expect(server.requests).toEqual(['/good']);
    expect(await exists(join(cacheDir, 'cifar10', CIFAR10_ARCHIVE))).toBe(true);
  });

  it('does not download again once the archive is verified and extracted', async () => {
    await load({ url: server.url('/good') });
    const again = await load({ url: server.url('/good') });
    expect(again.train.count).toBe(80);
    expect(server.requests).toEqual(['/good']);
  });

  it('re-extracts from the cached archive without downloading when the extracted folder is gone', async () => {
    await load({ url: server.url('/good') });
    await rm(join(cacheDir, 'cifar10', CIFAR10_BATCHES_DIR), { recursive: true });
    const again = await load({ url: server.url('/good') });
    expect(again.test.count).toBe(20);
    expect(server.requests).toEqual(['/good']);
  });

  it('rejects a download with the wrong md5, names both checksums and quarantines the file', async () => {
    const error = await loadError({ url: server.url('/corrupt') });
    expect(error.code).toBe('DTRAIN_ERR_DATA_CHECKSUM');
    expect(error.message).toContain(`expected md5 ${archive.md5}`);
    expect(error.message).toMatch(/got md5 [0-9a-f]{32}/);
    const folder = join(cacheDir, 'cifar10');
    expect(await exists(join(folder, CIFAR10_ARCHIVE))).toBe(false);
    expect(await readdir(folder)).toEqual([`${CIFAR10_ARCHIVE}.corrupt`]);
  });

  it('retries a failed download on the next load', async () => {
    await loadError({ url: server.url('/corrupt') });
    const splits = await load({ url: server.url('/good') });
    expect(splits.train.count).toBe(80);
    expect(server.requests).toEqual(['/corrupt', '/good']);
  });

  it('checks against the published CIFAR-10 md5 by default', async () => {
    const error = await loadError({ url: server.url('/good') }, CIFAR10_MD5);
    expect(error.code).toBe('DTRAIN_ERR_DATA_CHECKSUM');
    expect(error.message).toContain(`expected md5 ${CIFAR10_MD5}, got md5 ${archive.md5}`);
  });

  it('explains how to work offline when the server answers 404', async () => {
    const url = server.url('/nowhere.tar.gz');
    const error = await loadError({ url });
    expect(error.code).toBe('DTRAIN_ERR_DATA_DOWNLOAD');
    expect(error.message).toBe(
      `Could not download CIFAR-10 from ${url}: HTTP 404 Not Found. ` +
        'Download cifar-10-binary.tar.gz yourself and pass --data-dir DIR, or try --dataset synthetic.',
    );
  });

  it('explains how to work offline when the connection is refused', async () => {
    const url = await refusedUrl();
    const error = await loadError({ url });
    expect(error.code).toBe('DTRAIN_ERR_DATA_DOWNLOAD');
    expect(error.message).toContain(`Could not download CIFAR-10 from ${url}: connect ECONNREFUSED`);
    expect(error.message).toContain('--data-dir DIR');
    expect(error.message).toContain('--dataset synthetic');
  });

  it('fails a download that ends early and leaves no partial file behind', async () => {
    const error = await loadError({ url: server.url('/short') });
    expect(error.code).toBe('DTRAIN_ERR_DATA_DOWNLOAD');
    expect(error.message).toContain(server.url('/short'));
    expect(await readdir(join(cacheDir, 'cifar10'))).toEqual([]);
  });

  it('reports a cache folder that cannot be created', async () => {
    // A regular file where a folder should go: mkdir fails with ENOTDIR even when running as root.
    const error = await loadError({ url: server.url('/good'), cacheDir: join(archive.path, 'cache') });
    expect(error.code).toBe('DTRAIN_ERR_DATA_CACHE');
    expect(error.message).toContain('DTRAIN_CACHE_DIR');
  });

  it('gives up on a server that stops sending data', async () => {
    const error = await loadError({ url: server.url('/stall') }, undefined, 300);
    expect(error.code).toBe('DTRAIN_ERR_DATA_DOWNLOAD');
    expect(error.message).toContain('no data for 0.3 s');
    expect(await readdir(join(cacheDir, 'cifar10'))).toEqual([]);
  });
});

describe('CIFAR-10 from --data-dir', () => {
  let dataRoot: string;
  let offlineUrl: string;

  beforeEach(async () => {
    dataRoot = await mkdtemp(join(work, 'data-'));
    // Any network use would fail loudly: nothing listens here.
    offlineUrl = await refusedUrl();
  });

  afterEach(async () => {
    await rm(dataRoot, { recursive: true, force: true });
  });

  it('reads the extracted cifar-10-batches-bin folder without network', async () => {
    const batches = await writeFakeBatches(dataRoot);
    const splits = await load({ dataDir: batches, url: offlineUrl });
    expectFakeImages(splits.test, 'test', selectSplits(DEV_COUNT, TEST_COUNT, 42).test);
    expect(splits.source).toBe(`cifar10 (${batches})`);
  });

  it('names the classes as the folder\'s batches.meta.txt does, and as CIFAR-10 without one', async () => {
    const batches = await writeFakeBatches(dataRoot);
    expect((await load({ dataDir: batches, url: offlineUrl })).classNames).toEqual(CIFAR10_CLASSES);
    const own = ['apple', 'bee', 'cow', 'dune', 'elm', 'fig', 'gnu', 'hat', 'ink', 'jar'];
    await writeFile(join(batches, 'batches.meta.txt'), `${own.join('\n')}\n\n`);
    expect((await load({ dataDir: batches, url: offlineUrl })).classNames).toEqual(own);
    await rm(join(batches, 'batches.meta.txt'));
    expect((await load({ dataDir: batches, url: offlineUrl })).classNames).toEqual(CIFAR10_CLASSES);
    await writeFile(join(batches, 'batches.meta.txt'), 'just\nthree\nnames\n');
    const error = await loadError({ dataDir: batches, url: offlineUrl });
    expect(error.code).toBe('DTRAIN_ERR_DATA_CLASS_NAMES');
    expect(error.message).toContain('expected 10 class names, one per line (label 0 first), but found 3 line(s)');
  });

  it('accepts the parent of cifar-10-batches-bin', async () => {
    const batches = await writeFakeBatches(dataRoot);
    const splits = await load({ dataDir: dataRoot, url: offlineUrl });
    expect(splits.source).toBe(`cifar10 (${batches})`);
    expect(splits.train.count).toBe(80);
  });

  it('accepts the .tar.gz archive itself and leaves the cache empty', async () => {
    const splits = await load({ dataDir: archive.path, url: offlineUrl });
    expectFakeImages(splits.val, 'dev', selectSplits(DEV_COUNT, TEST_COUNT, 42).val);
    expect(splits.source).toBe(`cifar10 (${archive.path})`);
    expect(await readdir(cacheDir)).toEqual([]);
  });

  it('rejects a given archive whose md5 differs, without deleting it', async () => {
    const error = await loadError({ dataDir: archive.path, url: offlineUrl }, CIFAR10_MD5);
    expect(error.code).toBe('DTRAIN_ERR_DATA_CHECKSUM');
    expect(error.message).toContain(`${archive.path}: expected md5 ${CIFAR10_MD5}, got md5 ${archive.md5}`);
    expect(await exists(archive.path)).toBe(true);
  });

  it('names a truncated .bin file with the expected and the actual size', async () => {
    const batches = await writeFakeBatches(dataRoot);
    const file = join(batches, 'data_batch_3.bin');
    await truncate(file, 1000);
    const error = await loadError({ dataDir: batches, url: offlineUrl });
    expect(error.code).toBe('DTRAIN_ERR_DATA_TRUNCATED');
    expect(error.message).toContain(file);
    expect(error.message).toContain(`expected ${FAKE_RECORDS_PER_FILE * 3073} bytes`);
    expect(error.message).toContain('got 1000 bytes');
  });

  it('rejects an oversized .bin file as corrupt', async () => {
    const batches = await writeFakeBatches(dataRoot);
    await writeFile(join(batches, 'test_batch.bin'), fakeBatch('test', 0, FAKE_RECORDS_PER_FILE + 1));
    const error = await loadError({ dataDir: batches, url: offlineUrl });
    expect(error.code).toBe('DTRAIN_ERR_DATA_CORRUPT');
    expect(error.message).toContain(`got ${(FAKE_RECORDS_PER_FILE + 1) * 3073} bytes`);
  });

  it('names a missing .bin file', async () => {
    const batches = await writeFakeBatches(dataRoot);
    await rm(join(batches, 'test_batch.bin'));
    const error = await loadError({ dataDir: batches, url: offlineUrl });
    expect(error.code).toBe('DTRAIN_ERR_DATA_MISSING');
    expect(error.message).toContain(join(batches, 'test_batch.bin'));
  });

  it('says what it looked for in a folder without CIFAR-10 files', async () => {
    const error = await loadError({ dataDir: dataRoot, url: offlineUrl });
    expect(error.code).toBe('DTRAIN_ERR_DATA_MISSING');
    expect(error.message).toContain(`No CIFAR-10 binary files in --data-dir ${dataRoot}`);
    expect(error.message).toContain('cifar-10-batches-bin/');
  });

  it('reports a --data-dir that does not exist', async () => {
    const missing = join(dataRoot, 'nope');
    const error = await loadError({ dataDir: missing, url: offlineUrl });
    expect(error.code).toBe('DTRAIN_ERR_DATA_MISSING');
    expect(error.message).toContain(`--data-dir ${missing} does not exist`);
  });
});
