/**
 * Test helper: a small CIFAR-10-shaped archive with known contents, and a loopback HTTP server to
 * serve it. Not used by production code.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { c as createTar } from 'tar';
import { CIFAR10_ARCHIVE, CIFAR10_BATCHES_DIR, CIFAR10_DEV_FILES, CIFAR10_TEST_FILE, RECORD_BYTES } from './cifar10.ts';

export const FAKE_RECORDS_PER_FILE = 20;

/** Labels cycle through the classes; the record index makes every label and pixel predictable. */
export function fakeLabel(part: 'dev' | 'test', index: number): number {
  return (index + (part === 'test' ? 3 : 0)) % 10;
}

/** Value of channel `c` (0 R, 1 G, 2 B) at pixel p = y·32 + x of record `index`. */
export function fakePixel(part: 'dev' | 'test', index: number, p: number, c: number): number {
  const salt = part === 'test' ? 101 : 0;
  return ((index + salt) * (7 + 6 * c) + p * (1 + 2 * c) + c) & 255;
}

/** One .bin file in the planar CIFAR layout: label, then all R, all G, all B. */
export function fakeBatch(part: 'dev' | 'test', firstIndex: number, records = FAKE_RECORDS_PER_FILE): Uint8Array {
  const bytes = new Uint8Array(records * RECORD_BYTES);
  for (let r = 0; r < records; r++) {
    const index = firstIndex + r;
    const base = r * RECORD_BYTES;
    bytes[base] = fakeLabel(part, index);
    for (let c = 0; c < 3; c++) {
      for (let p = 0; p < 1024; p++) bytes[base + 1 + c * 1024 + p] = fakePixel(part, index, p, c);
    }
  }
  return bytes;
}

/** Writes `<parent>/cifar-10-batches-bin/*.bin` and returns the batches folder. */
export async function writeFakeBatches(parent: string): Promise<string> {
  const dir = join(parent, CIFAR10_BATCHES_DIR);
  await mkdir(dir, { recursive: true });
  for (let f = 0; f < CIFAR10_DEV_FILES.length; f++) {
    await writeFile(join(dir, CIFAR10_DEV_FILES[f]), fakeBatch('dev', f * FAKE_RECORDS_PER_FILE));
  }
  await writeFile(join(dir, CIFAR10_TEST_FILE), fakeBatch('test', 0));
  await writeFile(join(dir, 'batches.meta.txt'), 'airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n');
  return dir;
}

/** Builds `<workDir>/cifar-10-binary.tar.gz` with the same layout as the real archive. */
export async function writeFakeArchive(workDir: string): Promise<{ path: string; bytes: Buffer; md5: string }> {
  const staging = join(workDir, 'staging');
  await writeFakeBatches(staging);
  const path = join(workDir, CIFAR10_ARCHIVE);
  await createTar({ gzip: true, file: path, cwd: staging, portable: true }, [CIFAR10_BATCHES_DIR]);
  const bytes = await readFile(path);
  return { path, bytes, md5: createHash('md5').update(bytes).digest('hex') };
}

export interface FakeServer {
  url(path: string): string;
  /** Requests received so far, by path. */
  requests: string[];
  close(): Promise<void>;
}

/**
 * Routes: /good serves the archive; /corrupt serves it with one byte flipped; /short announces the
 * full length but closes halfway; /stall sends headers and then nothing; anything else is 404.
 */
export async function startFakeServer(archive: Buffer): Promise<FakeServer> {
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const path = req.url ?? '';
    requests.push(path);
    if (path === '/good') {
      res.writeHead(200, { 'content-length': archive.length }).end(archive);
    } else if (path === '/corrupt') {
      const bad = Buffer.from(archive);
      bad[bad.length >> 1] ^= 0xff;
      res.writeHead(200, { 'content-length': bad.length }).end(bad);
    } else if (path === '/short') {
      res.writeHead(200, { 'content-length': archive.length });
      res.write(archive.subarray(0, archive.length >> 1), () => res.destroy());
    } else if (path === '/stall') {
      res.writeHead(200, { 'content-length': archive.length });
      res.flushHeaders();
    } else {
      res.writeHead(404, 'Not Found').end('not here');
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (path) => `http://127.0.0.1:${port}${path}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A loopback URL on which nothing listens: the port was bound and released. */
export async function refusedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/cifar-10-binary.tar.gz`;
}
