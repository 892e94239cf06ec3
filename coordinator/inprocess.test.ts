import { describe, expect, it } from 'vitest';
import { startInProcessWorkers } from './inprocess.ts';
import { Membership } from './membership.ts';
import { silentLogger } from '../common/logger.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { TimeoutError } from '../common/timeout.ts';

describe('startInProcessWorkers', () => {
  it('fails with DTRAIN_ERR_THREAD_START when a thread does not start in time, instead of waiting forever', async () => {
    const membership = new Membership(silentLogger());
    const started = performance.now();
    const err = await startInProcessWorkers(membership, {
      workers: 2,
      backend: 'cpu',
      log: silentLogger(),
      // No thread loads a backend in 5 ms: the start must fail at 5 ms, not hang.
      startupTimeoutMs: 5,
      welcome: { type: 'welcome', protocolVersion: PROTOCOL_VERSION, model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: 62006 },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TimeoutError);
    expect((err as TimeoutError).code).toBe('DTRAIN_ERR_THREAD_START');
    expect((err as Error).message).toMatch(/thread-\d: loading the backend took longer than 5 ms/);
    expect(membership.size).toBe(0);
    expect(performance.now() - started).toBeLessThan(10_000);
  });
});
