/**
 * One worker's arithmetic: given the flat weights and a slice of raw images, compute the summed
 * gradients (or, for evaluation, the predictions). Sums rather than means, so the coordinator can
 * average by sample count and the result does not depend on how the batch was sliced.
 */
import { tf, tfc, tfl, type LayersModel, type Tensor } from '../common/tf.ts';
import { DtrainError, ShapeError } from '../common/errors.ts';
import { buildModel, MODEL_SPECS, NUM_CLASSES, IMAGE_SHAPE, IMAGE_SIZE, type ModelName } from '../common/models.ts';
import { weightLayout, assertLength, type WeightLayout } from '../common/weights.ts';
import { preprocessBatch, oneHot, type Preprocessing } from '../common/data/preprocess.ts';
import { UploadScratch } from '../common/upload-scratch.ts';
import { seededDropout, type SamplePosition } from './layers/seeded-dropout.ts';
import { identityExchange, localBatchNorm, syncBatchNorm, type ExchangePhase, type NormalizedBatch } from './layers/sync-batch-norm.ts';
import { PreNormBiasGradients } from './layers/pre-norm-bias.ts';
import { hostFloats, uninitializedHostTensor } from '../common/host-floats.ts';
import { DirectBackprop, PROBABILITY_CLIP } from './direct-backprop.ts';
import { SYNC_READ_BACKENDS } from '../common/sync-read.ts';
import { addGroups } from '../common/reduce-grain.ts';
import type { BackendSegment, WeightsToken } from '../common/step-stripe.ts';

export interface TrainResult {
  count: number;
  lossSum: number;
  correct: number;
  /** Sum over the slice of d(loss)/d(weight), trainable weights only, in layout order. */
  gradientSum: Float32Array;
  /**
   * Per BatchNorm layer, in the places of its moving mean and moving variance: this slice's own
   * batch mean and biased variance (the coordinator combines them and updates the moving
   * statistics once per step). Empty if the model has no BatchNorm.
   */
  stats: Float32Array;
}

/** Combines one BatchNorm layer's sums with the other slices' of the step (blocking). */
export type LayerExchange = (layer: number, phase: ExchangePhase, local: Float64Array) => Float64Array;

