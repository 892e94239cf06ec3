import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { BACKGROUND_NICE, chrtIdle, idleBackgroundThreads, quietBackgroundThreads, setNodeThreads, threadIds } from './background-threads.ts';

const linux = process.platform === 'linux';
/** SCHED_OTHER and SCHED_IDLE, as /proc/<pid>/task/<tid>/sched numbers them. */
const [OTHER, IDLE] = [0, 5];

function policyOf(tid: number): number {
  return Number(/^policy\s*:\s*(\d+)$/m.exec(readFileSync(`/proc/self/task/${tid}/sched`, 'utf8'))![1]);
}

/** A thread's nice value, from /proc (field 19 of its stat line; the name in field 2 may hold spaces). */
function niceOf(tid: number): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

/** A thread of our own that says its id: it stands for one of Node's. */
async function thread(): Promise<{ tid: number; stop: () => Promise<number> }> {
  const source = "const { parentPort } = require('node:worker_threads'); parentPort.postMessage(Number(require('node:fs').readlinkSync('/proc/thread-self').split('/').pop())); setInterval(() => {}, 1000);";
  const w = new Worker(source, { eval: true });
  const tid = (await new Promise((resolve) => w.once('message', resolve))) as number;
  return { tid, stop: () => w.terminate() };
}

const threads: { stop: () => Promise<number> }[] = [];
afterEach(async () => {
  await Promise.all(threads.splice(0).map((t) => t.stop()));
});

describe('idleBackgroundThreads', () => {
  it('puts the listed threads, and no other, under SCHED_IDLE (Linux, chrt)', { skip: !linux }, async () => {
    const [listed, other] = [await thread(), await thread()];
    threads.push(listed, other);
    expect(threadIds()).toEqual(expect.arrayContaining([process.pid, listed.tid, other.tid]));
    expect(await idleBackgroundThreads([process.pid, listed.tid])).toEqual({ idle: 1, nice: 0 });
    expect(policyOf(listed.tid)).toBe(IDLE);
    expect(policyOf(process.pid)).toBe(OTHER);
    expect(policyOf(other.tid)).toBe(OTHER);
  });

  it('sets nice 19 where SCHED_IDLE cannot be had (Linux)', { skip: !linux }, async () => {
    const t = await thread();
    threads.push(t);
    expect(await idleBackgroundThreads([t.tid], { idle: async (tids) => [...tids] })).toEqual({ idle: 0, nice: 1 });
    expect(niceOf(t.tid)).toBe(BACKGROUND_NICE);
    expect(policyOf(t.tid)).toBe(OTHER);
  });

  it('reports a thread chrt could not reach as left as it was (Linux)', { skip: !linux }, async () => {
    // Above the kernel's largest thread id (pid_max is at most 2^22): no such thread.
    expect(await chrtIdle([2 ** 22 + 1])).toEqual([2 ** 22 + 1]);
  });

  it('changes nothing off Linux, never the main thread, and counts only threads it could lower', async () => {
    const lowered: number[] = [];
    const set = (tid: number) => {
      if (tid === 3) throw Object.assign(new Error('no such process'), { code: 'ESRCH' });
      lowered.push(tid);
    };
    const refuse = async (tids: readonly number[]) => [...tids];
    expect(await idleBackgroundThreads([1, 2], { platform: 'darwin', idle: refuse, setPriority: set })).toEqual({ skipped: 'thread scheduling is per process on darwin' });
    expect(await idleBackgroundThreads([1], { platform: 'linux', pid: 1, idle: refuse, setPriority: set })).toEqual({ skipped: "no thread of Node's own was listed at start" });
    expect(lowered).toEqual([]);
    const asked: number[][] = [];
    const half = async (tids: readonly number[]) => (asked.push([...tids]), tids.filter((t) => t !== 2));
    expect(await idleBackgroundThreads([1, 2, 3, 4], { platform: 'linux', pid: 1, idle: half, setPriority: set })).toEqual({ idle: 1, nice: 1 });
    expect(asked).toEqual([[2, 3, 4]]);
    // 3 and 4 were left by chrt: 4 got nice 19, 3 had exited.
    expect(lowered).toEqual([4]);
  });
});

describe('quietBackgroundThreads', () => {
  it('does nothing with DTRAIN_IDLE_BACKGROUND=0, and otherwise acts and logs once per process (Linux)', { skip: !linux }, async () => {
    const t = await thread();
    threads.push(t);
    setNodeThreads([process.pid, t.tid]);
    const lines: unknown[] = [];
    const log = { info: (o: unknown) => lines.push(o), debug: (o: unknown) => lines.push(o) };
    await quietBackgroundThreads(log, { DTRAIN_IDLE_BACKGROUND: '0' });
    expect(lines).toEqual([]);
    expect(policyOf(t.tid)).toBe(OTHER);
    await quietBackgroundThreads(log, {});
    await quietBackgroundThreads(log, {});
    expect(lines).toEqual([{ event: 'background_threads', idle: 1, nice: 0 }]);
    expect(policyOf(t.tid)).toBe(IDLE);
  });
});
