/**
 * Forward and backward of a model made only of Dense, Conv2D, MaxPooling2D, Flatten, Dropout and
 * BatchNormalization layers, ending in a softmax Dense layer (all four models), written out layer
 * by layer instead of recorded on tfjs's tape.
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
 * backward pass. BatchNorm is the synchronized one (layers/sync-batch-norm.ts: the same statistics
 * and gradient functions, the same exchanges in the same order), and the bias of the layer before
 * it takes its gradient from the inactive positions where the global moments allow, as
 * layers/pre-norm-bias.ts does on the tape. It needs the probabilities on the CPU in the middle of
 * the step, so it runs only on backends that read synchronously (cpu, wasm, tensorflow), with
 * synchronized BatchNorm; elsewhere (webgpu, `--sync-bn stats`) StepComputer keeps the tape.
 */
import { tf, tfc, tfl, type Tensor } from '../common/tf.ts';
import { hostFloats } from '../common/host-floats.ts';
import { UploadScratch } from '../common/upload-scratch.ts';
import { SYNC_READ_BACKENDS } from '../common/sync-read.ts';
import { NUM_CLASSES } from '../common/models.ts';
import { dropoutMask, type SamplePosition } from './layers/seeded-dropout.ts';
import { defaultPasses, identityExchange, syncBatchNormGradient, syncBatchNormGradientRelu, syncStatistics, type ExchangePhase, type SyncStatistics } from './layers/sync-batch-norm.ts';
import { inactiveForm, inactiveFormGradient, substituteChannels } from './layers/pre-norm-bias.ts';
import { nativeReluBackward } from '../common/kernels/native/relu-backward.ts';
import { sampleGroups, sumGroups, sumRounded, type SampleGroup } from '../common/reduce-grain.ts';
import { combineSlices } from '../common/batch-moments.ts';
import type { BatchNormPasses } from '../common/kernels/native/sync-batch-norm-passes.ts';

/** Combines one BatchNorm layer's sums with the other slices' (StepComputer's LayerExchange). */
export type LayerExchange = (layer: number, phase: ExchangePhase, local: Float64Array) => Float64Array;

type Activation = 'relu' | 'linear';

type Stage =
  | { kind: 'dense'; kernel: tfc.Variable; bias: tfc.Variable; activation: Activation | 'softmax' }
  | { kind: 'conv'; kernel: tfc.Variable; bias: tfc.Variable; activation: Activation }
  | { kind: 'pool'; size: [number, number]; strides: [number, number] }
  | { kind: 'flatten' }
  | { kind: 'dropout'; rate: number }
  | { kind: 'batchnorm'; gamma: tfc.Variable; beta: tfc.Variable; epsilon: number; layer: number };


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
  // tfjs flattens channels-first input after moving the channels last; this path does not.
  if (kind === 'Flatten') return c.dataFormat === 'channelsFirst' ? undefined : { kind: 'flatten' };
  if (kind === 'Dropout') return c.noiseShape == null ? { kind: 'dropout', rate: c.rate as number } : undefined;
  if (kind === 'BatchNormalization') {
    const axis = c.axis as number;
    if (axis !== -1 || c.center === false || c.scale === false || layer.trainableWeights.length !== 2) return undefined;
    const [gamma, beta] = layer.trainableWeights.map(variable);
    return { kind: 'batchnorm', gamma, beta, epsilon: c.epsilon as number, layer: -1 };
  }
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

/** What one forward pass keeps for its backward pass. */
interface Pass {
  inputs: Tensor[];
  outputs: Tensor[];
  /** Each dropout stage's scaled mask. */
  masks: Map<number, Tensor>;
  /** Each BatchNorm stage's statistics, saved tensors and exchange. */
  norms: Map<number, { st: SyncStatistics; saved: Tensor[]; phase: (p: ExchangePhase, local: Float64Array) => Float64Array; passes: ReturnType<typeof defaultPasses> }>;
  stats: Tensor[];
  exchange: LayerExchange | undefined;
  /** The bias gradient a BatchNorm's backward pass computed for the stage before it, and its channels. */
  preNormBias?: { stage: number; form: boolean[]; gradient: Float64Array };
  /** A BatchNorm's backward pass took the relu of the stage before it too: the gradient it passes on is dz, and this is the bias's Σ dz. */
  reluDone?: { stage: number; biasSum: Tensor };
  /** With a reduction grain: the slice's groups of samples, each reduced on its own (common/reduce-grain.ts). */
  groups: SampleGroup[] | undefined;
  /** With a grain: the gradients summed in float64 (BatchNorm's γ and β, pre-norm biases). */
  wide: Map<tfc.Variable, Float64Array>;
}

