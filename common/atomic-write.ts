/**
 * Whole-file replacement: a reader (a browser refreshing loss.png while training runs) sees either
 * the old file or the new one, never half of one. The temporary file sits in the same folder so
 * that rename stays on one file system, where it is atomic.
 *
 * With `durable`, the write also survives a power loss once it has returned: the file's data is
 * fsynced before the rename (or a crash could leave the new name on an empty file), and the folder
 * is fsynced after it (or the rename itself could be lost). Checkpoints need this; pictures do not.
 */
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

let counter = 0;

export interface WriteOptions {
  /** fsync the file before the rename and the folder after it. Default false. */
  durable?: boolean;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: WriteOptions = {}): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const temporary = join(dir, `.${basename(path)}.${process.pid}.${counter++}.tmp`);
  try {
    const file = await open(temporary, 'w');
    try {
      await file.writeFile(data);
      if (options.durable) await file.sync();
    } finally {
      await file.close();
    }
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
  if (options.durable) await syncFolder(dir);
}

/** Makes a folder's entries (new names, renames, removals) durable. */
export async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
