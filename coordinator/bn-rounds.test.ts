import { describe, expect, it } from 'vitest';
import { ExchangeRounds } from './bn-rounds.ts';
import { bytesToFloat64, float64ToBytes } from '../common/codec.ts';
import { BN_SYNC_ABORTED } from '../common/bn-sync-errors.ts';
import type { BnSumsMessage } from '../common/protocol.ts';

function sums(round: number, firstSample: number, phase: 'forward' | 'backward', values: number[], layer = 0): BnSumsMessage {
  return { type: 'bn_sums', round, taskId: firstSample + 100, firstSample, layer, phase, sums: float64ToBytes(Float64Array.from(values)) };
}

describe('BatchNorm exchange rounds', () => {
  it('answers every slice with the combined moments once all have sent theirs', async () => {
    const rounds = new ExchangeRounds();
    const r = rounds.start(2, [1]);
    // One channel: slice A = 2 values with mean 1, M2 2 ([0, 2]); slice B = 2 values with mean 11, M2 2 ([10, 12]).
    const a = rounds.contribute(sums(r.id, 0, 'forward', [2, 1, 2]));
    const b = rounds.contribute(sums(r.id, 2, 'forward', [2, 11, 2]));
    // Whole: n 4, mean 6, M2 = 36 + 16 + 16 + 36 = 104.
    expect(Array.from(await a)).toEqual([4, 6, 104]);
    expect(Array.from(await b)).toEqual([4, 6, 104]);
  });

  it('adds backward sums, in slice order whatever the arrival order', async () => {
    const rounds = new ExchangeRounds();
    const r = rounds.start(3, [1]);
    const answers = [sums(r.id, 8, 'backward', [0.1, 1e16]), sums(r.id, 0, 'backward', [0.2, 1]), sums(r.id, 4, 'backward', [0.3, -1e16])].map((m) => rounds.contribute(m));
    const totals = await Promise.all(answers);
    // In slice order (0, 4, 8): 1 + (−1e16) + 1e16 = 0 in float64; in arrival order it would be 1.
    expect(Array.from(totals[0])).toEqual([0.2 + 0.3 + 0.1, 0]);
  });

  it('aborts the waiting slices and refuses later ones when the round is abandoned', async () => {
    const rounds = new ExchangeRounds();
    const r = rounds.start(3, [1]);
    const waiting = rounds.contribute(sums(r.id, 0, 'forward', [1, 0, 0]));
    r.abort('worker-2 left');
    await expect(waiting).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    await expect(rounds.contribute(sums(r.id, 1, 'forward', [1, 0, 0]))).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    expect(rounds.openCount).toBe(0);
  });

  it('aborts the round when a slice sends the same layer twice or sums of the wrong size', async () => {
    const rounds = new ExchangeRounds();
    const r = rounds.start(2, [1]);
    const first = rounds.contribute(sums(r.id, 0, 'forward', [1, 0, 0]));
    await expect(rounds.contribute(sums(r.id, 0, 'forward', [1, 0, 0]))).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    await expect(first).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    const r2 = rounds.start(2, [1]);
    await expect(rounds.contribute(sums(r2.id, 0, 'forward', [1, 0]))).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
  });

  it('refuses contributions to a round that is not open', async () => {
    await expect(new ExchangeRounds().contribute(sums(7, 0, 'forward', [1, 0, 0]))).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
  });

  it('keeps layers and phases apart within a round', async () => {
    const rounds = new ExchangeRounds();
    const r = rounds.start(1, [1, 2]);
    expect(Array.from(await rounds.contribute(sums(r.id, 0, 'forward', [3, 1, 1, 2, 2], 1)))).toEqual([3, 1, 1, 2, 2]);
    expect(Array.from(bytesToFloat64(float64ToBytes(await rounds.contribute(sums(r.id, 0, 'backward', [5, 6], 0)))))).toEqual([5, 6]);
  });
});