export interface TrainOptions {
  /** Where the slice sits in the run, for its samples' dropout masks. Default: seed 0, step 0, first sample 0. */
  position?: SamplePosition;
  /**
   * BatchNorm: 'sync' normalizes with the moments of the whole global batch, exchanged through
   * `exchange` (one slice alone: no exchange); 'local' with the slice's own (tfjs-layers' path,
   * for backends that cannot read synchronously). Default 'sync' with no exchange.
   */
  batchNorm?: { kind: 'sync'; exchange?: LayerExchange } | { kind: 'local' };
  /**
   * Reduction grain in samples (common/reduce-grain.ts; 0 or absent: none). With one, `trainInto`
   * writes float64 gradient sums that do not depend on the slicing; it needs the direct pass.
   */
  grain?: number;
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


/** Reads a packed result with one asynchronous read-back (no synchronous GPU reads), then frees it. */
async function readAndDispose(t: Tensor): Promise<Float32Array> {
  try {
    return (await t.data()) as Float32Array;
  } finally {
    t.dispose();
  }
}

/**
 * After a pass that threw out of tf.variableGrads: tfjs disposes what each op saved for the backward
 * pass only once the backward pass completes, and the next pass replaces the tape without disposing
 * them (about 25-30 MB per aborted cnn-bn step at batch 32).
 */
function disposeAbandonedTape(): void {
  const state = tfc.engine().state;
  if (state.gradientDepth !== 0 || !state.activeTape) return;
  for (const node of state.activeTape) tf.dispose(node.saved ?? []);
  state.activeTape = null as unknown as typeof state.activeTape;
}

/** Copies tensors end to end into `out`, which must be as long as all of them. */
async function copyInto(tensors: Tensor[], out: Float32Array): Promise<void> {
  const total = tensors.reduce((n, t) => n + t.size, 0);
  assertLength('copy target', out.length, total);
  let at = 0;
  for (const t of tensors) {
    out.set(hostFloats(t) ?? ((await t.data()) as Float32Array), at);
    at += t.size;
  }
}

/** Where `trainInto` writes: float64 gradient sums with a reduction grain, float32 without. */
export interface GradientTarget {
  gradientSum: Float32Array | Float64Array;
  stats: Float32Array;
}

/**
 * Instead of a copy of the gradient sums (GradientTarget): `use` reads them where the backend holds
 * them, one segment per trainable tensor in layout order, and may write the next weights into the
 * segments' `weights` (new tensors, which become the model's weights if it answers a token: the
 * weight copy it wrote there; undefined: none, and the model keeps its weights). The views are
 * valid only during the call. Where the backend cannot lend its tensors (not wasm: a backend
 * fallback), the gradient sums are copied into `gradientSum` and `use` is called with undefined.
 * Statistics go to `stats`.
 */
export interface BackendGradientUse {
  gradientSum: Float32Array;
  stats: Float32Array;
  use(segments: BackendSegment[] | undefined): WeightsToken | undefined;
}

/** A step's forward and backward pass whose gradients have not been written out yet (StepComputer.prepareInto). */
export interface PreparedStep {
  readonly computer: StepComputer;
  readonly labels: Uint8Array;
  readonly grain: number;
  grads: (Tensor | Float64Array)[];
  stats: Tensor[];
  /** The loss sum, then the [count, 10] probabilities. */
  readonly head: Float32Array;
  readonly lossSum: number | undefined;
}

/** Frees a step's gradient and statistics tensors (float64 gradient groups hold no tensor). */
function disposeStep(grads: (Tensor | Float64Array)[], stats: Tensor[]): void {
  tf.dispose([...tensorsOf(grads), ...stats]);
}

function tensorsOf(grads: (Tensor | Float64Array)[]): Tensor[] {
  return grads.filter((g): g is Tensor => !(g instanceof Float64Array));
}

/** With a grain: each weight's per-group gradients ([groups, ...]) or float64 sum, into `out` in layout order. */
function addGradientGroups(grads: (Tensor | Float64Array)[], sizes: readonly number[], out: Float32Array | Float64Array): void {
  if (!(out instanceof Float64Array)) throw new TypeError('Expected a float64 gradient target with a reduction grain, but got a float32 one.');
  let at = 0;
  sizes.forEach((size, i) => {
    const g = grads[i];
    const n = g instanceof Float64Array ? g.length : g.size / g.shape[0];
    // A gradient without its group axis would shift every later weight: refuse it.
    if (n !== size) throw new ShapeError(`Expected trainable weight ${i}'s gradient per group to have ${size} values, but got ${n}.`);
    if (g instanceof Float64Array) out.set(g, at);
    else addGroups(g, out, at);
    at += n;
  });
}

export class StepComputer {
  readonly model: LayersModel;
  private evalSub: number | undefined;
  readonly layout: WeightLayout;
  private readonly flatInput: boolean;
  private readonly trainable: tfc.Variable[];
  /** BatchNorm layers in model order; their moving statistics are the layout's non-trainable weights, in this order. */
  private readonly batchNorms: tfl.layers.Layer[];
  /** The models skip tfjs's tape where the backend reads synchronously and BatchNorm is synchronized (direct-backprop.ts). */
  private readonly direct: DirectBackprop | undefined;
  /** The preprocessed batch's array, reused across steps where the backend copies it (common/upload-scratch.ts). */
  private readonly uploads = new UploadScratch();
  /** The weight copy a BackendGradientUse wrote into the model's tensors, while no other weights have been set since. */
  private held: WeightsToken | undefined;

  /** `options.tape`: always record on tfjs's tape (tests and benchmarks compare the two paths). */
  constructor(readonly modelName: ModelName, private preprocessing: Preprocessing, options: { tape?: boolean } = {}) {
    this.model = buildModel(modelName);
    this.layout = weightLayout(this.model);
    this.flatInput = MODEL_SPECS[modelName].input === 'flat-standardized';
    this.trainable = this.model.trainableWeights.map((w) => (w as unknown as { val: tfc.Variable }).val);
    this.batchNorms = this.model.layers.filter((l) => l.getClassName() === 'BatchNormalization');
    this.direct = options.tape ? undefined : DirectBackprop.plan(this.model);
    const statNames = this.batchNorms.flatMap((l) => l.nonTrainableWeights.map((w) => w.name));
    if (statNames.join() !== this.model.nonTrainableWeights.map((w) => w.name).join()) {
      throw new ShapeError(`Expected ${modelName}'s non-trainable weights to be its BatchNorm statistics in layer order (${statNames.join(', ')}), but they are ${this.model.nonTrainableWeights.map((w) => w.name).join(', ')}.`);
    }
  }

