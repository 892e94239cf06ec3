import { afterEach, describe, expect, it, vi } from 'vitest';
import { open, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../test/helpers.ts';
import { writeFileAtomic } from './atomic-write.ts';

/** FileHandle is not exported by node:fs/promises: reach its prototype through an open handle. */
async function fileHandlePrototype(dir: string): Promise<{ sync(): Promise<void> }> {
  const h = await open(dir, 'r');
  const proto = Object.getPrototypeOf(h) as { sync(): Promise<void> };
  await h.close();
  return proto;
}

afterEach(() => vi.restoreAllMocks());

describe('writeFileAtomic', () => {
  it('replaces the whole file and leaves no temporary file', async () => {
    const dir = await tempDir();
    await writeFileAtomic(join(dir, 'a.txt'), 'old');
    await writeFileAtomic(join(dir, 'a.txt'), 'new');
    expect(await readFile(join(dir, 'a.txt'), 'utf8')).toBe('new');
    expect(await readdir(dir)).toEqual(['a.txt']);
  });

  it('fsyncs the file and then its folder when durable', async () => {
    const dir = await tempDir();
    const spy = vi.spyOn(await fileHandlePrototype(dir), 'sync');
    await writeFileAtomic(join(dir, 'b.bin'), new Uint8Array([1, 2, 3]), { durable: true });
    expect(spy).toHaveBeenCalledTimes(2);
  });

  it('does not fsync when not durable (pictures refreshed every epoch)', async () => {
    const dir = await tempDir();
    const spy = vi.spyOn(await fileHandlePrototype(dir), 'sync');
    await writeFileAtomic(join(dir, 'c.png'), new Uint8Array([1]));
    expect(spy).not.toHaveBeenCalled();
  });
});
