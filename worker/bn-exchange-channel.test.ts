import { describe, expect, it } from 'vitest';
import { createExchangeBuffer, ExchangeClient, ExchangeHost, type ExchangeRequest } from './bn-exchange-channel.ts';
import { BN_SYNC_ABORTED, BN_SYNC_TIMEOUT } from '../common/bn-sync-errors.ts';
import type { BnSumsMessage } from '../common/protocol.ts';

const request: BnSumsMessage = { type: 'bn_sums', round: 1, taskId: 1, firstSample: 0, layer: 0, phase: 'forward', sums: new Uint8Array(0) };

// The owner's side runs inside `post` here, i.e. before the client sleeps; across threads it runs
// while the client sleeps (the in-process training tests cover that).
describe('the BatchNorm exchange channel', () => {
  it('returns the totals the owner writes for the current request', () => {
    const buffer = createExchangeBuffer();
    const host = new ExchangeHost(buffer);
    const client = new ExchangeClient(buffer, (r) => expect(host.answer(r.seq, Float64Array.from([1, 2.5, -3]))).toBe(true));
    expect(Array.from(client.exchange(request, 1000))).toEqual([1, 2.5, -3]);
    // A second request gets its own answer.
    const client2 = new ExchangeClient(buffer, (r) => host.answer(r.seq, Float64Array.from([7])));
    expect(Array.from(client2.exchange(request, 1000))).toEqual([7]);
  });

  it('throws BN_SYNC_ABORTED when the owner abandons the round', () => {
    const buffer = createExchangeBuffer();
    const host = new ExchangeHost(buffer);
    const client = new ExchangeClient(buffer, (r) => host.abort(r.seq));
    expect(() => client.exchange(request, 1000)).toThrow(expect.objectContaining({ code: BN_SYNC_ABORTED }));
  });

  it('gives up after the timeout, and then refuses the late answer', () => {
    const buffer = createExchangeBuffer();
    const host = new ExchangeHost(buffer);
    let sent: ExchangeRequest | undefined;
    const client = new ExchangeClient(buffer, (r) => (sent = r));
    const started = Date.now();
    expect(() => client.exchange(request, 50)).toThrow(expect.objectContaining({ code: BN_SYNC_TIMEOUT }));
    expect(Date.now() - started).toBeGreaterThanOrEqual(49);
    expect(host.answer(sent!.seq, Float64Array.from([1]))).toBe(false);
  });

  it('never takes an answer to an earlier request for the current one', () => {
    const buffer = createExchangeBuffer();
    const host = new ExchangeHost(buffer);
    let first: ExchangeRequest | undefined;
    const client = new ExchangeClient(buffer, (r) => {
      if (!first) first = r;
      else {
        expect(host.answer(first.seq, Float64Array.from([666]))).toBe(false);
        host.answer(r.seq, Float64Array.from([2]));
      }
    });
    expect(() => client.exchange(request, 20)).toThrow(expect.objectContaining({ code: BN_SYNC_TIMEOUT }));
    expect(Array.from(client.exchange(request, 1000))).toEqual([2]);
  });
});