  /**
   * The training forward pass, layer by layer, so that BatchNorm and Dropout take their
   * distributed forms; every other layer is applied as Keras would. Pushes each BatchNorm's slice
   * mean and variance onto `stats`. With synchronized BatchNorm, the bias of the layer before each
   * BatchNorm gets its gradient from `biases` (layers/pre-norm-bias.ts: without the cancellation
   * that makes it slicing noise).
   */
  private forwardTraining(x: Tensor, opts: TrainOptions, stats: Tensor[], biases: PreNormBiasGradients): Tensor {
    const position = opts.position ?? { seed: 0, step: 0, firstSample: 0 };
    const bn = opts.batchNorm ?? { kind: 'sync' };
    let h = x;
    let previous: tfl.layers.Layer | undefined;
    for (const layer of this.model.layers) {
      const kind = layer.getClassName();
      if (kind === 'BatchNormalization') {
        const index = this.batchNorms.indexOf(layer);
        const [gamma, beta] = layer.trainableWeights.map((w) => w.read());
        const epsilon = layer.getConfig().epsilon as number;
        let out: NormalizedBatch;
        if (bn.kind === 'local') out = localBatchNorm(h, gamma, beta, epsilon);
        else {
          // The tap needs the global moments the layer normalizes with.
          const tap = biases.tap(previous, h);
          out = syncBatchNorm(tap.y, gamma, beta, epsilon, (phase, local) => {
            const totals = bn.exchange ? bn.exchange(index, phase, local) : identityExchange(phase, local);
            if (phase === 'forward') tap.observeMoments(totals);
            return totals;
          });
        }
        stats.push(out.mean, out.variance);
        h = out.y;
      } else if (kind === 'Dropout') {
        h = seededDropout(h, layer.getConfig().rate as number, position);
      } else {
        h = layer.apply(h, { training: true }) as Tensor;
      }
      previous = layer;
    }
    return h;
  }

  setPreprocessing(p: Preprocessing): void {
    this.preprocessing = p;
  }

  setWeights(flat: Float32Array): void {
    assertLength('weights', flat.length, this.layout.totalSize);
    this.held = undefined;
    tf.tidy(() => {
      this.model.weights.forEach((w, i) => {
        const e = this.layout.entries[i];
        w.write(tf.tensor(flat.subarray(e.offset, e.offset + e.size), e.shape));
      });
    });
  }

  /** Whether the model's weights are weight copy `token` already (written by the last step's BackendGradientUse). */
  holds(token: WeightsToken): boolean {
    const h = this.held;
    return h !== undefined && h.control === token.control && h.copy === token.copy && h.version === token.version;
  }

  /**
   * The trainable tensors' gradient sums as the backend holds them, each with a new weight tensor of
   * its own to write the next weights into (`fresh`, allocated first: an allocation may move the
   * heap the views lie in), in layout order; undefined where a view is missing (not wasm). New
   * tensors rather than the model's own: kernels may cache what they derived from a tensor by its
   * id (XNNPACK packs a fused matMul's or conv2d's weights once), so a tensor's values never change.
   */
  private backendSegments(grads: (Tensor | Float64Array)[], fresh: Tensor[]): BackendSegment[] | undefined {
    if (grads.length !== this.trainable.length) return undefined;
    for (const v of this.trainable) {
      const t = uninitializedHostTensor(v.shape);
      if (!t) return undefined;
      fresh.push(t);
    }
    const segments: BackendSegment[] = [];
    for (let i = 0; i < grads.length; i++) {
      const g = grads[i];
      const gradient = g instanceof Float64Array ? undefined : hostFloats(g);
      const weights = hostFloats(fresh[i]);
      const e = this.layout.entries[i];
      if (!gradient || !weights || gradient.length !== e.size || weights.length !== e.size) return undefined;
      segments.push({ from: e.offset, gradient, weights });
    }
    return segments;
  }

