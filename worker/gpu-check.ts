/**
 * Checks a backend (webgpu) against the cpu backend on the worker's real step: the same weights
 * and slice give the same gradients, loss and predictions. Used by worker/webgpu.test.ts (CI, on
 * lavapipe) and by scripts/gpu-smoke (on a lent GPU machine).
 *
 * Tensors never cross backends here: each backend builds its own StepComputer, so no data is moved
 * (moving a tensor off a GPU backend would read it synchronously).
 */
import { tf } from '../common/tf.ts';
import type { ModelName } from '../common/models.ts';
import type { WeightLayout } from '../common/weights.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { StepComputer, type TrainOptions, type TrainResult, type EvalResult } from './compute.ts';

/** Below this share of the model's largest gradient, a weight's gradient counts as zero-scale (see below). */
const SCALE_FLOOR = 1e-2;

/**
 * Worst relative error over the weight tensors: for each, max |a − b| / max |b|, where the scale
 * max |b| is floored at 1% of the largest gradient of the whole model. A tensor whose gradients are
 * all near zero (a bias on a dead unit) is so judged against the model's gradient scale, not
 * against its own rounding noise.
 */
export function gradientError(actual: Float32Array, expected: Float32Array, layout: WeightLayout): { max: number; weight: string } {
  let globalScale = 0;
  for (let i = 0; i < expected.length; i++) globalScale = Math.max(globalScale, Math.abs(expected[i]));
  let worst = { max: 0, weight: '' };
  for (const e of layout.entries) {
    if (!e.trainable) break; // trainable entries come first
    let diff = 0;
    let scale = 0;
    for (let i = e.offset; i < e.offset + e.size; i++) {
      diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
      scale = Math.max(scale, Math.abs(expected[i]));
    }
    const err = diff / Math.max(scale, SCALE_FLOOR * globalScale, Number.MIN_VALUE);
    if (err > worst.max || !worst.weight) worst = { max: err, weight: e.name };
  }
  return worst;
}

export function relativeDifference(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);
}

/** Makes every synchronous read on a backend throw until the returned function is called. */
export function forbidSyncReads(backendName: string): () => void {
  const backend = tf.engine().registry[backendName] as unknown as { readSync(dataId: unknown): unknown };
  const original = backend.readSync;
  backend.readSync = () => {
    throw new Error(`synchronous read (dataSync/arraySync/readSync) on the ${backendName} backend`);
  };
  return () => {
    backend.readSync = original;
  };
}

export interface StepOutcome {
  train: TrainResult;
  evaluation: EvalResult;
}

/** BatchNorm normalizes with the slice's own moments: the path a GPU worker takes (no sync read). */
export const GPU_TRAIN_OPTIONS: TrainOptions = { batchNorm: { kind: 'local' } };

/** One train and one eval step of `model` on the backend now active, from the given weights. */
export async function stepOn(model: ModelName, weights: Float32Array, images: Uint8Array, labels: Uint8Array): Promise<StepOutcome> {
  const c = new StepComputer(model, { kind: 'scale' });
  try {
    c.setWeights(weights);
    const train = await c.train(images, labels, GPU_TRAIN_OPTIONS);
    // Copies: the results are views of one read-back buffer.
    const copy = { ...train, gradientSum: train.gradientSum.slice(), stats: train.stats.slice() };
    return { train: copy, evaluation: await c.evaluate(images, labels) };
  } finally {
    c.dispose();
  }
}

export interface Comparison {
  model: ModelName;
  batch: number;
  gradientMaxRelativeError: number;
  worstWeight: string;
  lossRelativeError: number;
  evalLossRelativeError: number;
  predictionsAgree: number;
  correct: { backend: number; cpu: number };
}

/** The same step on cpu and on `backendName`, from the same weights and slice. */
export async function compareWithCpu(backendName: string, model: ModelName, batch: number, seed = 1): Promise<Comparison> {
  const { images, labels } = generateSynthetic(Uint32Array.from({ length: batch }, (_, i) => i), 'dev', seed);
  await tf.setBackend('cpu');
  const layoutComputer = new StepComputer(model, { kind: 'scale' });
  const layout = layoutComputer.layout;
  layoutComputer.dispose();
  const weights = initialWeights(layout, seed);
  const cpu = await stepOn(model, weights, images, labels);
  await tf.setBackend(backendName);
  const gpu = await stepOn(model, weights, images, labels);
  const grad = gradientError(gpu.train.gradientSum, cpu.train.gradientSum, layout);
  let agree = 0;
  for (let i = 0; i < batch; i++) if (gpu.evaluation.predictions[i] === cpu.evaluation.predictions[i]) agree++;
  return {
    model,
    batch,
    gradientMaxRelativeError: grad.max,
    worstWeight: grad.weight,
    lossRelativeError: relativeDifference(gpu.train.lossSum, cpu.train.lossSum),
    evalLossRelativeError: relativeDifference(gpu.evaluation.lossSum, cpu.evaluation.lossSum),
    predictionsAgree: agree / batch,
    correct: { backend: gpu.evaluation.correct, cpu: cpu.evaluation.correct },
  };
}
