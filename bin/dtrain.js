#!/usr/bin/env -S node --single-threaded-gc
// Runs the TypeScript sources through tsx's loader, so there is no build step to forget.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../coordinator/cli/main.ts');
await main(process.argv);
// Logs are written synchronously, so nothing is lost by exiting now; a stray handle cannot keep
// a finished job alive.
process.exit(process.exitCode ?? 0);
