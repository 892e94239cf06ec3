import { beforeAll, describe, expect, it, vi } from 'vitest';
import { selectBackend } from '../common/backend.ts';
import { WorkerSession } from './session.ts';
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
});
