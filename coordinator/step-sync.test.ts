import { describe, expect, it } from 'vitest';
import { StepSync, BN_MIN_SLICE } from './step-sync.ts';
import { Membership, type WorkerHandle } from './membership.ts';
import { silentLogger } from '../common/logger.ts';
import { BN_SYNC_ABORTED } from '../common/bn-sync-errors.ts';
import { bnRounds } from './bn-rounds.ts';
import type { TaskSpec } from './scheduler.ts';

function fakeWorker(id: string, backend = 'wasm'): WorkerHandle {
  return { id, name: id, backend, weightsVersion: -1, run: () => new Promise(() => {}), close: () => {} };
}

function pool(backends: string[]): Membership {
  const m = new Membership(silentLogger());
  backends.forEach((b, i) => m.join(fakeWorker(`w${i}`, b)));
  return m;
}

function slices(sizes: number[]): TaskSpec[] {
  return sizes.map((n) => ({ kind: 'train', images: new Uint8Array(n * 3072), labels: new Uint8Array(n) }));
}

const opts = { seed: 42, mode: 'exact' as const, stepTimeoutMs: 1000, log: silentLogger() };

describe('step planning for BatchNorm and Dropout', () => {
  it('slices over every worker and exchanges in one round when all can read synchronously', () => {
    const sync = new StepSync('cnn-bn', opts);
    expect(sync.batchNormChannels).toEqual([32, 64, 64, 64]);
    const plan = sync.plan(32, pool(['wasm', 'cpu', 'wasm']));
    expect(plan).toEqual({ slices: 3, mode: 'sync' });
    const tasks = slices([11, 11, 10]);
    const round = sync.annotate(tasks, 7, plan);
    expect(round).toBeDefined();
    expect(tasks.map((t) => t.position)).toEqual([0, 11, 22].map((firstSample) => ({ seed: 42, step: 7, firstSample })));
    expect(tasks.every((t) => t.batchNorm?.mode === 'sync' && t.batchNorm.round === round!.id)).toBe(true);
    round!.close();
  });

  it('needs no round for a lone slice', () => {
    const sync = new StepSync('cnn-bn', opts);
    const tasks = slices([32]);
    expect(sync.annotate(tasks, 0, sync.plan(32, pool(['wasm'])))).toBeUndefined();
    expect(tasks[0].batchNorm).toEqual({ mode: 'sync', round: 0, timeoutMs: 1000 });
  });

  it(`normalizes locally, in slices of at least ${BN_MIN_SLICE}, when a worker runs webgpu or in a browser, or with --sync-bn stats`, () => {
    const sync = new StepSync('cnn-bn', opts);
    expect(sync.plan(32, pool(['wasm', 'webgpu', 'wasm', 'wasm', 'wasm', 'wasm']))).toEqual({ slices: 4, mode: 'local' });
    expect(sync.plan(32, pool(['browser/webgpu', 'wasm']))).toEqual({ slices: 2, mode: 'local' });
    expect(new StepSync('cnn-bn', { ...opts, mode: 'stats' }).plan(12, pool(['wasm', 'wasm', 'wasm']))).toEqual({ slices: 1, mode: 'local' });
  });

  it('gives Dropout models sample positions but no BatchNorm mode, and leaves mlp alone', () => {
    const dropout = new StepSync('cnn-dropout', opts);
    const tasks = slices([2, 2]);
    expect(dropout.annotate(tasks, 3, dropout.plan(4, pool(['wasm', 'wasm'])))).toBeUndefined();
    expect(tasks[1]).toMatchObject({ position: { seed: 42, step: 3, firstSample: 2 } });
    expect(tasks[1].batchNorm).toBeUndefined();
    const mlp = new StepSync('mlp', opts);
    expect(mlp.needsPosition).toBe(false);
    const plain = slices([2]);
    mlp.annotate(plain, 3, mlp.plan(2, pool(['wasm'])));
    expect(plain[0].position).toBeUndefined();
  });
});

describe('a step with an exchange round', () => {
  it('aborts the round and rejects with BN_SYNC_ABORTED when a worker leaves mid-step', async () => {
    const sync = new StepSync('cnn-bn', opts);
    const membership = pool(['wasm', 'wasm']);
    const tasks = slices([2, 2]);
    const round = sync.annotate(tasks, 0, sync.plan(4, membership))!;
    const step = sync.run(round, membership, undefined, (signal) => new Promise((_, reject) => signal!.addEventListener('abort', () => reject(signal!.reason))));
    membership.leave('w1', 'left', 'connection closed');
    await expect(step).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
    expect(round.aborted).toBe(true);
  });

  it('closes the round when the step ends, so late sums are answered "aborted"', async () => {
    const sync = new StepSync('cnn-bn', opts);
    const membership = pool(['wasm', 'wasm']);
    const round = sync.annotate(slices([2, 2]), 0, sync.plan(4, membership))!;
    expect(await sync.run(round, membership, undefined, async () => 'done')).toBe('done');
    await expect(bnRounds.contribute({ type: 'bn_sums', round: round.id, taskId: 1, firstSample: 0, layer: 0, phase: 'forward', sums: new Uint8Array(8 * 65) })).rejects.toMatchObject({ code: BN_SYNC_ABORTED });
  });
});
