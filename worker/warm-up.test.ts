import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../common/backend.ts';
import { warmUp, warmUpFor, WARM_UP_STEPS } from './warm-up.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';
import { countCalls, requireNativeOrSkip } from '../common/kernels/native/native-testing.ts';
import { StepComputer } from './compute.ts';
import { stepsFromBackend } from '../coordinator/shared-step.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);
const calls = load.loaded ? countCalls(load.kernels, ['stripeStepFrom']) : new Map<string, number>();

describe('a compute thread\'s warm-up (wasm)', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('runs the steps asked for on the run\'s model and slice, then frees everything it made', async () => {
    const before = tf.memory().numTensors;
    for (const model of ['mlp', 'lenet'] as const) expect(await warmUp({ model, batch: 4, steps: 3, maxMs: 60_000 })).toBe(3);
    expect(tf.memory().numTensors).toBe(before);
  });

  it.runIf(native)('steps as a run of one slot from the backend when told so (the native stripe reads each gradient tensor in the backend and writes the next weights into new tensors), all freed after; not when not told, nor for a model with BatchNorm', async () => {
    const computer = new StepComputer('mlp', { kind: 'scale' });
    const tensorsPerStep = computer.layout.entries.filter((e) => e.trainable).length;
    computer.dispose();
    const before = tf.memory().numTensors;
    calls.clear();
    expect(await warmUp({ model: 'mlp', batch: 4, steps: 3, maxMs: 60_000, fromBackend: true })).toBe(3);
    expect(calls.get('stripeStepFrom')).toBe(3 * tensorsPerStep);
    expect(tf.memory().numTensors).toBe(before);
    calls.clear();
    expect(await warmUp({ model: 'mlp', batch: 4, steps: 2, maxMs: 60_000, fromBackend: false })).toBe(2);
    expect(await warmUp({ model: 'cnn-bn', batch: 4, steps: 1, maxMs: 60_000, fromBackend: true })).toBe(1);
    expect(calls.get('stripeStepFrom')).toBeUndefined();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('steps from the backend for a run of one thread without a reduction grain, unless DTRAIN_STEP_FROM_BACKEND is off', () => {
    expect(warmUpFor('mlp', 32, stepsFromBackend(1, 0, {}))).toMatchObject({ fromBackend: true });
    expect(stepsFromBackend(2, 0, {})).toBe(false);
    expect(stepsFromBackend(1, 16, {})).toBe(false);
    expect(stepsFromBackend(1, 0, { DTRAIN_STEP_FROM_BACKEND: '0' })).toBe(false);
    expect(warmUpFor('mlp', 32)).toMatchObject({ fromBackend: false });
  });

  it('stops at its time limit', async () => {
    expect(await warmUp({ model: 'cnn-bn', batch: 4, steps: 1000, maxMs: 1 })).toBeLessThan(3);
  });

  it('is WARM_UP_STEPS steps of the run\'s slice', () => {
    expect(warmUpFor('lenet', 16)).toMatchObject({ model: 'lenet', batch: 16, steps: WARM_UP_STEPS });
  });
});
