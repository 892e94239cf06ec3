import type { Logger } from './logger.ts';

/**
 * How V8 collects garbage in this process. dtrain starts Node with `--single-threaded-gc` (the
 * shebang of bin/dtrain.js, the Dockerfile, npm start and every script that runs it): V8 then
 * collects on the thread that allocates, instead of on a pool of background threads. dtrain keeps
 * every core busy with a compute thread, so those background threads could only take a core from
 * one; on this 2-core machine they used about 17% of both cores in a steady lenet run (docs/shared-step.md,
 * "Garbage collection on the allocating thread"). The flag must be given when Node starts: V8's
 * flags are frozen once it runs, and NODE_OPTIONS does not accept this one.
 */
export const GC_FLAG = '--single-threaded-gc';

/** GC_FLAG as V8 accepts it: dashes or underscores, `--no-` to negate, `=true`/`=false`. */
const SPELLINGS = /^--(?<no>no[-_])?single[-_]threaded[-_]gc(?:=(?<value>true|false))?$/;

export interface GcMode {
  /** 'single-threaded': started with GC_FLAG; 'background threads': V8's default. */
  gc: 'single-threaded' | 'background threads';
}

/** The mode this process runs in, from the flags Node was started with. */
export function gcMode(execArgv: readonly string[] = process.execArgv): GcMode {
  // V8 reads dashes and underscores alike, and takes an explicit true (the last mention wins).
  let last: Record<string, string | undefined> | undefined;
  for (const a of execArgv) last = SPELLINGS.exec(a)?.groups ?? last;
  return { gc: last !== undefined && !last.no && last.value !== 'false' ? 'single-threaded' : 'background threads' };
}

/** A hint for the log when the flag is missing (undefined when it is there). */
export function gcHint(mode: GcMode = gcMode()): string | undefined {
  return mode.gc === 'single-threaded' ? undefined : `V8 collects garbage on background threads, which take cores from the compute threads: start Node with ${GC_FLAG} (as bin/dtrain.js's own shebang does)`;
}

/** Logs the hint (event gc_background_threads) when the flag is missing. */
export function warnGcMode(log: Pick<Logger, 'warn'>, mode: GcMode = gcMode()): void {
  const hint = gcHint(mode);
  if (hint) log.warn({ event: 'gc_background_threads', flag: GC_FLAG }, hint);
}
