import { afterEach, describe, expect, it } from 'vitest';
import { ComputeThread } from './compute-thread.ts';
import { WorkerSession } from './session.ts';
import { failFirstReadBack, type BackendFallbackMessage } from './backend-fallback.ts';
import { tf } from '../common/tf.ts';
import { PROTOCOL_VERSION, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';

const model = buildModel('lenet');
const layout = weightLayout(model);
model.dispose();
const weights = initialWeights(layout, 1);
const { images, labels } = generateSynthetic(Uint32Array.from({ length: 8 }, (_, i) => i), 'dev', 3);
const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 't', model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
const task = (taskId: number, withWeights: boolean): TaskMessage => ({ type: 'task', taskId, kind: 'train', weightsVersion: 1, ...(withWeights ? { weights: floatsToBytes(weights) } : {}), images, labels });

describe('backend fallback in the compute thread', () => {
  let thread: ComputeThread | undefined;
  afterEach(async () => {
    await thread?.terminate();
    thread = undefined;
  });

  it('moves to the next backend when the first step fails, and the step still completes', async () => {
    thread = new ComputeThread('wasm', { failFirstReadBackOn: 'wasm' });
    const fallbacks: BackendFallbackMessage[] = [];
    thread.onBackendFallback = (m) => fallbacks.push(m);
    expect((await thread.started()).name).toBe('wasm');
    await thread.welcome(welcome);
    const first = await thread.run(task(1, true));
    expect(fallbacks).toHaveLength(1);
    expect(fallbacks[0]).toMatchObject({ from: 'wasm', selection: { name: 'cpu' } });
    expect(fallbacks[0].reason).toMatch(/injected failure of the first read-back on wasm/);
    expect(first.count).toBe(8);
    expect(Number.isFinite(first.lossSum)).toBe(true);
    expect(first.gradients!.byteLength).toBe(layout.trainableSize * 4);
    // The next task, without weights, runs on the new backend with the weights it already holds.
    const second = await thread.run(task(2, false));
    expect(second.lossSum).toBeCloseTo(first.lossSum, 4);
    expect(fallbacks).toHaveLength(1);
  });
});

describe('WorkerSession fallback', () => {
  it('does not blame the backend for a task error of its own (stale weights)', async () => {
    let asked = 0;
    const session = new WorkerSession(async () => (asked++, true));
    session.welcome(welcome);
    await expect(session.run(task(1, false))).rejects.toThrow(/needs weights version 1/);
    expect(asked).toBe(0);
    session.dispose();
  });

  it('gives the first error back when no backend is left', async () => {
    let asked = 0;
    const session = new WorkerSession(async () => (asked++, false));
    session.welcome(welcome);
    failFirstReadBack(tf.getBackend());
    await expect(session.run(task(1, true))).rejects.toThrow(/injected failure of the first read-back/);
    expect(asked).toBe(1);
    session.dispose();
  });
});
