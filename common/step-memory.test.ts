import { describe, expect, it } from 'vitest';
import { Worker } from 'node:worker_threads';
import { CTL, F64, MAX_ROUND_SLOTS, abortRound, arriveAtRound, dozeWhileEqual, finishStripe, nextRound, openRound, publish, readSliceFields, stripesWritten, waitWhileEqual, writeAdamScalars, writeSliceFields, StepMemory } from './step-memory.ts';
import type { SliceTask } from './protocol.ts';

describe('a train command\'s slice fields', () => {
  const cases: SliceTask[] = [
    { taskId: 7 },
    // A seed above 2^31 survives the Int32 word.
    { taskId: 8, position: { seed: 0xfffffff0, step: 1234, firstSample: 21 }, batchNorm: { mode: 'sync', round: 99, timeoutMs: 60_000 } },
    { taskId: 9, position: { seed: 42, step: 0, firstSample: 0 }, batchNorm: { mode: 'local' } },
  ];
  for (const task of cases) {
    it(`read back what was written (${task.batchNorm?.mode ?? 'no BatchNorm'})`, () => {
      const words = new Int32Array(64).fill(-1);
      writeSliceFields(words, 32, task);
      expect(readSliceFields(words, 32)).toEqual({ position: undefined, batchNorm: undefined, ...task });
    });
  }
});

// A control block, and a promise's outcome if it settles within 30 ms.
const ctl = () => new Int32Array(new SharedArrayBuffer(64 * 4));
const settled = async <T>(p: Promise<T>) => Promise.race([p, new Promise<'pending'>((r) => setTimeout(() => r('pending'), 30))]);

