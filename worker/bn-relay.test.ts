import { describe, expect, it } from 'vitest';
import { BnRelay } from './bn-relay.ts';
import { float64ToBytes } from '../common/codec.ts';
import { BN_SYNC_ABORTED } from '../common/bn-sync-errors.ts';
import type { BnSumsMessage } from '../common/protocol.ts';

const sums: BnSumsMessage = { type: 'bn_sums', round: 3, taskId: 1, firstSample: 0, layer: 1, phase: 'backward', sums: new Uint8Array(16) };

describe("the WebSocket worker's BatchNorm relay", () => {
  it('sends the sums and resolves with the matching totals', async () => {
    const sent: BnSumsMessage[] = [];
    const relay = new BnRelay((m) => (sent.push(m), true));
    const answer = relay.request(sums);
    expect(sent).toEqual([sums]);
    relay.deliver({ type: 'bn_totals', round: 3, layer: 0, phase: 'backward', totals: float64ToBytes(Float64Array.from([9])) }); // another layer: not ours
    relay.deliver({ type: 'bn_totals', round: 3, layer: 1, phase: 'backward', totals: float64ToBytes(Float64Array.from([1, 2])) });
    expect(Array.from(await answer)).toEqual([1, 2]);
    expect(relay.pending).toBe(0);
  });

  it('rejects with BN_SYNC_ABORTED when the coordinator abandons the round', async () => {
    const relay = new BnRelay(() => true);
    const answer = relay.request(sums);
    relay.deliver({ type: 'bn_totals', round: 3, layer: 1, phase: 'backward', aborted: 'worker-2 left' });
    await expect(answer).rejects.toMatchObject({ code: BN_SYNC_ABORTED, message: 'worker-2 left' });
  });

  it('rejects every waiting request when the connection ends, and at once when it cannot send', async () => {
    const relay = new BnRelay(() => true);
    const a = relay.request(sums);
    const b = relay.request({ ...sums, layer: 0 });
    relay.abortAll('connection closed');
    await expect(a).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    await expect(b).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    await expect(new BnRelay(() => false).request(sums)).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
  });
});
