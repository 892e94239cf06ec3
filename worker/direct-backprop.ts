/**
 * Forward and backward of a model made only of Dense, Conv2D, MaxPooling2D, Flatten and Dropout
 * layers, ending in a softmax Dense layer (mlp, lenet, cnn-dropout), written out layer by layer
 * instead of recorded on tfjs's tape.
 *
 * Why: for these models most of a step's kernel calls were bookkeeping. tfjs's `variableGrads`
 * clones every tensor an op saves for its backward pass (one Identity kernel each), and the loss's
 * clip, log and softmax gradients are a dozen small kernels: mlp made 86 kernel calls per step, of
 * which 26 were Identity and 15 Reshape, against about 20 here. Each call costs microseconds of
 * engine work that a 0.8 ms step cannot hide. The arithmetic is the same as tfjs's gradients (the
 * same kernels: fused MatMul and Conv2D forward, MatMul, Conv2DBackpropFilter/Input and MaxPoolGrad
 * backward); the loss gradient is the closed form of softmax and clipped cross-entropy, p − y on
 * rows whose label probability lies within the clip, 0 elsewhere (worker/direct-backprop.test.ts
 * checks both against the tape).
 *
 * Dropout takes the same per-sample mask as on the tape (layers/seeded-dropout.ts), kept for the
 * backward pass. It needs the probabilities on the CPU in the middle of the step, so it runs only
 * on backends that read synchronously (cpu, wasm, tensorflow); elsewhere, and for models with
 * BatchNorm (whose synchronized op exchanges inside its own gradient), StepComputer keeps the tape.
 */
import { tf, tfc, tfl, type Tensor } from '../common/tf.ts';
import { hostFloats } from '../common/host-floats.ts';
import { NUM_CLASSES } from '../common/models.ts';
import { dropoutMask, type SamplePosition } from './layers/seeded-dropout.ts';

type Activation = 'relu' | 'linear';

type Stage =
  | { kind: 'dense'; kernel: tfc.Variable; bias: tfc.Variable; activation: Activation | 'softmax' }
  | { kind: 'conv'; kernel: tfc.Variable; bias: tfc.Variable; activation: Activation }
  | { kind: 'pool'; size: [number, number]; strides: [number, number] }
  | { kind: 'flatten' }
  | { kind: 'dropout'; rate: number };

/** Backends whose tensors can be read in the middle of a step without a device sync. */
const SYNC_BACKENDS = new Set(['cpu', 'wasm', 'tensorflow']);

const pair = (v: unknown): [number, number] | undefined => {
  const a = Array.isArray(v) ? v : [v, v];
  return a.length === 2 && a.every((n) => Number.isInteger(n)) ? [a[0], a[1]] : undefined;
};
const ones = (v: unknown) => pair(v)?.every((n) => n === 1) === true;
const variable = (w: tfl.LayerVariable) => (w as unknown as { val: tfc.Variable }).val;

/** The stage a layer becomes, or undefined if this path cannot run it. */
function stageOf(layer: tfl.layers.Layer, last: boolean): Stage | undefined {
  const c = layer.getConfig();
  const kind = layer.getClassName();
  if (kind === 'Flatten') return { kind: 'flatten' };
  if (kind === 'Dropout') return c.noiseShape == null ? { kind: 'dropout', rate: c.rate as number } : undefined;
  if (kind === 'MaxPooling2D') {
    const size = pair(c.poolSize);
    const strides = pair(c.strides ?? c.poolSize);
    if (!size || !strides || c.padding !== 'valid' || c.dataFormat === 'channelsFirst') return undefined;
    return { kind: 'pool', size, strides };
  }
  if (kind !== 'Dense' && kind !== 'Conv2D') return undefined;
  const activation = c.activation;
  const allowed = activation === 'relu' || activation === 'linear' || (last && kind === 'Dense' && activation === 'softmax');
  if (c.useBias === false || !allowed || layer.trainableWeights.length !== 2) return undefined;
  const [kernel, bias] = layer.trainableWeights.map(variable);
  if (kind === 'Dense') return { kind: 'dense', kernel, bias, activation: activation as Activation | 'softmax' };
  if (c.padding !== 'valid' || c.dataFormat === 'channelsFirst' || !ones(c.strides) || !ones(c.dilationRate)) return undefined;
  return { kind: 'conv', kernel, bias, activation: activation as Activation };
}

// Keras clips probabilities to [epsilon, 1 - epsilon] in categorical cross-entropy (as StepComputer),
// compared in float32 as tfjs's ClipByValue kernel does.
const CLIP_MIN = Math.fround(1e-7);
const CLIP_MAX = Math.fround(1 - 1e-7);

export class DirectBackprop {
  private constructor(private readonly stages: Stage[]) {}

  /** The direct path for `model`, or undefined if one of its layers needs the tape. */
  static plan(model: tfl.LayersModel): DirectBackprop | undefined {
    const layers = model.layers;
    const stages: Stage[] = [];
    for (let i = 0; i < layers.length; i++) {
      const s = stageOf(layers[i], i === layers.length - 1);
      if (!s) return undefined;
      stages.push(s);
    }
    const lastStage = stages[stages.length - 1];
    return lastStage?.kind === 'dense' && lastStage.activation === 'softmax' ? new DirectBackprop(stages) : undefined;
  }

  /** Whether the current backend can run this path (it reads the probabilities mid-step). */
  static backendSupported(): boolean {
    return SYNC_BACKENDS.has(tf.getBackend());
  }

