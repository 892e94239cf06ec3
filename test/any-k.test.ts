/**
 * The same result at any worker count for the models with Dropout and BatchNorm (mlp and lenet:
 * test/inprocess.test.ts): per-sample dropout masks and synchronized BatchNorm (docs/batchnorm.md).
 * On the cpu backend, whose sums have a fixed order, only the slicing differs between K=1 and K=3.
 */
import { describe, expect, it } from 'vitest';
import { maxAbsDiff, syntheticData, tempDir, testConfig, trainInProcess, trainStraightAndResumed } from './helpers.ts';
import { initialWeights, weightLayout } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { tf, type Tensor } from '../common/tf.ts';
import { preprocessBatch } from '../common/data/preprocess.ts';
import type { DatasetSplits } from '../common/data/types.ts';
import type { StepEvent } from '../coordinator/trainer.ts';
import type { Membership } from '../coordinator/membership.ts';
import { CLOSE_CODES } from '../common/protocol.ts';

async function train(model: 'cnn-dropout' | 'cnn-bn', workers: number, data: DatasetSplits) {
  const losses: number[] = [];
  // Small global batches, as the cpu backend is slow on convolutions: 6 (slices 2/2/2) for
  // cnn-dropout, 12 (4/4/4) for cnn-bn, whose BatchNorm over 6 samples per channel (after Dense 64)
  // amplifies float rounding to 2e-5 of the loss by step 4.
  const config = testConfig({ model, batchSize: model === 'cnn-bn' ? 12 : 6, backend: 'cpu', maxSteps: 20, workers, out: await tempDir() });
  const run = await trainInProcess(config, data, { hooks: { onStep: (e: StepEvent) => losses.push(e.batchLoss) } });
  return { ...run, losses };
}

/** The model's test-set probabilities in inference mode (BatchNorm with its moving statistics). */
function probabilities(model: 'cnn-bn', weights: Float32Array, data: DatasetSplits): Float32Array {
  const m = buildModel(model);
  const layout = weightLayout(m);
  return tf.tidy(() => {
    m.weights.forEach((w, i) => w.write(tf.tensor(weights.subarray(layout.entries[i].offset, layout.entries[i].offset + layout.entries[i].size), layout.entries[i].shape)));
    const x = tf.tensor4d(preprocessBatch(data.test.images, { kind: 'scale' }), [data.test.count, 32, 32, 3]);
    const p = (m.predict(x) as Tensor).dataSync() as Float32Array;
    m.dispose();
    return p;
  });
}

describe('the same result with 1 and 3 workers after 20 steps (cpu backend)', () => {
  it('gives the same cnn-dropout weights (within 1e-5)', { timeout: 600_000 }, async () => {
    const data = await syntheticData(480, 50);
    const one = await train('cnn-dropout', 1, data);
    const three = await train('cnn-dropout', 3, data);
    expect(one.outcome.status).toBe('interrupted');
    expect(maxAbsDiff(one.weights, initialWeights(weightLayout(buildModel('cnn-dropout')), 42))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(one.weights, three.weights)).toBeLessThan(1e-5);
  });

  it('gives cnn-bn the same loss at every step (within 1e-5)', { timeout: 600_000 }, async () => {
    const data = await syntheticData(480, 50);
    const one = await train('cnn-bn', 1, data);
    const three = await train('cnn-bn', 3, data);
    expect(one.losses).toHaveLength(20);
    one.losses.forEach((l, i) => expect(Math.abs(three.losses[i] - l) / l, `step ${i + 1}`).toBeLessThan(1e-5));
    expect(maxAbsDiff(one.weights, initialWeights(weightLayout(buildModel('cnn-bn')), 42))).toBeGreaterThan(1e-3);
    // The weights agree but for one kind: the bias of a channel that a ReLU leaves active on the
    // whole batch before a BatchNorm has a true gradient of exactly 0, and Adam turns the float
    // noise of that 0 (which differs with the slicing) into steps of up to the learning rate
    // (docs/batchnorm.md). Training normalizes the bias away, so the losses above agree; inference
    // uses the moving mean, which after 20 steps (momentum 0.99) has followed little of the drift.
    // Measured 2026-11-30: probabilities within 1.2e-4, weights within 2e-3.
    expect(maxAbsDiff(probabilities('cnn-bn', one.weights, data), probabilities('cnn-bn', three.weights, data))).toBeLessThan(1e-3);
    expect(maxAbsDiff(one.weights, three.weights)).toBeLessThan(20 * 0.001);
  });
});

describe('resuming cnn-dropout', () => {
  it('ends an interrupted and resumed run with exactly the weights of an uninterrupted one', { timeout: 300_000 }, async () => {
    // 11 steps: stops mid-epoch 2 (7 steps per epoch), with a checkpoint; the masks of steps 12-14 must not depend on it.
    const { straight, first, resumed, resumedWeights } = await trainStraightAndResumed('cnn-dropout');
    expect(first.status).toBe('interrupted');
    expect(resumed.status).toBe('finished');
    expect(maxAbsDiff(straight, resumedWeights)).toBe(0);
  });
});

describe('a worker thread lost mid-step with synchronized BatchNorm', () => {
  it('recomputes the step over the threads that remain, and trains to the end', { timeout: 300_000 }, async () => {
    const data = await syntheticData(480, 50);
    let steps = 0;
    let membership: Membership | undefined;
    const evicted: string[] = [];
    const run = await trainInProcess(testConfig({ model: 'cnn-bn', workers: 3, batchSize: 48, out: await tempDir() }), data, {
      membership: (m) => {
        membership = m;
        m.onEvent((e) => e.kind === 'evicted' && evicted.push(e.workerId));
      },
      hooks: {
        onStep: () => {
          // Step 3 starts as soon as step 2 is reported: end a thread while it computes.
          if (++steps === 2) setTimeout(() => membership!.leave('thread-2', 'evicted', 'test: thread lost mid-step', CLOSE_CODES.evicted), 20);
        },
      },
    });
    expect(run.outcome.status).toBe('finished');
    expect(steps).toBe(10);
    // Only the lost thread: the two that were waiting in the abandoned round were not blamed.
    expect(evicted).toEqual(['thread-2']);
  });
});
