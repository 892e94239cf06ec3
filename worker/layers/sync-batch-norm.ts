/**
 * BatchNorm in training mode, two ways.
 *
 * `syncBatchNorm` (PyTorch's SyncBatchNorm semantics): the batch mean and variance are those of
 * the whole global batch, not of this worker's slice. The forward pass computes the slice's moments
 * (count, mean, M2) and hands them to `exchange`, which blocks until every slice's moments are
 * combined; the backward pass does the same with the per-channel sums Σdy and Σdy·x̂ that the
 * exact gradient needs:
 *
 *   dx = γ·rs·(dy − Σdy/N − x̂·Σ(dy·x̂)/N)      rs = 1/√(var + ε), x̂ = (x − mean)·rs, sums over all N
 *   dγ = Σ dy·x̂    dβ = Σ dy                   (this slice's share; the coordinator adds the slices)
 *
 * The sums are read to the CPU (dataSync), so this path is for backends that read synchronously
 * (cpu, wasm). With an identity exchange (one slice) it is ordinary BatchNorm.
 *
 * `localBatchNorm` is tfjs-layers' own training path (tf.moments over the slice, tfjs's gradient):
 * no exchange and no synchronous read, for GPU backends. The coordinator still combines the slices'
 * moments into exact moving statistics.
 */
import { tf, tfc, type Tensor } from '../../common/tf.ts';
import { localMoments, momentsLength } from '../../common/batch-moments.ts';
import { nativeBatchNormPasses, type BatchNormPasses, type ReluGradient } from '../../common/kernels/native/sync-batch-norm-passes.ts';

export type ExchangePhase = 'forward' | 'backward';

/** Combines this slice's vector with every other slice's and returns the totals (blocking). */
export type PhaseExchange = (phase: ExchangePhase, local: Float64Array) => Float64Array;

export interface NormalizedBatch {
  y: Tensor;
  /** This slice's own batch mean and (biased) variance, float32 [C]: what the coordinator combines. */
  mean: Tensor;
  variance: Tensor;
}

export function backwardSumsLength(channels: number): number {
  return 2 * channels;
}

/** [Σdy_c …, Σ(dy·x̂)_c …] over every row, in float64. */
export function backwardSums(dy: Float32Array, xhat: Float32Array, channels: number): Float64Array {
  const out = new Float64Array(backwardSumsLength(channels));
  for (let i = 0; i < dy.length; i += channels) {
    for (let c = 0; c < channels; c++) {
      out[c] += dy[i + c];
      out[channels + c] += dy[i + c] * xhat[i + c];
    }
  }
  return out;
}

/**
 * The reference passes over the activation, in JavaScript and tfjs ops (any backend): x̂ and k = γ·rs
 * stored by the forward pass, moments and backward sums read back with dataSync. The native
 * passes (common/kernels/native/sync-batch-norm-passes.ts, wasm with the addon) compute the same
 * values bit for bit in place on the wasm heap.
 */
export const referencePasses: BatchNormPasses = {
  moments: (x, channels) => localMoments(x.dataSync() as Float32Array, channels),
  save: (x, gamma, mean, rs) => {
    const rsT = tf.tensor1d(rs);
    return [tf.mul(tf.sub(x, tf.tensor1d(mean)), rsT), tf.mul(gamma, rsT)];
  },
  backwardSums: (dy, [xhat], channels) => backwardSums(dy.dataSync() as Float32Array, xhat.dataSync() as Float32Array, channels),
  gradInput: (dy, [xhat, k], a, b) => tf.mul(tf.sub(tf.sub(dy, tf.tensor1d(a)), tf.mul(xhat, tf.tensor1d(b))), k),
};

function checkLength(what: string, v: Float64Array, expected: number): Float64Array {
  if (v.length !== expected) throw new Error(`Expected ${what} of ${expected} values from the exchange, but got ${v.length}.`);
  return v;
}

/** The normalization of one synchronized BatchNorm step: the global statistics, and the slice's own. */
export interface SyncStatistics {
  channels: number;
  /** Samples × positions over the global batch. */
  n: number;
  mean: Float32Array;
  variance: Float32Array;
  rs: Float32Array;
  /** The global moments (count, mean, M2), as exchanged. */
  global: Float64Array;
  localMean: Float32Array;
  localVariance: Float32Array;
}

/** The forward exchange: this slice's moments, combined with every other slice's. */
export function syncStatistics(x: Tensor, epsilon: number, exchange: PhaseExchange, passes: BatchNormPasses): SyncStatistics {
  const channels = x.shape[x.rank - 1];
  const local = passes.moments(x, channels);
  const global = checkLength('moments', exchange('forward', local), momentsLength(channels));
  const n = global[0];
  const st: SyncStatistics = { channels, n, global, mean: new Float32Array(channels), variance: new Float32Array(channels), rs: new Float32Array(channels), localMean: new Float32Array(channels), localVariance: new Float32Array(channels) };
  for (let c = 0; c < channels; c++) {
    st.mean[c] = global[1 + c];
    const v = global[1 + channels + c] / n;
    st.variance[c] = v;
    st.rs[c] = 1 / Math.sqrt(v + epsilon);
    st.localMean[c] = local[1 + c];
    st.localVariance[c] = local[1 + channels + c] / local[0];
  }
  return st;
}

