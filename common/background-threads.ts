/**
 * Node's own threads on what training leaves idle.
 *
 * Node starts a pool of platform threads (four by default) on which V8 compiles hot JavaScript with
 * TurboFan for every isolate in the process: the owning thread's and each compute thread's. dtrain
 * keeps its cores busy with those isolates' threads, and the compile jobs they queue ran at the same
 * priority: on this 2-core machine the pool took 150-250 ms of CPU a second all through an mlp run
 * (`perf record`: OptimizingCompileDispatcher), preempting the step's threads a scheduler slice at a
 * time. Under SCHED_IDLE a pool thread runs when a core would otherwise idle (the owning thread
 * waits on its compute thread for most of a step), and the compiled code still arrives.
 * docs/shared-step.md, "Node's threads under SCHED_IDLE", has the measurements.
 *
 * Which threads: those bin/dtrain.js finds when it starts, before tsx registers its module loader
 * (whose thread answers every import synchronously, so it must not wait for a core): Node's platform
 * pool, libuv's file-system pool and Node's idle helper threads. Threads made later, such as the
 * compute threads, keep the default policy. When: once the workers are ready, just before the first
 * step, so that start-up (the backends' WebAssembly compiles run on the same pool) is not slowed.
 * Where: `dtrain train` and `dtrain coordinator` (runJob). A `dtrain worker` process keeps its threads
 * as they are: over WebSockets the change measured within the noise (lenet, K=1 and K=2, 3 pairs).
 *
 * How: `chrt --idle` (util-linux, on every Debian system) per thread, as Node has no binding for
 * sched_setscheduler; where that fails, nice 19 through os.setPriority (Linux's nice value is a
 * per-thread attribute, and setpriority(PRIO_PROCESS, tid) sets one thread's). Linux only.
 * DTRAIN_IDLE_BACKGROUND=0 leaves the threads as they are.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';
import type { Logger } from './logger.ts';

/** The nice value of the fallback: the lowest priority an unprivileged process can set. */
export const BACKGROUND_NICE = 19;

/** Per policy, the threads set to it; or why none was. */
export type BackgroundThreads = { idle: number; nice: number } | { skipped: string };

export interface BackgroundThreadsOptions {
  platform?: NodeJS.Platform;
  /** The main thread's id (the process id): never lowered. */
  pid?: number;
  /** Puts threads under SCHED_IDLE; resolves to those it could not (all of them when it cannot run). */
  idle?: (tids: readonly number[]) => Promise<number[]>;
  setPriority?: (tid: number, nice: number) => void;
}

/** The ids of this process's threads now (Linux; empty elsewhere or when they cannot be listed). */
export function threadIds(tasks = '/proc/self/task'): number[] {
  try {
    return readdirSync(tasks).map(Number).filter((tid) => Number.isInteger(tid) && tid > 0);
  } catch {
    return [];
  }
}

/**
 * `chrt --idle --pid 0 <tid>` for each thread, from one shell (one process started from Node, where a
 * start costs ~25 ms: ~60 ms in all against ~270 ms for one `chrt` each). Resolves to the threads
 * left as they were.
 */
export function chrtIdle(tids: readonly number[]): Promise<number[]> {
  const script = 'for t do chrt --idle --pid 0 "$t" 2>/dev/null || echo "$t"; done';
  return new Promise((resolve) => {
    execFile('sh', ['-c', script, 'sh', ...tids.map(String)], { timeout: 5000 }, (err, stdout) => {
      resolve(err ? [...tids] : stdout.split('\n').filter(Boolean).map(Number));
    });
  });
}

/** Puts threads `tids` (the main thread excepted) under SCHED_IDLE, or at nice 19 where that fails. */
export async function idleBackgroundThreads(tids: readonly number[], options: BackgroundThreadsOptions = {}): Promise<BackgroundThreads> {
  const { platform = process.platform, pid = process.pid, idle = chrtIdle, setPriority: set = setPriority } = options;
  if (platform !== 'linux') return { skipped: `thread scheduling is per process on ${platform}` };
  const ids = tids.filter((tid) => tid !== pid);
  if (ids.length === 0) return { skipped: "no thread of Node's own was listed at start" };
  const left = new Set(await idle(ids));
  const done = { idle: ids.length - left.size, nice: 0 };
  for (const tid of left) {
    try {
      set(tid, BACKGROUND_NICE);
      done.nice++;
    } catch {
      // The thread has exited meanwhile (ESRCH): nothing to lower.
    }
  }
  return done;
}

let nodeThreads: readonly number[] = [];
let quieted: Promise<void> | undefined;

/** bin/dtrain.js: the threads it found at start (Node's own). */
export function setNodeThreads(tids: readonly number[]): void {
  nodeThreads = tids;
}

/**
 * Once per process, just before training starts: Node's threads under SCHED_IDLE (or nice 19), and
 * a `background_threads` line saying so. Never fails: a thread left as it was costs speed only.
 */
export function quietBackgroundThreads(log: Pick<Logger, 'info' | 'debug'>, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (env.DTRAIN_IDLE_BACKGROUND === '0') return Promise.resolve();
  quieted ??= idleBackgroundThreads(nodeThreads).then(
    (r) => {
      if ('skipped' in r) log.debug({ event: 'background_threads', skipped: r.skipped }, `Node's threads left as they are: ${r.skipped}`);
      else log.info({ event: 'background_threads', idle: r.idle, nice: r.nice }, `Node's background threads yield to training: ${r.idle} under SCHED_IDLE${r.nice ? `, ${r.nice} at nice ${BACKGROUND_NICE}` : ''}`);
    },
    () => {},
  );
  return quieted;
}