  /** Hands a step's gradient to `into` where the backend holds it (else through its gradientSum), and makes the weights it wrote the model's. */
  private async useFromBackend(grads: (Tensor | Float64Array)[], stats: Tensor[], grain: number, into: BackendGradientUse): Promise<void> {
    if (grain) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `A step's gradient can be used where the backend holds it only without a reduction grain, but the run has a grain of ${grain}.`, { expected: false });
    // Until use answers, the model's weights are no copy it knows of (they stay as they are if it fails).
    this.held = undefined;
    const fresh: Tensor[] = [];
    try {
      const segments = this.backendSegments(grads, fresh);
      if (!segments) await copyInto(tensorsOf(grads), into.gradientSum);
      const token = into.use(segments);
      if (segments && token) {
        this.trainable.forEach((v, i) => v.assign(fresh[i]));
        this.held = token;
      }
      await copyInto(stats, into.stats);
    } finally {
      // The variables that took a new tensor hold their own reference to it.
      tf.dispose(fresh);
    }
  }

  private inputs(images: Uint8Array, count: number): Tensor {
    assertLength('image bytes', images.length, count * IMAGE_SIZE);
    const x = preprocessBatch(images, this.preprocessing, this.uploads.take(images.length));
    return this.flatInput ? tf.tensor2d(x, [count, IMAGE_SIZE]) : tf.tensor4d(x, [count, ...IMAGE_SHAPE]);
  }

  private static lossSum(probs: Tensor, y: Tensor): Tensor {
    return tf.neg(tf.sum(tf.mul(y, tf.log(tf.clipByValue(probs, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)))));
  }

  /**
   * Forward and backward on a slice, inside the caller's tidy: the loss sum, the probabilities, the
   * gradient sums in the order of the layout's trainable weights, and each BatchNorm's slice
   * statistics. `probs` and `stats` are kept past variableGrads' scope: the caller disposes them.
   */
  private forwardBackward(images: Uint8Array, labels: Uint8Array, opts: TrainOptions): { value: Tensor; lossSum?: number; probs: Tensor; grads: (Tensor | Float64Array)[]; stats: Tensor[] } {
    const count = labels.length;
    const x = this.inputs(images, count);
    const bn = opts.batchNorm ?? { kind: 'sync' };
    const grain = opts.grain ?? 0;
    if (this.direct && bn.kind === 'sync' && DirectBackprop.backendSupported()) {
      const r = this.direct.forwardBackward(x, labels, opts.position ?? { seed: 0, step: 0, firstSample: 0 }, bn.exchange, grain);
      return { value: tf.scalar(r.lossSum), lossSum: r.lossSum, probs: r.probs, grads: this.trainable.map((v) => r.wide.get(v) ?? r.grads.get(v)!), stats: r.stats };
    }
    if (grain > 0) {
      throw new DtrainError('DTRAIN_ERR_REDUCE_GRAIN', `A reduction grain needs the direct backward pass: a backend that reads synchronously (${[...SYNC_READ_BACKENDS].join(', ')}) and synchronized BatchNorm, but this thread runs ${tf.getBackend()}${bn.kind === 'local' ? ' with --sync-bn stats' : ''}.`);
    }
    const y = tf.tensor2d(oneHot(labels, NUM_CLASSES), [count, NUM_CLASSES]);
    let probs: Tensor | undefined;
    const stats: Tensor[] = [];
    const biases = new PreNormBiasGradients();
    try {
      const { value, grads } = tf.variableGrads(() => {
        probs = tf.keep(this.forwardTraining(x, opts, stats, biases));
        stats.forEach((t) => tf.keep(t));
        return StepComputer.lossSum(probs, y) as tfc.Scalar;
      }, this.trainable);
      biases.substitute(grads);
      // Trainable weights come first in the layout, in the order of model.trainableWeights.
      return { value, probs: probs!, grads: this.trainable.map((v) => grads[v.name]), stats };
    } catch (err) {
      // An aborted BatchNorm round (a partner left) throws out of the pass; the step is recomputed.
      tf.dispose([...(probs ? [probs] : []), ...stats]);
      disposeAbandonedTape();
      throw err;
    } finally {
      biases.dispose();
    }
  }

