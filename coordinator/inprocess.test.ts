import { describe, expect, it, vi } from 'vitest';
import { bnRounds } from './bn-rounds.ts';
import { prestartThreads, startInProcessWorkers, startupError } from './inprocess.ts';
import { Membership } from './membership.ts';
import { silentLogger } from '../common/logger.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { TimeoutError } from '../common/timeout.ts';
import { DtrainError } from '../common/errors.ts';
import { maxAbsDiff, syntheticData, tempDir, testConfig, trainInProcess } from '../test/helpers.ts';

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
    // A user's to fix (no stack trace), naming the thread and what it was doing, with the timeout as its cause.
    expect(err).toBeInstanceOf(DtrainError);
    expect((err as DtrainError).code).toBe('DTRAIN_ERR_THREAD_START');
    expect((err as DtrainError).expected).toBe(true);
    expect((err as Error).cause).toBeInstanceOf(TimeoutError);
    expect((err as Error).message).toMatch(/^A compute thread did not start in time \(thread-\d: loading the backend took longer than 5 ms\); /);
    expect(membership.size).toBe(0);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('says what to change when threads do not start in time: fewer --workers where they outnumber the cores', () => {
    const timeout = new TimeoutError('thread-7: loading the backend took longer than 120000 ms', 'DTRAIN_ERR_THREAD_START');
    expect((startupError(timeout, 100, 2) as Error).message).toBe('A compute thread did not start in time (thread-7: loading the backend took longer than 120000 ms); 100 threads were starting on 2 cores: give fewer --workers (at most 2 keeps one per core).');
    expect((startupError(timeout, 2, 2) as Error).message).toMatch(/; the machine may be overloaded, or the backend hung while loading: try --backend wasm\.$/);
    // Other failures pass through untouched.
    const other = new TimeoutError('a step', 'DTRAIN_ERR_STEP_TIMEOUT');
    expect(startupError(other, 100, 2)).toBe(other);
  });

  it('exchanges cnn-bn\'s BatchNorm sums on the shared board with exactly the weights of the message path (K=3)', { timeout: 300_000 }, async () => {
    const data = await syntheticData(240, 20);
    const config = () => testConfig({ model: 'cnn-bn', workers: 3, batchSize: 24, maxSteps: 6, out: '' });
    const contribute = vi.spyOn(bnRounds, 'contribute');
    const byMessages = await trainInProcess({ ...config(), out: await tempDir() }, data, { bnBoard: false });
    const messages = contribute.mock.calls.length;
    const onBoard = await trainInProcess({ ...config(), out: await tempDir() }, data);
    // 6 steps × 3 slices × 4 layers × 2 phases as messages; none on the board.
    expect(messages).toBe(144);
    expect(contribute.mock.calls.length).toBe(messages);
    contribute.mockRestore();
    expect(byMessages.outcome.status).toBe('interrupted');
    expect(onBoard.outcome.status).toBe('interrupted');
    expect(maxAbsDiff(onBoard.weights, byMessages.weights)).toBe(0);
    // It trained: the step moved the weights.
    const untrained = await trainInProcess({ ...config(), maxSteps: 1, out: await tempDir() }, data);
    expect(maxAbsDiff(onBoard.weights, untrained.weights)).toBeGreaterThan(1e-4);
  });
});

describe('threads started ahead, with a warm-up (prestartThreads, worker/warm-up.ts)', () => {
  for (const model of ['mlp', 'cnn-dropout'] as const) {
    it(`train ${model} to the weights of threads started without, bit for bit (wasm)`, { timeout: 300_000 }, async () => {
      const data = await syntheticData(320, 20);
      const config = () => testConfig({ model, backend: 'wasm', workers: model === 'mlp' ? 1 : 2, batchSize: 16, maxSteps: 6, out: '' });
      const plain = await trainInProcess({ ...config(), out: await tempDir() }, data);
      const warmed = await trainInProcess({ ...config(), out: await tempDir() }, data, { warmUp: { model, batch: 8, steps: 5, maxMs: 60_000 } });
      expect(plain.warmedUp).toBe(0);
      expect(warmed.warmedUp).toBe(5);
      expect(warmed.outcome.status).toBe('interrupted');
      expect(maxAbsDiff(warmed.weights, plain.weights)).toBe(0);
    });
  }

  it('refuses a number of prestarted threads other than the workers asked for, and terminates them', async () => {
    const threads = prestartThreads(1, 'cpu');
    const err = await startInProcessWorkers(new Membership(silentLogger()), {
      workers: 2,
      backend: 'cpu',
      log: silentLogger(),
      threads,
      welcome: { type: 'welcome', protocolVersion: PROTOCOL_VERSION, model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: 62006 },
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe('DTRAIN_ERR_THREAD_START');
    expect((err as Error).message).toMatch(/Expected 2 prestarted threads, but got 1/);
    // Its Worker has exited: nothing is left to keep the process alive.
    await expect(Promise.race([threads[0].gone.then(() => 'exited'), new Promise((r) => setTimeout(() => r('running'), 10_000))])).resolves.toBe('exited');
  });
});
