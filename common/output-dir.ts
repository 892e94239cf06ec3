/**
 * The folders a user names for output (`--out`, `--log-file`'s folder), made before any work. Each
 * missing level is made on its own instead of by Node's recursive mkdir, which never returns for a
 * path under a file system that refuses new entries (it loops on ENOENT under /proc), and every
 * refusal becomes a ConfigError naming the flag, what it pointed at and why.
 */
import { accessSync, constants, mkdirSync, rmdirSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './errors.ts';

type Kind = 'folder' | 'other' | 'missing';

function kindOf(path: string, flag: string, given: string): Kind {
  try {
    return statSync(path).isDirectory() ? 'folder' : 'other';
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOTDIR: a level above is a file, which the walk up reaches next.
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
    throw new ConfigError(`${flag} ${given}: cannot look at ${path} (${code}).`);
  }
}

/**
 * Makes folder `dir` and whatever levels above it are missing; `flag` names it in errors. Returns the
 * folders it made, outermost first, for `removeMadeDirs` if the run fails before writing anything.
 */
export function makeOutputDir(dir: string, flag: string, opts: { checkWritable?: boolean } = {}): string[] {
  const missing: string[] = [];
  let at = resolve(dir);
  for (;;) {
    const kind = kindOf(at, flag, dir);
    if (kind === 'folder') break;
    if (kind === 'other') throw new ConfigError(`${flag} ${dir}: ${at} exists and is not a folder.`);
    missing.push(at);
    const up = dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const level of missing.reverse()) {
    try {
      mkdirSync(level);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST' && kindOf(level, flag, dir) === 'folder') continue; // made meanwhile
      throw new ConfigError(`${flag} ${dir}: cannot create the folder ${level} (${code}).`);
    }
  }
  // A folder the run writes files into must be writable; one that only holds a file given by name
  // (--log-file /dev/stdout, or a file made ahead in a folder we cannot write) need not be.
  if (opts.checkWritable ?? true) {
    try {
      accessSync(dir, constants.W_OK);
    } catch (err) {
      throw new ConfigError(`${flag} ${dir}: the folder is not writable (${(err as NodeJS.ErrnoException).code}).`);
    }
  }
  return missing;
}

/** Removes the folders `makeOutputDir` made, innermost first, as long as they are still empty. */
export function removeMadeDirs(made: readonly string[]): void {
  for (const level of [...made].reverse()) {
    try {
      rmdirSync(level);
    } catch {
      return; // not empty (or gone): what is above it stays too
    }
  }
}
