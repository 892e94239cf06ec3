import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../common/backend.ts';
import { warmUp, warmUpFor, WARM_UP_STEPS } from './warm-up.ts';

describe('a compute thread\'s warm-up (wasm)', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('runs the steps asked for on the run\'s model and slice, then frees everything it made', async () => {
    const before = tf.memory().numTensors;
    for (const model of ['mlp', 'lenet'] as const) expect(await warmUp({ model, batch: 4, steps: 3, maxMs: 60_000 })).toBe(3);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('stops at its time limit', async () => {
    expect(await warmUp({ model: 'cnn-bn', batch: 4, steps: 1000, maxMs: 1 })).toBeLessThan(3);
  });

  it('is WARM_UP_STEPS steps of the run\'s slice', () => {
    expect(warmUpFor('lenet', 16)).toMatchObject({ model: 'lenet', batch: 16, steps: WARM_UP_STEPS });
  });
});
