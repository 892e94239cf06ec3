/**
 * How our TypeScript sources are run: through tsx's loader, registered with `--import`. Worker
 * threads and child processes need the same flag; resolving tsx to an absolute URL lets them start
 * whatever the current directory is.
 */
import { fileURLToPath } from 'node:url';

const tsxUrl = import.meta.resolve('tsx');

/** Node flags that let a new thread or process import .ts files. */
export const TS_EXEC_ARGV: readonly string[] = ['--import', tsxUrl];

/** Absolute path of a repository file, from a module URL and a relative path. */
export function sourcePath(relative: string, from: string): string {
  return fileURLToPath(new URL(relative, from));
}
