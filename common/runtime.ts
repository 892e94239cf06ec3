/** Paths of our own source files, for worker threads and child processes. */
import { fileURLToPath } from 'node:url';

/** Absolute path of a repository file, from a module URL and a relative path. */
export function sourcePath(relative: string, from: string): string {
  return fileURLToPath(new URL(relative, from));
}
