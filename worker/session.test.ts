import { beforeAll, describe, expect, it, vi } from 'vitest';
import { selectBackend } from '../common/backend.ts';
import { WorkerSession } from './session.ts';
import { SharedResult } from './shared-result.ts';
import { StepComputer } from './compute.ts';
import { PROTOCOL_VERSION, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';

describe('WorkerSession', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('uploads the weights once per version: tasks without weights reuse what the backend holds', async () => {
    const model = buildModel('cnn-bn');
    const layout = weightLayout(model);
    model.dispose();
    const weights = floatsToBytes(initialWeights(layout, 1));
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 4 }, (_, i) => i), 'dev', 1);
    const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w', model: 'cnn-bn', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
    const task = (taskId: number, version: number, kind: 'train' | 'eval', withWeights: boolean): TaskMessage => ({ type: 'task', taskId, kind, weightsVersion: version, ...(withWeights ? { weights } : {}), images, labels });
    const upload = vi.spyOn(StepComputer.prototype, 'setWeights');
    const session = new WorkerSession();
    session.welcome(welcome);
    await session.run(task(1, 1, 'train', true));
    await session.run(task(2, 1, 'train', false));
    await session.run(task(3, 1, 'eval', false));
    expect(upload).toHaveBeenCalledTimes(1);
    await session.run(task(4, 2, 'train', true));
    expect(upload).toHaveBeenCalledTimes(2);
    upload.mockRestore();
    session.dispose();
  });

  it('writes a train result into the shared result it is given: the same bits as a result of its own, in memory kept from task to task', async () => {
    const model = buildModel('cnn-bn');
    const layout = weightLayout(model);
    model.dispose();
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 8 }, (_, i) => i), 'dev', 2);
    const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w', model: 'cnn-bn', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
    const task = (taskId: number, seed: number): TaskMessage => ({ type: 'task', taskId, kind: 'train', weightsVersion: taskId, weights: floatsToBytes(initialWeights(layout, seed)), images, labels, batchNorm: { mode: 'local' } });
    const session = new WorkerSession();
    session.welcome(welcome);
    const shared = new SharedResult();
    for (const seed of [1, 2]) {
      const own = await session.run(task(seed * 2, seed));
      const inShared = await session.run(task(seed * 2 + 1, seed), shared);
      expect(own.gradients!.buffer).toBeInstanceOf(ArrayBuffer);
      expect(inShared.gradients!.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(inShared.stats!.buffer).toBe(inShared.gradients!.buffer);
      expect(Buffer.from(inShared.gradients!).equals(Buffer.from(own.gradients!))).toBe(true);
      expect(Buffer.from(inShared.stats!).equals(Buffer.from(own.stats!))).toBe(true);
      expect([inShared.lossSum, inShared.correct, inShared.count]).toEqual([own.lossSum, own.correct, own.count]);
    }
    const a = await session.run(task(10, 1), shared);
    const b = await session.run(task(11, 2), shared);
    expect(b.gradients!.buffer).toBe(a.gradients!.buffer);
    session.dispose();
  });
});
