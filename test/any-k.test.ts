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
import type { StepEvent, Trainer } from '../coordinator/trainer.ts';
import type { Membership } from '../coordinator/membership.ts';
import { CLOSE_CODES } from '../common/protocol.ts';

async function train(model: 'cnn-dropout' | 'cnn-bn', workers: number, data: DatasetSplits) {
  const losses: number[] = [];
  let trainer: Trainer | undefined;
  let weightsAtStep10: Float32Array | undefined;
  // Small global batches, as the cpu backend is slow on convolutions: 6 (slices 2/2/2) for
  // cnn-dropout, 12 (4/4/4) for cnn-bn, whose BatchNorm over 6 samples per channel (after Dense 64)
  // amplifies float rounding to 2e-5 of the loss by step 4.
  const config = testConfig({ model, batchSize: model === 'cnn-bn' ? 12 : 6, backend: 'cpu', maxSteps: 20, workers, out: await tempDir() });
  const run = await trainInProcess(config, data, {
    trainer: (t) => (trainer = t),
    hooks: {
      onStep: (e: StepEvent) => {
        losses.push(e.batchLoss);
        if (e.step === 10) weightsAtStep10 = trainer!.currentWeights.slice();
      },
    },
  });
  return { ...run, losses, weightsAtStep10: weightsAtStep10! };
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

  it('gives cnn-bn the same loss through step 16 (within 1e-5) and after (1e-4), the same weights after 10 steps (1e-5) and close ones after 20', { timeout: 600_000 }, async () => {
    const data = await syntheticData(480, 50);
    const one = await train('cnn-bn', 1, data);
    const three = await train('cnn-bn', 3, data);
    expect(one.losses).toHaveLength(20);
    // Steps 17-20 come after the relu or max-pool comparison that tips (below): their losses part.
    one.losses.forEach((l, i) => expect(Math.abs(three.losses[i] - l) / l, `step ${i + 1}`).toBeLessThan(i < 16 ? 1e-5 : 1e-4));
    expect(maxAbsDiff(one.weightsAtStep10, initialWeights(weightLayout(buildModel('cnn-bn')), 42))).toBeGreaterThan(1e-3);
    // Measured 2026-11-30: 1.2e-6 after 10 steps (2e-3 after 20 before the biases before each
    // BatchNorm took their gradient from the inactive positions, worker/layers/pre-norm-bias.ts).
    expect(maxAbsDiff(one.weightsAtStep10, three.weightsAtStep10)).toBeLessThan(1e-5);
    // Not 1e-5 after 20 steps: a few gradients sit at Adam's epsilon while each slice's float32
    // partial sum is 1e5 times larger, so the slicing moves them by ~1e-6 (step 1); by step 17-18
    // such a difference tips a relu or max-pool comparison, and one gradient jumps (docs/batchnorm.md).
    // A single worker whose learning rate differs by 1 part in 1e7 ends 2.45e-5 away from itself:
    // the training amplifies any float32-sized perturbation (docs/batchnorm.md, "How sensitive").
    // Measured 2026-11-30 with tfjs's tape: losses within 8.1e-6 at every step, 1.0e-4 after 20
    // steps, test probabilities within 2.9e-5. With the direct backward pass (worker/direct-backprop.ts:
    // the same gradients to float32 rounding, summed by fused kernels): losses within 6.9e-7 through
    // step 16, then 5.1e-6, 1.9e-5, 3.0e-5 and 8.1e-5; weights 2.4e-6 after 10 steps and 1.15e-4
    // after 20; test probabilities within 8.0e-5.
    expect(maxAbsDiff(one.weights, three.weights)).toBeLessThan(1e-3);
    expect(maxAbsDiff(probabilities('cnn-bn', one.weights, data), probabilities('cnn-bn', three.weights, data))).toBeLessThan(2e-4);
  });
});

describe('with --reduce-grain: bit for bit the same weights at any worker count (cpu backend)', () => {
  // Global batch 12, groups of 4: K=3 gives each thread one group, K=2 two groups and one, and the
  // float64 sums then add in another order. 20 steps, from the same initial weights.
  for (const model of ['mlp', 'lenet', 'cnn-dropout', 'cnn-bn'] as const) {
    it(`gives ${model} identical weights and moving statistics with 1, 2 and 3 workers after 20 steps`, { timeout: 600_000 }, async () => {
      const data = await syntheticData(480, 50);
      const runs = [];
      for (const workers of [1, 2, 3]) {
        const losses: number[] = [];
        const run = await trainInProcess(testConfig({ model, batchSize: 12, backend: 'cpu', maxSteps: 20, workers, reduceGrain: 4, out: await tempDir() }), data, { hooks: { onStep: (e: StepEvent) => losses.push(e.batchLoss) } });
        expect(run.shared).toBe(true);
        expect(run.outcome.status).toBe('interrupted');
        runs.push({ weights: run.weights, losses });
      }
      const [one, ...others] = runs;
      expect(maxAbsDiff(one.weights, initialWeights(weightLayout(buildModel(model)), 42))).toBeGreaterThan(1e-3);
      for (const other of others) {
        expect(maxAbsDiff(one.weights, other.weights)).toBe(0);
        // The loss is reported, not trained on: float64 sums in another order, so within 1e-12.
        other.losses.forEach((l, i) => expect(Math.abs(l - one.losses[i]) / one.losses[i], `step ${i + 1}`).toBeLessThan(1e-12));
      }
    });
  }
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
