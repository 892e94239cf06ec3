import { describe, expect, it } from 'vitest';
import { MAX_RUN_STEPS, RUN, RunBoard, SCREEN_HISTORY, nextRunId, RUN_IDS } from './step-run.ts';

const board = () => RunBoard.create({ threads: 2, slots: 2, samples: 100 });

describe('the run board', () => {
  it('refuses a shape that is not positive integers, naming the field', () => {
    expect(() => RunBoard.create({ threads: 0, slots: 2, samples: 10 })).toThrow(/threads to be a positive integer, but got 0/);
    expect(() => RunBoard.create({ threads: 2, slots: 1.5, samples: 10 })).toThrow(/slots to be a positive integer, but got 1.5/);
  });

  it('keeps each step and slot record apart, and another thread attached to it reads them', () => {
    const b = board();
    const other = RunBoard.attach(b.init);
    b.writeRecord(0, 1, { lossSum: 1.5, correct: 3, squares: 2.25, computeMs: 0.5, optimizerMs: 0.1, fromBackend: true, endedAt: 7 });
    b.writeRecord(MAX_RUN_STEPS - 1, 0, { lossSum: 9, correct: 1, squares: 4, computeMs: 1, optimizerMs: 2, fromBackend: false, endedAt: 8 });
    expect(other.readRecord(0, 1)).toEqual({ lossSum: 1.5, correct: 3, squares: 2.25, computeMs: 0.5, optimizerMs: 0.1, fromBackend: true, endedAt: 7 });
    expect(other.readRecord(MAX_RUN_STEPS - 1, 0).lossSum).toBe(9);
    expect(other.readRecord(0, 0).lossSum).toBe(0);
    expect(() => b.readRecord(MAX_RUN_STEPS, 0)).toThrow(/within 32 steps and 2 slots, but got step 32, slot 0/);
    expect(() => b.writeRecord(0, 2, other.readRecord(0, 0))).toThrow(/slot 2/);
  });

  it('carries the screen\'s most recent norms and the whole epoch order', () => {
    const b = board();
    const norms = Array.from({ length: SCREEN_HISTORY + 5 }, (_, i) => i + 0.5);
    b.writeHistory(norms);
    expect(RunBoard.attach(b.init).readHistory()).toEqual(norms.slice(5));
    b.writeHistory([2]);
    expect(b.readHistory()).toEqual([2]);
    expect(b.order).toHaveLength(100);
  });
});

describe('the run board\'s barrier', () => {
  it('lets the last of the threads through at once, and the others once it has arrived', async () => {
    const b = board();
    b.open(3);
    const first = b.arrive(3, 2, 1, 0, 1_000);
    expect(await b.arrive(3, 2, 1, 0, 1_000)).toBe(true);
    expect(await first).toBe(true);
    // Generation 2 needs two more arrivals.
    const again = b.arrive(3, 2, 2, 0, 1_000);
    expect(await b.arrive(3, 2, 2, 0, 1_000)).toBe(true);
    expect(await again).toBe(true);
  });

  it('changes nothing for a thread of an older run, and releases the waiters of an aborted one', async () => {
    const b = board();
    b.open(5);
    expect(await b.arrive(4, 2, 1, 0, 1_000)).toBe(false);
    expect(Atomics.load(b.words, RUN.barrier) & 0xfffff).toBe(0);
    const waiting = b.arrive(5, 2, 1, 0, 10_000);
    b.abort(5);
    expect(await waiting).toBe(false);
    expect(await b.arrive(5, 2, 1, 0, 1_000)).toBe(false);
  });

  it('gives the run up for everyone when its wait runs out', async () => {
    const b = board();
    b.open(1);
    const started = performance.now();
    expect(await b.arrive(1, 2, 1, 0, 30)).toBe(false);
    expect(performance.now() - started).toBeGreaterThanOrEqual(30);
    expect(b.aborted(1)).toBe(true);
    // A new run starts clean.
    b.open(2);
    expect(b.aborted(2)).toBe(false);
  });
});

describe('run ids', () => {
  it('wraps run ids within 1..RUN_IDS', () => {
    expect(nextRunId(0)).toBe(1);
    expect(nextRunId(RUN_IDS)).toBe(1);
    expect(nextRunId(7)).toBe(8);
  });
});
