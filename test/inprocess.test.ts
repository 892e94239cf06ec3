import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { maxAbsDiff, syntheticData, tempDir, testConfig, trainInProcess, trainStraightAndResumed } from './helpers.ts';
import { initialWeights, weightLayout } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';

describe('in-process data-parallel training', () => {
  // The exact check runs on the cpu backend, whose kernels sum in a fixed order. On wasm, XNNPACK's
  // float32 sums differ slightly with the slice size (~1e-7 after one step); Adam's normalised update
  // then amplifies that noise for weights whose gradient is near zero (measured: 1e-5 after 10 steps,
  // 6e-4 after 20). So on wasm we check one step, before any amplification.
  // The pure-JS cpu backend is slow on convolutions, so lenet uses a global batch of 12 (slices 4/4/4).
  for (const [model, batchSize] of [['mlp', 32], ['lenet', 12]] as const) {
    it(`gives the same ${model} weights with 1 and 3 workers after 20 steps (cpu backend)`, { timeout: 300_000 }, async () => {
      const data = await syntheticData(1280, 50);
      const cfg = { model, batchSize, backend: 'cpu' as const, maxSteps: 20 };
      const one = await trainInProcess(testConfig({ ...cfg, workers: 1, out: await tempDir() }), data);
      const three = await trainInProcess(testConfig({ ...cfg, workers: 3, out: await tempDir() }), data);
      expect(one.outcome.status).toBe('interrupted');
      // The weights moved away from the initial ones, so the comparison means something.
      const start = initialWeights(weightLayout(buildModel(model)), 42);
      expect(maxAbsDiff(one.weights, start)).toBeGreaterThan(1e-3);
      expect(maxAbsDiff(one.weights, three.weights)).toBeLessThan(1e-5);
    });
  }

  it('gives the same lenet weights with 1 and 3 workers after one step on wasm', async () => {
    const data = await syntheticData(1280, 50);
    const one = await trainInProcess(testConfig({ model: 'lenet', workers: 1, maxSteps: 1, out: await tempDir() }), data);
    const three = await trainInProcess(testConfig({ model: 'lenet', workers: 3, maxSteps: 1, out: await tempDir() }), data);
    const start = initialWeights(weightLayout(buildModel('lenet')), 42);
    expect(maxAbsDiff(one.weights, start)).toBeGreaterThan(5e-4);
    expect(maxAbsDiff(one.weights, three.weights)).toBeLessThan(1e-6);
  });

  it('resumes an interrupted lenet run to the same weights as an uninterrupted one', async () => {
    // 11 steps: stops mid-epoch 2 (8 steps per epoch), with a checkpoint.
    const { straight, first, resumed, resumedWeights, out } = await trainStraightAndResumed('lenet');
    expect(first.status).toBe('interrupted');
    expect(resumed.status).toBe('finished');
    expect(maxAbsDiff(straight, resumedWeights)).toBe(0);
    const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8'));
    expect(history.epochs.map((e: { epoch: number }) => e.epoch)).toEqual([1, 2]);
  });

  it('learns lenet on synthetic data well above chance', async () => {
    const data = await syntheticData(2000, 200);
    const out = await tempDir();
    const { outcome } = await trainInProcess(testConfig({ model: 'lenet', workers: 2, epochs: 2, out }), data);
    expect(outcome.status).toBe('finished');
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    const history = JSON.parse(await readFile(join(out, 'history.json'), 'utf8'));
    expect(history.epochs.at(-1).val_accuracy).toBeGreaterThan(0.3);
    expect(metrics.test_accuracy).toBeGreaterThan(0.3);
    expect(metrics.parameters.total).toBe(62006);
  });
});