  /**
   * Loss sum, probabilities and the gradient sums of every stage's kernel and bias, in the caller's
   * tidy. `grads` maps each weight variable to its gradient.
   */
  forwardBackward(x: Tensor, labels: Uint8Array, position: SamplePosition): { lossSum: number; probs: Tensor; grads: Map<tfc.Variable, Tensor> } {
    const inputs: Tensor[] = [];
    const outputs: Tensor[] = [];
    /** Each dropout stage's scaled mask, for its backward pass. */
    const masks = new Map<number, Tensor>();
    let h = x;
    this.stages.forEach((s, i) => {
      inputs.push(h);
      if (s.kind === 'dropout') {
        const mask = s.rate > 0 ? tf.tensor(dropoutMask(s.rate, h.shape[0], h.size / h.shape[0], position), h.shape) : undefined;
        if (mask) masks.set(i, mask);
        h = mask ? tf.mul(h, mask) : h;
      } else {
        h = DirectBackprop.forward(s, h);
      }
      outputs.push(h);
    });
    const probs = h;
    const { lossSum, dz } = DirectBackprop.lossGradient(probs, labels);
    const grads = new Map<tfc.Variable, Tensor>();
    // Nothing before the first weighted stage needs a gradient.
    const first = this.stages.findIndex((s) => s.kind === 'dense' || s.kind === 'conv');
    let dy: Tensor = dz;
    for (let i = this.stages.length - 1; i >= first; i--) {
      const s = this.stages[i];
      const mask = masks.get(i);
      if (s.kind === 'dropout') dy = mask ? tf.mul(dy, mask) : dy;
      else dy = this.backward(s, inputs[i], outputs[i], dy, grads, i > first, i === this.stages.length - 1);
    }
    return { lossSum, probs, grads };
  }

  private static forward(s: Exclude<Stage, { kind: 'dropout' }>, h: Tensor): Tensor {
    switch (s.kind) {
      case 'dense': {
        const z = tf.fused.matMul({ a: h as tfc.Tensor2D, b: s.kernel as tfc.Tensor2D, bias: s.bias, activation: s.activation === 'relu' ? 'relu' : 'linear' });
        return s.activation === 'softmax' ? tf.softmax(z) : z;
      }
      case 'conv':
        return tf.fused.conv2d({ x: h as tfc.Tensor4D, filter: s.kernel as tfc.Tensor4D, strides: 1, pad: 'valid', dataFormat: 'NHWC', bias: s.bias, activation: s.activation });
      case 'pool':
        return tf.maxPool(h as tfc.Tensor4D, s.size, s.strides, 'valid');
      case 'flatten':
        return tf.reshape(h, [h.shape[0], -1]);
    }
  }

  /**
   * −Σ log(clip(p[label])) and its gradient with respect to the softmax's input: p − onehot(label)
   * on rows whose label probability is inside the clip (tfjs's ClipByValue passes the gradient on
   * [min, max]), 0 on the others; both in one pass over the [count, 10] probabilities.
   */
  private static lossGradient(probs: Tensor, labels: Uint8Array): { lossSum: number; dz: Tensor } {
    const p = hostFloats(probs) ?? (probs.dataSync() as Float32Array);
    const dz = new Float32Array(p.length);
    let lossSum = 0;
    for (let i = 0; i < labels.length; i++) {
      const row = i * NUM_CLASSES;
      const pl = p[row + labels[i]];
      lossSum -= Math.log(Math.min(Math.max(pl, CLIP_MIN), CLIP_MAX));
      if (pl < CLIP_MIN || pl > CLIP_MAX) continue;
      for (let k = 0; k < NUM_CLASSES; k++) dz[row + k] = p[row + k];
      dz[row + labels[i]] = Math.fround(pl - 1);
    }
    return { lossSum, dz: tf.tensor2d(dz, [labels.length, NUM_CLASSES]) };
  }

  /** Records stage `s`'s weight gradients; returns the gradient of its input (if `needInput`). */
  private backward(s: Exclude<Stage, { kind: 'dropout' }>, input: Tensor, output: Tensor, dy: Tensor, grads: Map<tfc.Variable, Tensor>, needInput: boolean, lossStage: boolean): Tensor {
    const engine = tfc.engine();
    switch (s.kind) {
      case 'flatten':
        return tf.reshape(dy, input.shape);
      case 'pool':
        return engine.runKernel('MaxPoolGrad', { dy, input, output }, { filterSize: s.size, strides: s.strides, pad: 'valid', dimRoundingMode: undefined } as never) as Tensor;
      case 'dense': {
        // The loss stage's dy is already the gradient of the softmax's input.
        const dz = !lossStage && s.activation === 'relu' ? tf.mul(dy, tf.step(output)) : dy;
        grads.set(s.kernel, tf.matMul(input as tfc.Tensor2D, dz as tfc.Tensor2D, true, false));
        grads.set(s.bias, tf.sum(dz, 0));
        return needInput ? tf.matMul(dz as tfc.Tensor2D, s.kernel as tfc.Tensor2D, false, true) : dz;
      }
      case 'conv': {
        const dz = s.activation === 'relu' ? tf.mul(dy, tf.step(output)) : dy;
        const conv = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dimRoundingMode: undefined };
        grads.set(s.kernel, engine.runKernel('Conv2DBackpropFilter', { x: input, dy: dz }, { ...conv, filterShape: s.kernel.shape } as never) as Tensor);
        grads.set(s.bias, tf.sum(dz, [0, 1, 2]));
        return needInput ? (engine.runKernel('Conv2DBackpropInput', { dy: dz, filter: s.kernel }, { ...conv, inputShape: input.shape } as never) as Tensor) : dz;
      }
    }
  }
}