  /**
   * One training step on a slice. Everything the coordinator needs (loss, probabilities, gradients,
   * BatchNorm statistics) is packed into one tensor and read back with a single `await data()`:
   * GPU backends (webgpu) cannot read synchronously in Node, and one read-back is one GPU sync.
   */
  async train(images: Uint8Array, labels: Uint8Array, opts: TrainOptions = {}): Promise<TrainResult> {
    const count = labels.length;
    const packed = tf.tidy(() => {
      if (opts.grain) throw new DtrainError('DTRAIN_ERR_REDUCE_GRAIN', 'A reduction grain needs the shared-memory step (trainInto), whose slots hold float64 gradients.');
      const { value, probs, grads, stats } = this.forwardBackward(images, labels, opts);
      const parts: Tensor[] = [tf.reshape(value, [1]), tf.reshape(probs, [-1])];
      for (const g of grads as Tensor[]) parts.push(tf.reshape(g, [-1]));
      for (const t of stats) parts.push(tf.reshape(t, [-1]));
      const all = tf.concat(parts);
      tf.dispose([probs, ...stats]);
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

  /**
   * `train`, writing the gradient sums and statistics into arrays the caller owns (the
   * shared-memory step's slot) instead of returning them. On backends that keep tensors in this
   * thread's memory (wasm, cpu) each gradient is copied once, straight from the backend's storage,
   * with no packing concat, no read-back allocation and no second copy; elsewhere it reads back
   * each tensor. `target` is asked for the arrays after the compute, right before they are
   * written, and may answer undefined to have nothing written (the slot was reassigned meanwhile).
   * The same values as `train`: copies only.
   */
  async trainInto(images: Uint8Array, labels: Uint8Array, target: () => GradientTarget | BackendGradientUse | undefined, opts: TrainOptions = {}): Promise<Omit<TrainResult, 'gradientSum' | 'stats'>> {
    return this.finishInto(await this.prepareInto(images, labels, opts), target);
  }

  /**
   * The first half of `trainInto`: the forward and backward pass, with the loss and probabilities
   * read back. The gradients stay in the backend's tensors until `finishInto` writes them out (or
   * `discard` drops them), so a compute thread can run a step's pass before its command arrives
   * (worker/step-ahead.ts). `labels` are kept until then: a caller that reuses its array meanwhile
   * passes a copy (WorkerSession.trainAhead does).
   */
  async prepareInto(images: Uint8Array, labels: Uint8Array, opts: TrainOptions = {}): Promise<PreparedStep> {
    // With a grain some gradients are float64 arrays: kept out of tidy's result, which holds tensors only.
    let grads: (Tensor | Float64Array)[] = [];
    let lossSum: number | undefined;
    const { head, stats } = tf.tidy(() => {
      const r = this.forwardBackward(images, labels, opts);
      const head = tf.concat([tf.reshape(r.value, [1]), tf.reshape(r.probs, [-1])]);
      tf.dispose(r.probs);
      grads = r.grads;
      // With a grain the loss stays float64 too (the head's copy is float32): reports agree at any slicing.
      if (opts.grain) lossSum = r.lossSum;
      return { head, stats: r.stats, kept: tensorsOf(r.grads) };
    });
    try {
      return { computer: this, labels, grain: opts.grain ?? 0, grads, stats, head: (await head.data()) as Float32Array, lossSum };
    } catch (err) {
      disposeStep(grads, stats);
      throw err;
    } finally {
      head.dispose();
    }
  }

  /**
   * The second half of `trainInto`: writes a prepared step's gradient sums and statistics into the
   * arrays `target` names (nothing when it answers undefined), then frees its tensors.
   */
  async finishInto(prepared: PreparedStep, target: () => GradientTarget | BackendGradientUse | undefined): Promise<Omit<TrainResult, 'gradientSum' | 'stats'>> {
    const { grads, stats, labels, grain } = prepared;
    if (prepared.computer !== this) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', 'A prepared step was finished by another computer than the one that prepared it.', { expected: false });
    try {
      const into = target();
      if (into && 'use' in into) await this.useFromBackend(grads, stats, grain, into);
      else if (into) {
        assertLength('gradient target', into.gradientSum.length, this.layout.trainableSize);
        if (grain) addGradientGroups(grads, this.trainable.map((v) => v.size), into.gradientSum);
        else if (into.gradientSum instanceof Float32Array) await copyInto(tensorsOf(grads), into.gradientSum);
        else throw new TypeError('Expected a float32 gradient target without a reduction grain, but got a float64 one.');
        await copyInto(stats, into.stats);
      }
      const { head } = prepared;
      return { count: labels.length, lossSum: prepared.lossSum ?? head[0], correct: countCorrect(head.subarray(1), labels) };
    } finally {
      this.discard(prepared);
    }
  }

  /** Frees a prepared step's tensors without writing anything. */
  discard(prepared: PreparedStep): void {
    disposeStep(prepared.grads, prepared.stats);
    prepared.grads = [];
    prepared.stats = [];
  }

  /**
   * Loss, correct count and predicted classes for a slice, in inference mode, with one read-back.
   * The forward pass runs over sub-batches of `evalSubBatch` images, whose activations stay in
   * cache: a task of 500 CNN images is 58 MB per convolution output, and computed at once it ran at
   * a third of the speed (docs/shared-step.md, "Evaluation in cache-sized sub-batches"). The loss is
   * summed per sub-batch, then across them.
   */
  async evaluate(images: Uint8Array, labels: Uint8Array): Promise<EvalResult> {
    const count = labels.length;
    assertLength('image bytes', images.length, count * IMAGE_SIZE);
    const sub = this.evalSubBatch;
    // Packed as each sub-batch's loss sum, then every prediction in order.
    let subBatches = 0;
    const packed = tf.tidy(() => {
      const losses: Tensor[] = [];
      const classes: Tensor[] = [];
      for (let from = 0; from < count; from += sub, subBatches++) {
        const to = Math.min(count, from + sub);
        const [loss, predicted] = tf.tidy(() => {
          const x = this.inputs(images.subarray(from * IMAGE_SIZE, to * IMAGE_SIZE), to - from);
          const y = tf.tensor2d(oneHot(labels.subarray(from, to), NUM_CLASSES), [to - from, NUM_CLASSES]);
          const probs = this.model.apply(x, { training: false }) as Tensor;
          return [tf.reshape(StepComputer.lossSum(probs, y), [1]), tf.cast(tf.argMax(probs, 1), 'float32')];
        });
        losses.push(loss);
        classes.push(predicted);
      }
      return tf.concat([...losses, ...classes]);
    });
    const flat = await readAndDispose(packed);
    const predictions = Uint8Array.from(flat.subarray(subBatches));
    let lossSum = 0;
    for (let i = 0; i < subBatches; i++) lossSum += flat[i];
    let correct = 0;
    for (let i = 0; i < count; i++) if (predictions[i] === labels[i]) correct++;
    return { count, lossSum, correct, predictions };
  }

  /** Images per forward pass in evaluate(): as many as keep the largest activation within EVAL_CACHE_BYTES (at least 1). */
  get evalSubBatch(): number {
    return (this.evalSub ??= evalSubBatch(this.model));
  }

  set evalSubBatch(n: number) {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`Expected a whole number of images per evaluation sub-batch, at least 1, but got ${n}.`);
    this.evalSub = n;
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

/**
 * The bytes one evaluation sub-batch's largest activation may take: a core's share of the cache
 * (this machine's Zen 4: 1 MB L2 per core, 32 MB L3 shared). It holds 36 images of the CNNs'
 * largest activation (30×30×32 float32). Measured on 2026-12-02 (validation of 2,000 images,
 * docs/shared-step.md): chunks of 32 images were the fastest tried for cnn-bn (of 32, 64, 128, 500)
 * and cnn-dropout (of 32, 100, 500).
 */
export const EVAL_CACHE_BYTES = 4 * 1024 * 1024;

/** Images per forward pass of evaluation for `model`: its largest per-image tensor (input or any layer's output) × n within EVAL_CACHE_BYTES. */
export function evalSubBatch(model: LayersModel, budget = EVAL_CACHE_BYTES): number {
  const perImage = (shape: readonly (number | null)[]) => shape.slice(1).reduce<number>((a, d) => a * (d ?? 1), 4);
  let largest = 4 * IMAGE_SIZE;
  for (const layer of model.layers) {
    const shapes = layer.outputShape;
    const list = (Array.isArray(shapes[0]) ? shapes : [shapes]) as (number | null)[][];
    for (const shape of list) largest = Math.max(largest, perImage(shape));
  }
  return Math.max(1, Math.floor(budget / largest));
}
