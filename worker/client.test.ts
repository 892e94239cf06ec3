import { describe, expect, it, vi } from 'vitest';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { backoffDelay, GiveUp } from './client.ts';

// backoffDelay is pure; the compute thread module resolves tsx through `import.meta.resolve`
// at import time, which vitest's module runner does not provide.
vi.mock('./compute-thread.ts', () => ({ ComputeThread: class {} }));

const MIN = 250;
const MAX = 5000;
/** The largest value a `Math.random`-like source can return. */
const almostOne = () => 1 - 2 ** -32;

describe('backoffDelay', () => {
  it('doubles its ceiling with each attempt', () => {
    // With random ≈ 1 the delay is one under the ceiling min·2^attempt = 250, 500, 1000, 2000, 4000,
    // except at attempt 0, where 249 is raised to the minimum 250.
    const delays = [0, 1, 2, 3, 4].map((attempt) => backoffDelay(attempt, MIN, MAX, almostOne));
    expect(delays).toEqual([250, 499, 999, 1999, 3999]);
  });

  it('never exceeds the maximum, however many attempts', () => {
    for (const attempt of [5, 6, 10, 30, 100, 2000]) {
      expect(backoffDelay(attempt, MIN, MAX, almostOne)).toBeLessThan(MAX);
      expect(backoffDelay(attempt, MIN, MAX, almostOne)).toBeGreaterThanOrEqual(MAX - 1);
    }
  });

  it('never goes below the minimum, even when the random source returns 0', () => {
    for (const attempt of [0, 1, 5, 50]) expect(backoffDelay(attempt, MIN, MAX, () => 0)).toBe(MIN);
  });

  it('scales the ceiling by the random draw (full jitter)', () => {
    // attempt 3: ceiling = min(5000, 250·8) = 2000; draws 0.25, 0.5 and 0.75 give 500, 1000 and 1500.
    expect(backoffDelay(3, MIN, MAX, () => 0.25)).toBe(500);
    expect(backoffDelay(3, MIN, MAX, () => 0.5)).toBe(1000);
    expect(backoffDelay(3, MIN, MAX, () => 0.75)).toBe(1500);
  });

  it('draws from the given random source exactly once per delay', () => {
    let calls = 0;
    backoffDelay(2, MIN, MAX, () => {
      calls++;
      return 0.5;
    });
    expect(calls).toBe(1);
  });

  it('returns whole milliseconds within [min, max] for any draw', () => {
    for (let attempt = 0; attempt < 12; attempt++) {
      for (const r of [0, 0.01, 0.3, 0.77, 0.999]) {
        const d = backoffDelay(attempt, MIN, MAX, () => r);
        expect(Number.isInteger(d)).toBe(true);
        expect(d).toBeGreaterThanOrEqual(MIN);
        expect(d).toBeLessThanOrEqual(MAX);
      }
    }
  });
});

describe('GiveUp', () => {
  it('gives up when the same error ends maxSame connections in a row', () => {
    const g = new GiveUp(3, 0, () => 0);
    expect(g.record({ errorCode: 'DTRAIN_ERR_MODEL_MISMATCH', reached: true })).toBeUndefined();
    expect(g.record({ errorCode: 'DTRAIN_ERR_MODEL_MISMATCH', reached: true })).toBeUndefined();
    expect(g.record({ errorCode: 'DTRAIN_ERR_MODEL_MISMATCH', reached: true })).toMatch(/DTRAIN_ERR_MODEL_MISMATCH\) ended 3 connections in a row/);
  });

  it('starts counting again after a different error or a clean end', () => {
    const g = new GiveUp(2, 0, () => 0);
    expect(g.record({ errorCode: 'A', reached: true })).toBeUndefined();
    expect(g.record({ errorCode: 'B', reached: true })).toBeUndefined();
    expect(g.record({ reached: true })).toBeUndefined();
    expect(g.record({ errorCode: 'B', reached: true })).toBeUndefined();
  });

  it('gives up after giveUpAfterMs without reaching the coordinator, and not before', () => {
    let now = 0;
    const g = new GiveUp(3, 10_000, () => now);
    now = 9_999;
    expect(g.record({ reached: false })).toBeUndefined();
    now = 10_000;
    expect(g.record({ reached: false })).toMatch(/could not reach the coordinator for 10 s/);
  });

  it('counts the time from the last welcome, not from the start', () => {
    let now = 0;
    const g = new GiveUp(3, 10_000, () => now);
    now = 8_000;
    g.record({ reached: true });
    now = 17_000;
    expect(g.record({ reached: false })).toBeUndefined();
  });
});

describe('the WebSocket library', () => {
  it('masks and unmasks frames with the native bufferutil, not its JavaScript loop', () => {
    // A client masks every frame it sends (RFC 6455) and the server unmasks it: in JavaScript that
    // is 0.29-0.37 ms per 248 KB gradient, against 5-6 µs natively (ws loads bufferutil when present).
    const require = createRequire(import.meta.url);
    const bufferUtil = require('bufferutil') as { mask: () => void; unmask: () => void };
    expect(bufferUtil.mask.toString()).toContain('[native code]');
    expect(bufferUtil.unmask.toString()).toContain('[native code]');
    const wsUtil = require(join(dirname(require.resolve('ws')), 'lib', 'buffer-util.js')) as { mask: () => void; unmask: () => void };
    expect(wsUtil.mask.toString()).toContain('bufferUtil.mask');
    expect(wsUtil.unmask.toString()).toContain('bufferUtil.unmask');
  });
});
