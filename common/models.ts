/**
 * The four CIFAR-10 models of the assignment, built layer for layer as the Keras originals so that
 * parameter counts, initialisers (glorot-uniform kernels, zero biases) and the saved format match.
 */
import { tfl } from './tf.ts';
import { ConfigError } from './errors.ts';

import { MODEL_NAMES, type ModelName } from './config.ts';

export { MODEL_NAMES, type ModelName };

/** How raw CIFAR bytes become model inputs: MLP inputs are standardized, CNN inputs scaled to [0,1]. */
export type InputKind = 'flat-standardized' | 'image-scaled';

export interface ModelSpec {
  name: ModelName;
  input: InputKind;
  description: string;
  /** Has BatchNorm layers (their moving statistics, and an exchange per step across slices). */
  batchNorm: boolean;
}

export const MODEL_SPECS: Record<ModelName, ModelSpec> = {
  mlp: { name: 'mlp', input: 'flat-standardized', description: 'MLP 3072-128-64-10', batchNorm: false },
  lenet: { name: 'lenet', input: 'image-scaled', description: 'LeNet-5', batchNorm: false },
  'cnn-dropout': { name: 'cnn-dropout', input: 'image-scaled', description: '3-conv CNN with dropout 0.3', batchNorm: false },
  'cnn-bn': { name: 'cnn-bn', input: 'image-scaled', description: '3-conv CNN with batch normalization', batchNorm: true },
};

export function parseModelName(value: string): ModelName {
  if ((MODEL_NAMES as readonly string[]).includes(value)) return value as ModelName;
  throw new ConfigError(`Unknown model "${value}": expected one of ${MODEL_NAMES.join(', ')}.`);
}

export const NUM_CLASSES = 10;
export const IMAGE_SHAPE = [32, 32, 3] as const;
export const IMAGE_SIZE = 32 * 32 * 3;

/** Builds the (uncompiled) Keras-equivalent model. */
export function buildModel(name: ModelName): tfl.LayersModel {
  const L = tfl.layers;
  const m = tfl.sequential({ name });
  switch (name) {
    case 'mlp':
      m.add(L.dense({ inputShape: [IMAGE_SIZE], units: 128, activation: 'relu', name: 'dense' }));
      m.add(L.dense({ units: 64, activation: 'relu', name: 'dense_1' }));
      m.add(L.dense({ units: NUM_CLASSES, activation: 'softmax', name: 'dense_2' }));
      break;
    case 'lenet':
      m.add(L.conv2d({ inputShape: [...IMAGE_SHAPE], filters: 6, kernelSize: 5, activation: 'relu', name: 'conv2d' }));
      m.add(L.maxPooling2d({ poolSize: 2, name: 'max_pooling2d' }));
      m.add(L.conv2d({ filters: 16, kernelSize: 5, activation: 'relu', name: 'conv2d_1' }));
      m.add(L.maxPooling2d({ poolSize: 2, name: 'max_pooling2d_1' }));
      m.add(L.flatten({ name: 'flatten' }));
      m.add(L.dense({ units: 120, activation: 'relu', name: 'dense' }));
      m.add(L.dense({ units: 84, activation: 'relu', name: 'dense_1' }));
      m.add(L.dense({ units: NUM_CLASSES, activation: 'softmax', name: 'dense_2' }));
      break;
    case 'cnn-dropout':
    case 'cnn-bn': {
      const bn = name === 'cnn-bn';
      let i = 0;
      const norm = () => {
        if (bn) m.add(L.batchNormalization({ name: i === 0 ? 'batch_normalization' : `batch_normalization_${i}` }));
        if (bn) i++;
      };
      m.add(L.conv2d({ inputShape: [...IMAGE_SHAPE], filters: 32, kernelSize: 3, activation: 'relu', name: 'conv2d' }));
      norm();
      m.add(L.maxPooling2d({ poolSize: 2, name: 'max_pooling2d' }));
      m.add(L.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', name: 'conv2d_1' }));
      norm();
      m.add(L.maxPooling2d({ poolSize: 2, name: 'max_pooling2d_1' }));
      m.add(L.conv2d({ filters: 64, kernelSize: 3, activation: 'relu', name: 'conv2d_2' }));
      norm();
      m.add(L.flatten({ name: 'flatten' }));
      if (!bn) m.add(L.dropout({ rate: 0.3, name: 'dropout' }));
      m.add(L.dense({ units: 64, activation: 'relu', name: 'dense' }));
      norm();
      m.add(L.dense({ units: NUM_CLASSES, activation: 'softmax', name: 'dense_1' }));
      break;
    }
  }
  return m;
}

export interface ParameterCounts {
  total: number;
  trainable: number;
  nonTrainable: number;
}

export function countParameters(model: tfl.LayersModel): ParameterCounts {
  let trainable = 0;
  let nonTrainable = 0;
  for (const w of model.weights) {
    const n = w.shape.reduce<number>((a, b) => a * (b ?? 1), 1);
    if (w.trainable) trainable += n;
    else nonTrainable += n;
  }
  return { total: trainable + nonTrainable, trainable, nonTrainable };
}

/** A Keras-style summary table: layer (type), output shape, parameter count, then the totals. */
export function modelSummary(model: tfl.LayersModel): string {
  const fmt = (n: number) => n.toLocaleString('en-US');
  const shape = (s: unknown) => `(${(s as (number | null)[]).map((d) => (d === null ? 'None' : String(d))).join(', ')})`;
  const rows = model.layers.map((l) => [`${l.name} (${l.getClassName()})`, shape(l.outputShape), fmt(l.countParams())]);
  const widths = [44, 26, 12];
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('').trimEnd();
  const rule = (ch: string) => ch.repeat(widths.reduce((a, b) => a + b, 0));
  const counts = countParameters(model);
  return [
    `Model: "${model.name}"`,
    rule('_'),
    line(['Layer (type)', 'Output Shape', 'Param #']),
    rule('='),
    ...rows.flatMap((r, i) => [line(r), i < rows.length - 1 ? rule('_') : rule('=')]),
    `Total params: ${fmt(counts.total)}`,
    `Trainable params: ${fmt(counts.trainable)}`,
    `Non-trainable params: ${fmt(counts.nonTrainable)}`,
    rule('_'),
  ].join('\n');
}