/** Keras clips probabilities to [ε, 1 − ε] in categorical cross-entropy (StepComputer's tape loss too). */
export const PROBABILITY_CLIP = 1e-7;
// Compared in float32, as tfjs's ClipByValue kernel does.
const CLIP_MIN = Math.fround(PROBABILITY_CLIP);
const CLIP_MAX = Math.fround(1 - PROBABILITY_CLIP);

/** Rows [g.start, g.start + g.size) of `t` (no copy for a slice of one group: all of it). */
function rowsOf(t: Tensor, g: SampleGroup): Tensor {
  if (g.start === 0 && g.size === t.shape[0]) return t;
  return tf.slice(t, [g.start, ...new Array<number>(t.rank - 1).fill(0)], [g.size, ...new Array<number>(t.rank - 1).fill(-1)]);
}

/**
 * `f` on each group's rows of `tensors`, stacked: one result per group. The same call on the same
 * rows whatever the slice holds besides them, so each group's float32 result is too.
 */
function perGroup(groups: readonly SampleGroup[], tensors: Tensor[], f: (rows: Tensor[]) => Tensor): Tensor {
  return stackGroups(groups.map((g) => f(tensors.map((t) => rowsOf(t, g)))));
}

/** One result per group, stacked on a new first axis (a lone group's without a copy). */
function stackGroups(results: Tensor[]): Tensor {
  return results.length === 1 ? tf.expandDims(results[0], 0) : tf.stack(results);
}