/** The backward exchange and the exact gradient: dx over the global batch, and this slice's dγ, dβ. */
/** `local`: this slice's float64 sums [Σdy…, Σdy·x̂…], of which dβ and dγ are the float32 roundings. */
export function syncBatchNormGradient(dy: Tensor, saved: Tensor[], st: SyncStatistics, exchange: PhaseExchange, passes: BatchNormPasses): { dx: Tensor; dGamma: Tensor; dBeta: Tensor; local: Float64Array } {
  const c = gradientCoefficients(dy, saved, st, exchange, passes);
  return { dx: passes.gradInput(dy, saved, c.meanDy, c.meanDyXhat), ...scaleShiftGradients(c.local, st.channels), local: c.local };
}

/**
 * syncBatchNormGradient where a relu's output is the BatchNorm's input, with passes that carry dx
 * on through that relu in the same pass (BatchNormPasses.gradInputRelu): the relu's backward and
 * its bias's sums instead of dx. The caller checks `passes.gradInputRelu` first (the exchange is
 * made once, whichever way the gradient goes).
 */
export function syncBatchNormGradientRelu(dy: Tensor, saved: Tensor[], st: SyncStatistics, exchange: PhaseExchange, passes: Required<BatchNormPasses>): { relu: ReluGradient; dGamma: Tensor; dBeta: Tensor; local: Float64Array } {
  const c = gradientCoefficients(dy, saved, st, exchange, passes);
  return { relu: passes.gradInputRelu(dy, saved, c.meanDy, c.meanDyXhat), ...scaleShiftGradients(c.local, st.channels), local: c.local };
}

/** This slice's backward sums, and dx's coefficients Σdy/N and Σdy·x̂/N from the global batch's (exchanged). */
function gradientCoefficients(dy: Tensor, saved: Tensor[], st: SyncStatistics, exchange: PhaseExchange, passes: BatchNormPasses): { local: Float64Array; meanDy: Float32Array; meanDyXhat: Float32Array } {
  const { channels, n } = st;
  const local = passes.backwardSums(dy, saved, channels);
  const sums = checkLength('gradient sums', exchange('backward', local), backwardSumsLength(channels));
  const meanDy = new Float32Array(channels);
  const meanDyXhat = new Float32Array(channels);
  for (let c = 0; c < channels; c++) {
    meanDy[c] = sums[c] / n;
    meanDyXhat[c] = sums[channels + c] / n;
  }
  return { local, meanDy, meanDyXhat };
}

/** γ's and β's gradients: this slice's own Σdy·x̂ and Σdy, rounded to float32. */
function scaleShiftGradients(local: Float64Array, channels: number): { dGamma: Tensor; dBeta: Tensor } {
  return { dGamma: tf.tensor1d(Float32Array.from(local.subarray(channels))), dBeta: tf.tensor1d(Float32Array.from(local.subarray(0, channels))) };
}

/** The passes where they apply: the native ones (wasm with the addon), else the reference. */
export function defaultPasses(): BatchNormPasses {
  return nativeBatchNormPasses() ?? referencePasses;
}

/** `passes`: the native ones where they apply (wasm with the addon), else the reference; tests choose. */
export function syncBatchNorm(x: Tensor, gamma: Tensor, beta: Tensor, epsilon: number, exchange: PhaseExchange, passes: BatchNormPasses = defaultPasses()): NormalizedBatch {
  const st = syncStatistics(x, epsilon, exchange, passes);
  const op = tf.customGrad((...args: (Tensor | tfc.GradSaveFunc)[]) => {
    const [xIn, g, b, save] = args as [Tensor, Tensor, Tensor, tfc.GradSaveFunc];
    const value = tf.batchNorm(xIn, tf.tensor1d(st.mean), tf.tensor1d(st.variance), b, g, epsilon);
    save(passes.save(xIn, g, st.mean, st.rs));
    const gradFunc = (dy: Tensor, saved: Tensor[]) => {
      const r = syncBatchNormGradient(dy, saved, st, exchange, passes);
      return [r.dx, r.dGamma, r.dBeta];
    };
    return { value, gradFunc };
  });
  return { y: op(x, gamma, beta), mean: tf.tensor1d(st.localMean), variance: tf.tensor1d(st.localVariance) };
}

export function localBatchNorm(x: Tensor, gamma: Tensor, beta: Tensor, epsilon: number): NormalizedBatch {
  const axes = Array.from({ length: x.rank - 1 }, (_, i) => i);
  const { mean, variance } = tf.moments(x, axes);
  return { y: tf.batchNorm(x, mean, variance, beta, gamma, epsilon), mean, variance };
}

/** The exchange of a lone slice: its own sums are the totals. */
export const identityExchange: PhaseExchange = (_phase, local) => local;
