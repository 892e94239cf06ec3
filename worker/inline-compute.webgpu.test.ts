/**
 * A WebSocket worker's inline compute on a real WebGPU adapter (lavapipe in CI, installed by
 * scripts/install-lavapipe.sh). Its own file: the backend is selected once per process, by the
 * InlineCompute under test. Without an adapter it skips and says why, except under CI, where it fails.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { InlineCompute } from './inline-compute.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';

const inCi = !!process.env.CI && process.env.CI !== '0' && process.env.CI !== 'false';
const inline = new InlineCompute('webgpu', { longStepMs: 0 });
const reason = await inline.started().then(
  () => undefined,
  (err: Error) => err.message,
);

describe('InlineCompute on webgpu', () => {
  afterAll(() => inline.terminate());

  if (reason !== undefined) {
    if (inCi) it('has a WebGPU adapter (CI installs lavapipe; this test must not skip there)', () => expect.fail(`No WebGPU adapter in CI: ${reason}`));
    else it.skip(`skipped: no WebGPU adapter (${reason})`, () => {});
    return;
  }

  it('keeps computing on the socket\'s thread however long a step takes: webgpu awaits its device', async () => {
    const model = buildModel('lenet');
    const layout = weightLayout(model);
    model.dispose();
    await inline.welcome({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'g', model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize, trainableCount: layout.trainableSize });
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 16 }, (_, i) => i), 'dev', 3);
    const r = await inline.run({ type: 'task', taskId: 1, kind: 'train', weightsVersion: 1, weights: floatsToBytes(initialWeights(layout, 1)), images, labels });
    // A second task would wait for a move under way, and run where it went.
    await inline.run({ type: 'task', taskId: 2, kind: 'train', weightsVersion: 1, images, labels });
    // Over longStepMs (0), yet not moved: the steps did not hold the event loop.
    expect(r.computeMs).toBeGreaterThan(0);
    expect(r.gradients!.byteLength).toBe(layout.trainableSize * 4);
    expect(inline.runsOn).toBe('inline');
  }, 120_000);
});
