/**
 * The board's arithmetic and its round bookkeeping, from one thread: a slice that would have to
 * wait for its partners is given a 1 ms timeout (its lane and its count stay on the board), and
 * the last slice to arrive combines. Threads meeting for real, and a thread lost while others
 * wait: test/any-k.test.ts (in-process runs use the board).
 */
import { describe, expect, it } from 'vitest';
import { BOARD_SPIN_MICROS, BOARD_SPIN_MICROS_OVERSUBSCRIBED, BnBoardClient, BnBoardHost, createBnBoard } from './bn-board.ts';
import { ExchangeRounds } from '../coordinator/bn-rounds.ts';
import { float64ToBytes } from './codec.ts';
import { combineSlices } from './batch-moments.ts';
import { BN_SYNC_ABORTED, BN_SYNC_TIMEOUT } from './bn-sync-errors.ts';
import type { BnSumsMessage } from './protocol.ts';

function sums(round: number, firstSample: number, phase: 'forward' | 'backward', values: number[], layer = 0): BnSumsMessage {
  return { type: 'bn_sums', round, taskId: firstSample + 100, firstSample, layer, phase, sums: float64ToBytes(Float64Array.from(values)) };
}

/** A board for `threads` threads and BatchNorm layers of these channels, with one client per thread. */
function board(channels: number[], threads: number, groupsPerLane = 1) {
  const host = new BnBoardHost(createBnBoard(channels, threads, groupsPerLane));
  const clients = Array.from({ length: threads }, (_, i) => new BnBoardClient(host.attachMessage(i)));
  return { host, clients };
}

function errorCode(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    return (err as { code?: string }).code;
  }
  return undefined;
}

