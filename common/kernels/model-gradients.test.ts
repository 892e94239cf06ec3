import { describe, expect, it } from 'vitest';
import { tf, tfc, type Tensor } from '../tf.ts';
import { buildModel, IMAGE_SHAPE, NUM_CLASSES, type ModelName } from '../models.ts';
import { on, TestRandom, use, worstError, relativeError, type Backend } from './testing.ts';
import { loadNativeKernels } from './native/addon.ts';
import { requireNativeOrSkip } from './native/native-testing.ts';

const BATCH = 8;

/** Deterministic weights in `model.weights` order, Keras-like in scale. */
function weightValues(name: ModelName): { shape: number[]; values: Float32Array }[] {
  const rng = new TestRandom(31);
  return buildModel(name).weights.map((w) => {
    const shape = w.shape.map((d) => d ?? 1);
    const n = shape.reduce((a, b) => a * b, 1);
    const role = (w.originalName ?? w.name).split('/').pop()!.replace(/_\d+$/, '');
    const u = rng.array(n);
    const fanIn = shape.slice(0, -1).reduce((a, b) => a * b, 1);
    const limit = Math.sqrt(6 / (fanIn + shape[shape.length - 1]));
    const values = u.map((v) => {
      if (role === 'kernel') return v * limit;
      if (role === 'gamma') return 1 + 0.2 * v;
      if (role === 'moving_variance') return 1;
      if (role === 'moving_mean') return 0;
      return 0.1 * v; // bias, beta
    });
    return { shape, values };
  });
}

/**
 * The loss StepComputer differentiates: Σ −y·log(clip(p)), and the gradient of every trainable
 * weight. Dropout is random, so cnn-dropout runs with `training` false (dropout off).
 */
function lossAndGrads(name: ModelName, training = true): () => Tensor[] {
  return () => {
    const model = buildModel(name);
    model.setWeights(weightValues(name).map((w) => tf.tensor(w.values, w.shape)));
    const rng = new TestRandom(32);
    const inputShape = name === 'mlp' ? [BATCH, 3072] : [BATCH, ...IMAGE_SHAPE];
    const x = tf.tensor(rng.array(inputShape.reduce((a, b) => a * b, 1)).map((v) => (v + 1) / 2), inputShape);
    const labels = Array.from({ length: BATCH }, () => rng.int(0, NUM_CLASSES - 1));
    const y = tf.oneHot(tf.tensor1d(labels, 'int32'), NUM_CLASSES);
    const vars = model.trainableWeights.map((w) => (w as unknown as { val: tfc.Variable }).val);
    const { value, grads } = tf.variableGrads(() => {
      const p = model.apply(x, { training }) as Tensor;
      return tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(p, 1e-7, 1 - 1e-7))))) as tfc.Scalar;
    }, vars);
    const out = [value, ...vars.map((v) => grads[v.name])];
    model.dispose();
    return out;
  };
}

async function expectGradientsMatchCpu(backend: Backend, name: ModelName, training: boolean): Promise<void> {
  const cpu = await on('cpu', lossAndGrads(name, training));
  const wasm = await on(backend, lossAndGrads(name, training));
  expect(relativeError(wasm.values[0], cpu.values[0])).toBeLessThan(1e-5);
  const perWeight = wasm.values.map((v, i) => relativeError(v, cpu.values[i]));
  expect(Math.max(...perWeight), `per-weight errors ${perWeight.map((e) => e.toExponential(1)).join(' ')}`).toBeLessThan(1e-4);
  expect(worstError(wasm, cpu)).toBeLessThan(1e-4);
}

describe('whole-model gradients on wasm match the cpu backend', () => {
  it.each(['lenet', 'cnn-bn', 'mlp'] as const)('%s: loss and every trainable weight gradient', async (name) => {
    await expectGradientsMatchCpu('wasm', name, true);
  });
});

const native = requireNativeOrSkip(loadNativeKernels());

describe.skipIf(!native)('whole-model gradients with the native (oneDNN) kernels match the cpu backend', () => {
  it.each([['lenet', true], ['cnn-bn', true], ['mlp', true], ['cnn-dropout', false]] as const)('%s (training %s): loss and every trainable weight gradient', async (name, training) => {
    await expectGradientsMatchCpu('onednn', name, training);
  });
});

const leakCases: [ModelName, Backend][] = [['lenet', 'wasm'], ['cnn-bn', 'wasm'], ...(native ? ([['lenet', 'onednn'], ['cnn-bn', 'onednn'], ['mlp', 'onednn']] as [ModelName, Backend][]) : [])];

describe('a training step on wasm does not leak', () => {
  it.each(leakCases)('%s with the %s kernels: tensors, wasm buffers and the wasm heap are the same before and after steps', async (name, backend) => {
    await use(backend);
    const model = buildModel(name);
    const vars = model.trainableWeights.map((w) => (w as unknown as { val: tfc.Variable }).val);
    const x = tf.randomUniform(name === 'mlp' ? [4, 3072] : [4, ...IMAGE_SHAPE]);
    const y = tf.oneHot(tf.tensor1d([1, 2, 3, 4], 'int32'), NUM_CLASSES);
    const step = () =>
      tf.tidy(() => {
        const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true }) as Tensor) as tfc.Scalar, vars);
        for (const g of Object.values(grads)) g.dataSync();
      });
    step(); // first-call allocations (cached scalars, kernel setup) are not leaks
    const heap = () => (tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length;
    const before = tf.memory();
    const heapBefore = heap();
    for (let i = 0; i < 5; i++) step();
    const after = tf.memory();
    expect(after.numTensors).toBe(before.numTensors);
    // Kernels' intermediates live below the engine: only the backend's buffer count sees them.
    expect(after.numDataBuffers).toBe(before.numDataBuffers);
    // Nor does anything leak inside the wasm module (XNNPACK operators cached per filter).
    expect(heap()).toBe(heapBefore);
    model.dispose();
    tf.dispose([x, y]);
  });
});