describe('the fused round\'s barrier', () => {
  // "Threads" here are async calls on this thread: a waiter sleeps in Atomics.waitAsync, so the others run.

  it('lets every thread through once the last of `expected` has arrived, and not before', async () => {
    const c = ctl();
    openRound(c, 5);
    const first = arriveAtRound(c, 5, 3, 10_000, 0);
    const second = arriveAtRound(c, 5, 3, 10_000, 0);
    expect(await settled(first)).toBe('pending');
    expect(await settled(second)).toBe('pending');
    expect(await arriveAtRound(c, 5, 3, 10_000, 0)).toBe(true);
    expect(await first).toBe(true);
    expect(await second).toBe(true);
  });

  it('releases the waiting threads with false when the owner aborts the round, and counts no later arrival', async () => {
    const c = ctl();
    openRound(c, 9);
    const waiting = arriveAtRound(c, 9, 2, 10_000, 0);
    expect(await settled(waiting)).toBe('pending');
    abortRound(c, 9);
    expect(await waiting).toBe(false);
    expect(await arriveAtRound(c, 9, 2, 10_000, 0)).toBe(false);
  });

  it('ignores a thread of an older round: it neither counts in the new one nor waits', async () => {
    const c = ctl();
    openRound(c, 3);
    openRound(c, nextRound(3));
    expect(await arriveAtRound(c, 3, 1, 10_000, 0)).toBe(false);
    // The older round's abort leaves the newer one alone: one arrival completes it.
    abortRound(c, 3);
    expect(await arriveAtRound(c, 4, 1, 10_000, 0)).toBe(true);
  });

  it('gives up after the wait, spinning first when asked, and aborts the round: a later arrival cannot complete it', async () => {
    const c = ctl();
    openRound(c, 1);
    const started = performance.now();
    expect(await arriveAtRound(c, 1, 2, 40, 5_000)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(39);
    expect(await arriveAtRound(c, 1, 2, 10_000, 0)).toBe(false);
  });

  it('wraps its round number within the word and keeps arrivals below the abort mark', () => {
    expect(nextRound(1)).toBe(2);
    expect(nextRound(0x7fffff)).toBe(1);
    const c = ctl();
    openRound(c, 0x7fffff);
    expect(Atomics.load(c, CTL.round)).toBe(0x7fffff00);
    expect(MAX_ROUND_SLOTS).toBeLessThan(0xff);
  });
});

describe('the fused round\'s stripe count (a pass ahead waits for every stripe: coordinator/step-ahead.ts)', () => {

  it('resolves true once `expected` stripes of the round are written, and not before', async () => {
    const c = ctl();
    openRound(c, 6);
    const waiting = stripesWritten(c, 6, 2, 10_000);
    finishStripe(c, 6);
    expect(await settled(waiting)).toBe('pending');
    finishStripe(c, 6);
    expect(await waiting).toBe(true);
  });

  it('counts no stripe of an older round in a newer one, and says true to an older round\'s waiter (the owner has moved on)', async () => {
    const c = ctl();
    openRound(c, 2);
    const older = stripesWritten(c, 2, 2, 10_000);
    expect(await settled(older)).toBe('pending');
    const opened = performance.now();
    openRound(c, nextRound(2));
    expect(await older).toBe(true);
    // Woken by the new round, not released by its own 10 s wait.
    expect(performance.now() - opened).toBeLessThan(5_000);
    finishStripe(c, 2);
    expect(Atomics.load(c, CTL.stripesDone)).toBe(3 << 8);
    const newer = stripesWritten(c, 3, 1, 10_000);
    expect(await settled(newer)).toBe('pending');
    finishStripe(c, 3);
    expect(await newer).toBe(true);
  });

  it('gives up with false after the wait when a stripe never comes (a partner gone mid-stripe)', async () => {
    const c = ctl();
    openRound(c, 4);
    finishStripe(c, 4);
    const started = performance.now();
    expect(await stripesWritten(c, 4, 2, 40)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(39);
  });

  it('spins no longer than its wait: a 5 s spin still gives up after the 40 ms wait', async () => {
    const c = ctl();
    openRound(c, 4);
    const started = performance.now();
    expect(await stripesWritten(c, 4, 1, 40, 5_000_000)).toBe(false);
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(39);
    expect(took).toBeLessThan(2_000);
  });
});

describe('a new step memory', () => {
  it('has every page mapped when it is made (common/populate.ts), not at each page\'s first write in a step; an attached view maps nothing', () => {
    const mem = StepMemory.create({ trainable: 402_250, stats: 0, slots: 1, slotSamples: 32, threads: 1 });
    expect(mem.populated?.bytes).toBe(mem.memory.buffer.byteLength);
    const bytes = new Uint8Array(mem.memory.buffer);
    const before = process.resourceUsage().minorPageFault;
    for (let i = 0; i < bytes.length; i += 4096) bytes[i] = 1;
    expect(process.resourceUsage().minorPageFault - before).toBeLessThan(bytes.length / 4096 / 16);
    expect(StepMemory.attach(mem.init).populated).toBeUndefined();
  });
});

describe('a completion word: publish, waitWhileEqual and the owner\'s doze', () => {
  const WORD = 0;
  const SLEEPERS = 1;
  const waitAsync = (Atomics as unknown as { waitAsync: (a: Int32Array, i: number, v: number, t?: number) => { async: boolean; value: Promise<string> | string } }).waitAsync;

  it('counts each sleeper on the word, and a publish wakes them all', async () => {
    const c = ctl();
    const a = waitWhileEqual(c, WORD, 0, 0, SLEEPERS);
    const b = waitWhileEqual(c, WORD, 0, 0, SLEEPERS);
    expect(await settled(a)).toBe('pending');
    expect(Atomics.load(c, SLEEPERS)).toBe(2);
    publish(c, WORD, 1, SLEEPERS);
    await Promise.all([a, b]);
    expect(Atomics.load(c, SLEEPERS)).toBe(0);
  });

  it('skips the notify while nobody is counted asleep, and notifies once someone is', async () => {
    const c = ctl();
    const uncounted = waitAsync(c, WORD, 0, 200);
    publish(c, WORD, 1, SLEEPERS);
    expect(await uncounted.value).toBe('timed-out');
    const counted = waitAsync(c, WORD, 1, 5_000);
    Atomics.add(c, SLEEPERS, 1);
    publish(c, WORD, 2, SLEEPERS);
    expect(await counted.value).toBe('ok');
  });

  it('dozes through a store from another thread that comes with no notify, never counted asleep', async () => {
    const c = ctl();
    // The thread stores after ~20 ms, without a notify, and records the sleepers it saw then.
    const thread = new Worker(`
      const { workerData } = require('node:worker_threads');
      const c = new Int32Array(workerData);
      const until = Date.now() + 20; while (Date.now() < until);
      Atomics.store(c, 2, Atomics.load(c, ${SLEEPERS}));
      Atomics.store(c, ${WORD}, 1);
    `, { eval: true, workerData: c.buffer });
    try {
      await dozeWhileEqual(c, WORD, 0, SLEEPERS, 10_000_000);
      expect(Atomics.load(c, WORD)).toBe(1);
      expect(Atomics.load(c, 2)).toBe(0);
    } finally {
      await thread.terminate();
    }
  });

  it('past its doze, sleeps counted (the event loop runs again), so a publish with a notify wakes it', async () => {
    const c = ctl();
    const started = performance.now();
    const waiting = dozeWhileEqual(c, WORD, 0, SLEEPERS, 2_000);
    // A timer fires while it waits: the doze held the event loop no longer than it was allowed.
    await new Promise((r) => setTimeout(r, 30));
    expect(Atomics.load(c, SLEEPERS)).toBe(1);
    expect(performance.now() - started).toBeLessThan(5_000);
    publish(c, WORD, 1, SLEEPERS);
    await waiting;
    expect(Atomics.load(c, SLEEPERS)).toBe(0);
  });

  it('returns at once when the word has already moved', async () => {
    const c = ctl();
    Atomics.store(c, WORD, 3);
    await dozeWhileEqual(c, WORD, 2, SLEEPERS, 10_000_000);
    expect(Atomics.load(c, SLEEPERS)).toBe(0);
  });
});

describe('Adam\'s bias corrections in the control block (writeAdamScalars)', () => {
  it('writes the step size and square-root correction of step t', () => {
    const f64 = new Float64Array(8);
    writeAdamScalars(f64, { learningRate: 0.001, beta1: 0.9, beta2: 0.999 }, 1);
    expect(f64[F64.stepSize]).toBeCloseTo(0.001 / 0.1, 12);
    expect(f64[F64.sqrtCorrection]).toBeCloseTo(1 / Math.sqrt(0.001), 9);
  });
});