describe('the BatchNorm board', () => {
  it('gives a slice that arrives last the combined moments, and keeps the earlier slices counted', () => {
    const { host, clients } = board([1], 2);
    host.open(1, 2);
    // Slice A = 2 values with mean 1, M2 2 ([0, 2]); slice B = 2 values with mean 11, M2 2 ([10, 12]).
    expect(errorCode(() => clients[0].exchange(sums(1, 0, 'forward', [2, 1, 2]), 1))).toBe(BN_SYNC_TIMEOUT);
    // Whole: n 4, mean 6, M2 = 36 + 16 + 16 + 36 = 104.
    expect(Array.from(clients[1].exchange(sums(1, 2, 'forward', [2, 11, 2]), 1000))).toEqual([4, 6, 104]);
  });

  it('adds in the order of the slices\' first samples, exactly as the message path does', async () => {
    const parts = [sums(1, 8, 'backward', [0.1, 1e16]), sums(1, 0, 'backward', [0.2, 1]), sums(1, 4, 'backward', [0.3, -1e16])];
    const { host, clients } = board([1], 3);
    host.open(1, 3);
    expect(errorCode(() => clients[0].exchange(parts[0], 1))).toBe(BN_SYNC_TIMEOUT);
    expect(errorCode(() => clients[1].exchange(parts[1], 1))).toBe(BN_SYNC_TIMEOUT);
    const onBoard = clients[2].exchange(parts[2], 1000);
    // In slice order (0, 4, 8): 1 + (−1e16) + 1e16 = 0 in float64; in arrival order it would be 1.
    expect(Array.from(onBoard)).toEqual([0.2 + 0.3 + 0.1, 0]);
    const rounds = new ExchangeRounds();
    const r = rounds.start(3, [1]);
    const byMessages = await Promise.all(parts.map((p) => rounds.contribute({ ...p, round: r.id })));
    expect(Array.from(onBoard)).toEqual(Array.from(byMessages[0]));
  });

  it('keeps each layer and phase apart', () => {
    const { host, clients } = board([1, 2], 1);
    host.open(3, 1);
    expect(Array.from(clients[0].exchange(sums(3, 0, 'backward', [5, 6, 7, 8], 1), 1000))).toEqual([5, 6, 7, 8]);
    expect(Array.from(clients[0].exchange(sums(3, 0, 'forward', [1, 2, 0], 0), 1000))).toEqual([1, 2, 0]);
    expect(Array.from(clients[0].exchange(sums(3, 0, 'forward', [1, 2, 3, 0, 0], 1), 1000))).toEqual([1, 2, 3, 0, 0]);
  });

  it('refuses a slice of an ended round, and one of an earlier round once the next is open', () => {
    const { host, clients } = board([1], 2);
    host.open(5, 2);
    expect(errorCode(() => clients[0].exchange(sums(5, 0, 'forward', [1, 1, 0]), 1))).toBe(BN_SYNC_TIMEOUT);
    host.end(5);
    expect(errorCode(() => clients[1].exchange(sums(5, 1, 'forward', [1, 2, 0]), 1000))).toBe(BN_SYNC_ABORTED);
    host.open(6, 2);
    expect(errorCode(() => clients[1].exchange(sums(5, 1, 'forward', [1, 2, 0]), 1000))).toBe(BN_SYNC_ABORTED);
    // Round 5's lane of thread 0 does not count towards round 6: thread 1 alone is one of two.
    expect(errorCode(() => clients[1].exchange(sums(6, 1, 'forward', [1, 2, 0]), 1))).toBe(BN_SYNC_TIMEOUT);
  });

  it('refuses sums that do not fit the layer', () => {
    const { host, clients } = board([2], 1);
    host.open(1, 1);
    expect(errorCode(() => clients[0].exchange(sums(1, 0, 'forward', [1, 2, 3]), 1000))).toBe('DTRAIN_ERR_BN_SYNC_UNSUPPORTED');
    expect(errorCode(() => clients[0].exchange(sums(1, 0, 'forward', [1, 2, 3, 4, 5], 1), 1000))).toBe('DTRAIN_ERR_BN_SYNC_UNSUPPORTED');
  });

  it('takes several vectors per lane with a reduction grain, combining every vector in order', () => {
    // One channel (moments of 3 values); slice 0 sends two groups, slice 1 one.
    const { host, clients } = board([1], 2, 2);
    host.open(1, 2);
    const groups = [[2, 1, 2], [2, 3, 8], [2, 11, 2]];
    expect(errorCode(() => clients[1].exchange(sums(1, 4, 'forward', groups[2]), 1))).toBe(BN_SYNC_TIMEOUT);
    const totals = clients[0].exchange(sums(1, 0, 'forward', [...groups[0], ...groups[1]]), 1000);
    expect(Array.from(totals)).toEqual(Array.from(combineSlices('forward', groups.map((g, i) => ({ firstSample: i * 2, sums: Float64Array.from(g) })), 1)));
    // Count 6, mean (1 + 3 + 11) / 3 = 5.
    expect(totals[0]).toBe(6);
    expect(totals[1]).toBe(5);
    // More vectors than a lane holds, or a part of one, do not fit.
    host.open(2, 2);
    expect(errorCode(() => clients[0].exchange(sums(2, 0, 'forward', [...groups[0], ...groups[1], ...groups[2]]), 1000))).toBe('DTRAIN_ERR_BN_SYNC_UNSUPPORTED');
    expect(errorCode(() => clients[0].exchange(sums(2, 0, 'forward', [1, 2, 3, 4]), 1000))).toBe('DTRAIN_ERR_BN_SYNC_UNSUPPORTED');
  });

  it('opens and ends with the owner\'s round', () => {
    const { host, clients } = board([1], 1);
    const rounds = new ExchangeRounds();
    const r = rounds.start(1, [1], host);
    expect(Array.from(clients[0].exchange(sums(r.id, 0, 'backward', [1, 2]), 1000))).toEqual([1, 2]);
    r.close();
    expect(errorCode(() => clients[0].exchange(sums(r.id, 0, 'backward', [1, 2]), 1000))).toBe(BN_SYNC_ABORTED);
  });

  it('tells its threads to spin long where each has a core, and briefly where they share cores', () => {
    const init = createBnBoard([4], 2);
    expect(new BnBoardHost(init, 2).attachMessage(1)).toMatchObject({ index: 1, spinMicros: BOARD_SPIN_MICROS });
    expect(new BnBoardHost(init, 4).attachMessage(0).spinMicros).toBe(BOARD_SPIN_MICROS);
    expect(new BnBoardHost(init, 1).attachMessage(0).spinMicros).toBe(BOARD_SPIN_MICROS_OVERSUBSCRIBED);
    expect(BOARD_SPIN_MICROS).toBeGreaterThan(BOARD_SPIN_MICROS_OVERSUBSCRIBED);
  });

  it('never spins past the wait\'s time limit', () => {
    const host = new BnBoardHost(createBnBoard([1], 2));
    // A spin of 1 s against a wait of 5 ms: the partner never comes.
    const client = new BnBoardClient({ ...host.attachMessage(0), spinMicros: 1_000_000 });
    host.open(1, 2);
    const started = performance.now();
    expect(errorCode(() => client.exchange(sums(1, 0, 'forward', [2, 1, 2]), 5))).toBe(BN_SYNC_TIMEOUT);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('refuses a spin that is not a duration', () => {
    const host = new BnBoardHost(createBnBoard([1], 2));
    for (const spinMicros of [-1, Number.NaN, 2e6]) expect(() => new BnBoardClient({ ...host.attachMessage(0), spinMicros })).toThrow(/spin must be 0 to 1,000,000 µs/);
  });
});
