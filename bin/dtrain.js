#!/usr/bin/env -S node --single-threaded-gc
// Runs the TypeScript sources through tsx's loader, so there is no build step to forget.
import { readdirSync } from 'node:fs';
import { register } from 'tsx/esm/api';

// Node's own threads (its V8 platform pool), listed before tsx's loader thread exists: once training
// starts they run on idle cores only (common/background-threads.ts).
let nodeThreads = [];
try {
  if (process.platform === 'linux') nodeThreads = readdirSync('/proc/self/task').map(Number);
} catch {
  // No /proc (some sandboxes): the threads keep their priority.
}
register();
const { main } = await import('../coordinator/cli/main.ts');
await main(process.argv, nodeThreads);
// Logs are written synchronously, so nothing is lost by exiting now; a stray handle cannot keep
// a finished job alive.
process.exit(process.exitCode ?? 0);
