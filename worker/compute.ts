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

type LayerVariable = LayersModel['weights'][number];

/** Reads a packed result with one asynchronous read-back (no synchronous GPU reads), then frees it. */
async function readAndDispose(t: Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

export class StepComputer {
  readonly model: LayersModel;
  readonly layout: WeightLayout;
  private readonly flatInput: boolean;
  private readonly trainable: tfc.Variable[];
  /** Non-trainable weights (BatchNorm moving statistics), which follow the trainable ones in the layout. */
  private readonly statWeights: LayerVariable[];

  constructor(readonly modelName: ModelName, private preprocessing: Preprocessing) {
    this.model = buildModel(modelName);
    this.layout = weightLayout(this.model);
    this.flatInput = MODEL_SPECS[modelName].input === 'flat-standardized';
    this.trainable = this.model.trainableWeights.map((w) => (w as unknown as { val: tfc.Variable }).val);
    this.statWeights = this.model.nonTrainableWeights;
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

  /**
   * One training step on a slice. Everything the coordinator needs (loss, probabilities, gradients,
   * BatchNorm statistics) is packed into one tensor and read back with a single `await data()`:
   * GPU backends (webgpu) cannot read synchronously in Node, and one read-back is one GPU sync.
   */
  async train(images: Uint8Array, labels: Uint8Array): Promise<TrainResult> {
    const count = labels.length;
    const packed = tf.tidy(() => {
      const x = this.inputs(images, count);
      const y = tf.tensor2d(oneHot(labels, NUM_CLASSES), [count, NUM_CLASSES]);
      let probs: Tensor | undefined;
      const { value, grads } = tf.variableGrads(() => {
        // Kept past variableGrads' inner scope so it can join the packed read-back below.
        probs = tf.keep(this.model.apply(x, { training: true }) as Tensor);
        return StepComputer.lossSum(probs, y) as tfc.Scalar;
      }, this.trainable);
      const parts: Tensor[] = [tf.reshape(value, [1]), tf.reshape(probs!, [-1])];
      // Trainable weights come first in the layout, in the order of model.trainableWeights.
      for (const v of this.trainable) parts.push(tf.reshape(grads[v.name], [-1]));
      for (const w of this.statWeights) parts.push(tf.reshape(w.read(), [-1]));
      const all = tf.concat(parts);
      probs!.dispose();
      return all;
    });
    const flat = await readAndDispose(packed);
    const probsEnd = 1 + count * NUM_CLASSES;
    const gradEnd = probsEnd + this.layout.trainableSize;
    return {
      count,
      lossSum: flat[0],
      // One read of the [count, 10] probabilities is cheaper than four small kernels and a label upload.
      correct: countCorrect(flat.subarray(1, probsEnd), labels),
      gradientSum: flat.subarray(probsEnd, gradEnd),
      stats: flat.subarray(gradEnd),
    };
  }

  /** Loss, correct count and predicted classes for a slice, in inference mode, with one read-back. */
  async evaluate(images: Uint8Array, labels: Uint8Array): Promise<EvalResult> {
    const count = labels.length;
    const packed = tf.tidy(() => {
      const x = this.inputs(images, count);
      const y = tf.tensor2d(oneHot(labels, NUM_CLASSES), [count, NUM_CLASSES]);
      const probs = this.model.apply(x, { training: false }) as Tensor;
      return tf.concat([tf.reshape(StepComputer.lossSum(probs, y), [1]), tf.cast(tf.argMax(probs, 1), 'float32')]);
    });
    const flat = await readAndDispose(packed);
    const predictions = Uint8Array.from(flat.subarray(1));
    let correct = 0;
    for (let i = 0; i < count; i++) if (predictions[i] === labels[i]) correct++;
    return { count, lossSum: flat[0], correct, predictions };
  }

  /** Current values of every weight, in layout order (used by tests and diagnostics). */
  async readWeights(): Promise<Float32Array> {
    const packed = tf.tidy(() => tf.concat(this.model.weights.map((w) => tf.reshape(w.read(), [-1]))));
    return readAndDispose(packed);
  }

  dispose(): void {
    this.model.dispose();
  }
}
