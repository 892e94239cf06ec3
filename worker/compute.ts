/**
 * One worker's arithmetic: given the flat weights and a slice of raw images, compute the summed
 * gradients (or, for evaluation, the predictions). Sums rather than means, so the coordinator can
 * average by sample count and the result does not depend on how the batch was sliced.
 */
import { tf, tfc, type LayersModel, type Tensor } from '../common/tf.ts';
import { buildModel, MODEL_SPECS, NUM_CLASSES, IMAGE_SHAPE, IMAGE_SIZE, type ModelName } from '../common/models.ts';
import { weightLayout, assertLength, type WeightLayout } from '../common/weights.ts';
import { preprocessBatch, oneHot, type Preprocessing } from '../common/data/preprocess.ts';

export interface TrainResult {
  count: number;
  lossSum: number;
  correct: number;
  /** Sum over the slice of d(loss)/d(weight), trainable weights only, in layout order. */
  gradientSum: Float32Array;
  /** Non-trainable weights (BatchNorm moving statistics) after this slice's update; empty if none. */
  stats: Float32Array;
}

export interface EvalResult {
  count: number;
  lossSum: number;
  correct: number;
  predictions: Uint8Array;
}

/** How many rows' largest probability is at the row's label (first maximum wins, as argMax). */
export function countCorrect(probs: Float32Array, labels: Uint8Array): number {
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    let best = 0;
    for (let k = 1; k < NUM_CLASSES; k++) if (probs[i * NUM_CLASSES + k] > probs[i * NUM_CLASSES + best]) best = k;
    if (best === labels[i]) correct++;
  }
  return correct;
}

// Keras clips probabilities to [epsilon, 1 - epsilon] in categorical cross-entropy.
const EPSILON = 1e-7;

export class StepComputer {
  readonly model: LayersModel;
  readonly layout: WeightLayout;
  private readonly flatInput: boolean;
  private readonly trainable: tfc.Variable[];

  constructor(readonly modelName: ModelName, private preprocessing: Preprocessing) {
    this.model = buildModel(modelName);
    this.layout = weightLayout(this.model);
    this.flatInput = MODEL_SPECS[modelName].input === 'flat-standardized';
    this.trainable = this.model.trainableWeights.map((w) => (w as unknown as { val: tfc.Variable }).val);
  }

  setPreprocessing(p: Preprocessing): void {
    this.preprocessing = p;
  }

  setWeights(flat: Float32Array): void {
    assertLength('weights', flat.length, this.layout.totalSize);
    tf.tidy(() => {
      this.model.weights.forEach((w, i) => {
        const e = this.layout.entries[i];
        w.write(tf.tensor(flat.subarray(e.offset, e.offset + e.size), e.shape));
      });
    });
  }

  private inputs(images: Uint8Array, count: number): Tensor {
    assertLength('image bytes', images.length, count * IMAGE_SIZE);
    const x = preprocessBatch(images, this.preprocessing);
    return this.flatInput ? tf.tensor2d(x, [count, IMAGE_SIZE]) : tf.tensor4d(x, [count, ...IMAGE_SHAPE]);
  }

  private static lossSum(probs: Tensor, y: Tensor): Tensor {
    return tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(probs, EPSILON, 1 - EPSILON)))));
  }

  train(images: Uint8Array, labels: Uint8Array): TrainResult {
    const count = labels.length;
    const gradientSum = new Float32Array(this.layout.trainableSize);
    let lossSum = 0;
    let correct = 0;
    tf.tidy(() => {
      const x = this.inputs(images, count);
      const y = tf.tensor2d(oneHot(labels, NUM_CLASSES), [count, NUM_CLASSES]);
      let probs: Tensor | undefined;
      const { value, grads } = tf.variableGrads(() => {
        // Kept past variableGrads' inner scope for the accuracy below; disposed right after.
        probs = tf.keep(this.model.apply(x, { training: true }) as Tensor);
        return StepComputer.lossSum(probs, y) as tfc.Scalar;
      }, this.trainable);
      lossSum = value.dataSync()[0];
      // One read of the [count, 10] probabilities is cheaper than four small kernels and a label upload.
      correct = countCorrect(probs!.dataSync() as Float32Array, labels);
      probs!.dispose();
      this.layout.entries.forEach((e, i) => {
        if (!e.trainable) return;
        gradientSum.set(grads[this.trainable[i].name].dataSync() as Float32Array, e.offset);
      });
    });
    return { count, lossSum, correct, gradientSum, stats: this.readStats() };
  }

  evaluate(images: Uint8Array, labels: Uint8Array): EvalResult {
    const count = labels.length;
    return tf.tidy(() => {
      const x = this.inputs(images, count);
      const y = tf.tensor2d(oneHot(labels, NUM_CLASSES), [count, NUM_CLASSES]);
      const probs = this.model.apply(x, { training: false }) as Tensor;
      const lossSum = StepComputer.lossSum(probs, y).dataSync()[0];
      const predicted = tf.argMax(probs, 1).dataSync();
      const predictions = Uint8Array.from(predicted);
      let correct = 0;
      for (let i = 0; i < count; i++) if (predictions[i] === labels[i]) correct++;
      return { count, lossSum, correct, predictions };
    });
  }

  /** Current values of every weight, in layout order (used for the stats and by tests). */
  readWeights(): Float32Array {
    const flat = new Float32Array(this.layout.totalSize);
    this.model.weights.forEach((w, i) => flat.set(w.read().dataSync() as Float32Array, this.layout.entries[i].offset));
    return flat;
  }

  private readStats(): Float32Array {
    const out = new Float32Array(this.layout.totalSize - this.layout.trainableSize);
    this.model.weights.forEach((w, i) => {
      const e = this.layout.entries[i];
      if (!e.trainable) out.set(w.read().dataSync() as Float32Array, e.offset - this.layout.trainableSize);
    });
    return out;
  }

  dispose(): void {
    this.model.dispose();
  }
}