/** BatchNorm's passes with the moments and backward sums taken per group, one vector each, in order. */
function groupedPasses(passes: BatchNormPasses, groups: readonly SampleGroup[]): BatchNormPasses {
  const concat = (parts: Float64Array[]) => {
    const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  return {
    ...passes,
    moments: (x, channels) => concat(groups.map((g) => passes.moments(rowsOf(x, g), channels))),
    // The saved tensors: one per row (x, or x̂) first, then per channel.
    backwardSums: (dy, saved, channels) => concat(groups.map((g) => passes.backwardSums(rowsOf(dy, g), [rowsOf(saved[0], g), ...saved.slice(1)], channels))),
    // Its relu sums run over the whole slice, not per group: with groups the relu's own pass takes them.
    gradInputRelu: undefined,
  };
}

/** dγ and dβ from per-group [Σdy…, Σdy·x̂…] vectors: each rounded to float32, then added in float64 (exactly). */
function groupedScaleShift(sums: Float64Array, channels: number): { gamma: Float64Array; beta: Float64Array } {
  const groups: Float64Array[] = [];
  for (let at = 0; at < sums.length; at += 2 * channels) groups.push(sums.subarray(at, at + 2 * channels));
  return { gamma: sumRounded(groups.map((g) => g.subarray(channels)), channels), beta: sumRounded(groups, channels) };
}

export class DirectBackprop {
  /** Dropout masks' arrays, reused across steps where the backend copies them (common/upload-scratch.ts). */
  private readonly uploads = new UploadScratch();

  private constructor(private readonly stages: Stage[]) {}

  /** The direct path for `model`, or undefined if one of its layers needs the tape. */
  static plan(model: tfl.LayersModel): DirectBackprop | undefined {
    const layers = model.layers;
    const stages: Stage[] = [];
    let batchNorms = 0;
    // Dense layers take [N, features] here (a rank-3 input would make its products batched), convolution and pooling [N, H, W, C].
    let rank = model.inputs[0]?.shape.length;
    for (let i = 0; i < layers.length; i++) {
      const s = stageOf(layers[i], i === layers.length - 1);
      if (!s) return undefined;
      if ((s.kind === 'dense' && rank !== 2) || ((s.kind === 'conv' || s.kind === 'pool') && rank !== 4)) return undefined;
      if (s.kind === 'flatten') rank = 2;
      if (s.kind === 'batchnorm') {
        // Its input must be the last axis of a conv or dense output (the channels the moments run over).
        const before = stages[stages.length - 1];
        if (before?.kind !== 'conv' && before?.kind !== 'dense') return undefined;
        s.layer = batchNorms++;
      }
      stages.push(s);
    }
    const lastStage = stages[stages.length - 1];
    return lastStage?.kind === 'dense' && lastStage.activation === 'softmax' ? new DirectBackprop(stages) : undefined;
  }

  /** Whether the current backend can run this path (it reads the probabilities mid-step). */
  static backendSupported(): boolean {
    return SYNC_READ_BACKENDS.has(tf.getBackend());
  }

  /**
   * Loss sum, probabilities, the gradient sums of every stage's weights (`grads`, by variable) and
   * each BatchNorm's slice mean and variance (`stats`, in layer order), in the caller's tidy.
   * `exchange` combines BatchNorm sums with the step's other slices (absent: this slice is the batch).
   *
   * `grain` (samples; common/reduce-grain.ts): every sum over samples runs per group of `grain` samples, so
   * that it does not depend on how the batch was sliced. Each of `grads` then has a leading axis,
   * one gradient per group; the gradients BatchNorm sums in float64 come in `wide` instead.
   */
  forwardBackward(x: Tensor, labels: Uint8Array, position: SamplePosition, exchange?: LayerExchange, grain = 0): { lossSum: number; probs: Tensor; grads: Map<tfc.Variable, Tensor>; wide: Map<tfc.Variable, Float64Array>; stats: Tensor[] } {
    const groups = grain > 0 ? sampleGroups(labels.length, grain) : undefined;
    const pass: Pass = { inputs: [], outputs: [], masks: new Map(), norms: new Map(), stats: [], exchange, groups, wide: new Map() };
    let h = x;
    this.stages.forEach((s, i) => {
      pass.inputs.push(h);
      h = this.forwardStage(s, i, h, pass, position);
      pass.outputs.push(h);
    });
    const probs = h;
    const { lossSum, dz } = DirectBackprop.lossGradient(probs, labels);
    const grads = new Map<tfc.Variable, Tensor>();
    // Nothing before the first weighted stage needs a gradient.
    const first = this.stages.findIndex((s) => s.kind === 'dense' || s.kind === 'conv');
    let dy: Tensor = dz;
    for (let i = this.stages.length - 1; i >= first; i--) dy = this.backwardStage(i, dy, pass, grads, i > first);
    return { lossSum, probs, grads, wide: pass.wide, stats: pass.stats };
  }

  private forwardStage(s: Stage, i: number, h: Tensor, pass: Pass, position: SamplePosition): Tensor {
    if (s.kind === 'dropout') {
      if (s.rate <= 0) return h;
      const mask = tf.tensor(dropoutMask(s.rate, h.shape[0], h.size / h.shape[0], position, this.uploads.take(h.size)), h.shape);
      pass.masks.set(i, mask);
      return tf.mul(h, mask);
    }
    if (s.kind === 'batchnorm') {
      const exchange = pass.exchange;
      const groups = pass.groups;
      const channels = h.shape[h.rank - 1];
      // With a grain, one vector per group, combined in group order here or on the exchange alike.
      const alone = groups ? (p: ExchangePhase, local: Float64Array) => combineSlices(p, [{ firstSample: 0, sums: local }], channels) : identityExchange;
      const phase = exchange ? (p: ExchangePhase, local: Float64Array) => exchange(s.layer, p, local) : alone;
      const passes = groups ? groupedPasses(defaultPasses(), groups) : defaultPasses();
      const st = syncStatistics(h, s.epsilon, phase, passes);
      const saved = passes.save(h, s.gamma, st.mean, st.rs);
      pass.norms.set(i, { st, saved, phase, passes });
      // With a grain every slice reports the global batch's statistics: their combination is then
      // exactly those (equal means and variances combine without rounding), at any slicing.
      pass.stats.push(tf.tensor1d(pass.groups ? st.mean : st.localMean), tf.tensor1d(pass.groups ? st.variance : st.localVariance));
      return tf.batchNorm(h, tf.tensor1d(st.mean), tf.tensor1d(st.variance), s.beta, s.gamma, s.epsilon);
    }
    return DirectBackprop.forward(s, h);
  }

  /** Stage `i`'s backward pass: records its weights' gradients, returns its input's (if `needInput`). */
  private backwardStage(i: number, dy: Tensor, pass: Pass, grads: Map<tfc.Variable, Tensor>, needInput: boolean): Tensor {
    const s = this.stages[i];
    if (s.kind === 'dropout') {
      const mask = pass.masks.get(i);
      return mask ? tf.mul(dy, mask) : dy;
    }
    if (s.kind === 'batchnorm') {
      const n = pass.norms.get(i)!;
      const fused = this.reluThroughNorm(i, dy, pass, grads);
      if (fused) return fused;
      const r = syncBatchNormGradient(dy, n.saved, n.st, n.phase, n.passes);
      if (pass.groups) {
        // Each group's float64 sums rounded to float32, as a kernel would give them, then added exactly.
        const { gamma, beta } = groupedScaleShift(r.local, n.st.channels);
        pass.wide.set(s.gamma, gamma);
        pass.wide.set(s.beta, beta);
        tf.dispose([r.dGamma, r.dBeta]);
      } else {
        grads.set(s.gamma, r.dGamma);
        grads.set(s.beta, r.dBeta);
      }
      pass.preNormBias = this.preNormBias(i - 1, r.dx, n.st, pass);
      return r.dx;
    }
    const done = pass.reluDone?.stage === i ? pass.reluDone.biasSum : undefined;
    pass.reluDone = undefined;
    const dx = this.backward(s, pass.inputs[i], pass.outputs[i], dy, grads, needInput, i === this.stages.length - 1, pass.groups, done);
    const bias = pass.preNormBias;
    if (bias && bias.stage === i && (s.kind === 'conv' || s.kind === 'dense')) {
      // As layers/pre-norm-bias.ts: −Σ_{y≤0} dx in the channels whose inactive positions are the minority.
      const original = grads.get(s.bias)!;
      if (pass.groups) {
        pass.wide.set(s.bias, DirectBackprop.substituteWide(bias.form, bias.gradient, original));
        grads.delete(s.bias);
      } else grads.set(s.bias, substituteChannels(bias.form, bias.gradient, original));
      pass.preNormBias = undefined;
    }
    return dx;
  }

  /**
   * BatchNorm stage `i`'s backward pass where it normalizes a relu's output (its saved input is the
   * stage before's output) and the passes can carry dx on through that relu (the native ones, without
   * a reduction grain): the relu's backward, its bias's Σ dz and the pre-norm bias's sums come out of
   * dx's own pass (BatchNormPasses.gradInputRelu), the same bits as the three passes one after
   * another. Returns dz, for the stage before, which then skips its activation; undefined where it
   * does not apply (the ordinary pass goes).
   */
  private reluThroughNorm(i: number, dy: Tensor, pass: Pass, grads: Map<tfc.Variable, Tensor>): Tensor | undefined {
    const s = this.stages[i];
    const before = this.stages[i - 1];
    const n = pass.norms.get(i)!;
    if (s.kind !== 'batchnorm' || pass.groups || !n.passes.gradInputRelu || n.saved[0] !== pass.outputs[i - 1]) return undefined;
    if ((before?.kind !== 'conv' && before?.kind !== 'dense') || before.activation !== 'relu') return undefined;
    const r = syncBatchNormGradientRelu(dy, n.saved, n.st, n.phase, n.passes as Required<BatchNormPasses>);
    grads.set(s.gamma, r.dGamma);
    grads.set(s.beta, r.dBeta);
    pass.reluDone = { stage: i - 1, biasSum: r.relu.biasSum };
    // As preNormBias: the channels whose inactive positions are the minority take −Σ_{y≤0} dx.
    const form = inactiveForm('relu', n.st.global, n.st.channels);
    pass.preNormBias = form.some((f) => f) ? { stage: i - 1, form, gradient: r.relu.inactive } : undefined;
    return r.relu.dz;
  }

  /**
   * The gradient of stage `stage`'s bias taken from the positions its relu leaves inactive, for
   * the channels where the global moments show them to be the minority (all of them without a
   * relu, where it is exactly 0); undefined if no channel takes it.
   */
  private preNormBias(stage: number, dx: Tensor, st: SyncStatistics, pass: Pass): Pass['preNormBias'] {
    const s = this.stages[stage];
    if ((s.kind !== 'conv' && s.kind !== 'dense') || s.activation === 'softmax') return undefined;
    const activation = s.activation;
    const form = inactiveForm(activation, st.global, st.channels);
    const y = pass.outputs[stage];
    const groups = pass.groups;
    if (!groups) {
      const gradient = inactiveFormGradient(activation, form, dx, y);
      return gradient && { stage, form, gradient };
    }
    // Per group, rounded to float32 and added in float64 (exact), as the kernel sums with a grain.
    const parts = groups.map((g) => inactiveFormGradient(activation, form, rowsOf(dx, g), rowsOf(y, g)));
    if (parts[0] === undefined) return undefined;
    return { stage, form, gradient: sumRounded(parts as Float64Array[], st.channels) };
  }

  /** A pre-norm bias's float64 gradient with a grain: `recorded` in the `form` channels, the groups' sum in the others. */
  private static substituteWide(form: readonly boolean[], recorded: Float64Array, groups: Tensor): Float64Array {
    const summed = sumGroups(groups);
    return Float64Array.from(form, (f, c) => (f ? recorded[c] : summed[c]));
  }

  private static forward(s: Exclude<Stage, { kind: 'dropout' | 'batchnorm' }>, h: Tensor): Tensor {
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

  /**
   * The gradient through a layer's activation (relu: where its output is positive), and its bias
   * gradient, Σ of that over every axis but the channels: one native pass where the native kernels
   * are active (common/kernels/native/relu-backward.ts), else Step·dy and Sum.
   */
  private static activationBackward(relu: boolean, dy: Tensor, output: Tensor, bias: tfc.Variable, grads: Map<tfc.Variable, Tensor>, groups: SampleGroup[] | undefined): Tensor {
    const fused = relu ? nativeReluBackward() : undefined;
    const pass = (d: Tensor, y: Tensor): Tensor[] => {
      if (fused) return fused(d, y);
      const dz = relu ? tf.mul(d, tf.step(y)) : d;
      return [dz, tf.sum(dz, Array.from({ length: dz.rank - 1 }, (_, i) => i))];
    };
    if (!groups) {
      const [dz, sum] = pass(dy, output);
      grads.set(bias, sum);
      return dz;
    }
    // Per group, so each group's bias sum is its own float32 result.
    const parts = groups.map((g) => pass(rowsOf(dy, g), rowsOf(output, g)));
    grads.set(bias, stackGroups(parts.map((p) => p[1])));
    return parts.length === 1 ? parts[0][0] : tf.concat(parts.map((p) => p[0]));
  }

  /**
   * The gradient through stage `s`'s activation, recording its bias's gradient; `biasDone`: a
   * BatchNorm's pass took the activation already (dy is dz) and gave the bias's gradient.
   */
  private static throughActivation(relu: boolean, dy: Tensor, output: Tensor, bias: tfc.Variable, grads: Map<tfc.Variable, Tensor>, groups: SampleGroup[] | undefined, biasDone: Tensor | undefined): Tensor {
    if (!biasDone) return DirectBackprop.activationBackward(relu, dy, output, bias, grads, groups);
    grads.set(bias, biasDone);
    return dy;
  }

  /** Records stage `s`'s weight gradients; returns the gradient of its input (if `needInput`). `biasDone`: as throughActivation. */
  private backward(s: Exclude<Stage, { kind: 'dropout' | 'batchnorm' }>, input: Tensor, output: Tensor, dy: Tensor, grads: Map<tfc.Variable, Tensor>, needInput: boolean, lossStage: boolean, groups: SampleGroup[] | undefined, biasDone?: Tensor): Tensor {
    const engine = tfc.engine();
    switch (s.kind) {
      case 'flatten':
        return tf.reshape(dy, input.shape);
      case 'pool':
        return engine.runKernel('MaxPoolGrad', { dy, input, output }, { filterSize: s.size, strides: s.strides, pad: 'valid', dimRoundingMode: undefined } as never) as Tensor;
      case 'dense': {
        // The loss stage's dy is already the gradient of the softmax's input.
        const dz = DirectBackprop.throughActivation(!lossStage && s.activation === 'relu', dy, output, s.bias, grads, groups, biasDone);
        const kernelGrad = (x: Tensor, d: Tensor) => tf.matMul(x as tfc.Tensor2D, d as tfc.Tensor2D, true, false);
        grads.set(s.kernel, groups ? perGroup(groups, [input, dz], ([x, d]) => kernelGrad(x, d)) : kernelGrad(input, dz));
        return needInput ? tf.matMul(dz as tfc.Tensor2D, s.kernel as tfc.Tensor2D, false, true) : dz;
      }
      case 'conv': {
        const dz = DirectBackprop.throughActivation(s.activation === 'relu', dy, output, s.bias, grads, groups, biasDone);
        const conv = { strides: [1, 1], pad: 'valid', dataFormat: 'NHWC', dimRoundingMode: undefined };
        const kernelGrad = (x: Tensor, d: Tensor) => engine.runKernel('Conv2DBackpropFilter', { x, dy: d }, { ...conv, filterShape: s.kernel.shape } as never) as Tensor;
        grads.set(s.kernel, groups ? perGroup(groups, [input, dz], ([x, d]) => kernelGrad(x, d)) : kernelGrad(input, dz));
        return needInput ? (engine.runKernel('Conv2DBackpropInput', { dy: dz, filter: s.kernel }, { ...conv, inputShape: input.shape } as never) as Tensor) : dz;
      }
    }
  }
}
