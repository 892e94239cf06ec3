/**
 * The gradient of a bias that feeds a BatchNorm in training mode, without the cancellation.
 *
 * A BatchNorm that normalizes with its batch's own mean is unchanged when a constant is added to
 * one channel of its whole input, so the gradient it sends back sums to zero over that batch, per
 * channel: Σ dx = γ·rs·(Σdy − N·Σdy/N − Σx̂·Σ(dy·x̂)/N) = 0, as Σx̂ = 0. For a layer `y = act(z + b)`
 * that feeds it (Conv2D or Dense with relu or no activation), the bias gradient is therefore
 *
 *   ∂L/∂b = Σ_{y > 0} dx  =  Σ_all dx − Σ_{y ≤ 0} dx  =  −Σ_{y ≤ 0} dx     (relu)
 *   ∂L/∂b = Σ_all dx  =  0                                                  (no activation)
 *
 * tfjs computes the left-hand form, a sum over the active positions. For a channel whose relu is
 * active on the whole batch the true gradient is exactly 0, and what came out was float32 rounding
 * noise of about 1e4 cancelling terms, different for each slicing of the batch into partial sums;
 * Adam divides by √v + ε, so that noise moved the bias by up to the learning rate per step
 * (docs/batchnorm.md). The right-hand form sums over the inactive positions: exactly 0 for such a
 * channel at any slicing. Mirror-wise, it cancels where the relu is active almost nowhere, where
 * tfjs's form does not, so each channel takes the right-hand form only where the global batch's
 * moments prove the inactive positions to be the minority (`inactiveMinority`), a decision every
 * slice makes alike. An all-active channel with mean² < var keeps tfjs's form, and its noise.
 *
 * Over slices (synchronized BatchNorm: Σ dx = 0 over the global batch) each slice reports its own
 * −Σ_{y ≤ 0} dx, and the slices add up to the exact gradient of the global batch; a single slice's
 * share is no longer its own Σ_{y > 0} dx (the two differ by the slice's Σ dx, which only the whole
 * batch cancels). Only the synchronized path is tapped (it reads synchronously; tfjs's per-slice
 * `localBatchNorm` is for backends that cannot).
 *
 * `PreNormBiasGradients.tap(layer, y)` marks the input of a BatchNorm: an identity op whose gradient
 * passes dx through unchanged and records −Σ_{y ≤ 0} dx for the layer's bias; `substitute` then puts
 * the recorded values in the place of tfjs's, channel by channel.
 */
import { tf, tfc, tfl, type Tensor } from '../../common/tf.ts';
import { hostFloats } from '../../common/host-floats.ts';
import { nativeReluInactiveSum } from '../../common/kernels/native/sync-batch-norm-passes.ts';

export type PreNormActivation = 'relu' | 'linear';

/** What a layer must be for `tap`: Conv2D (channels last) or Dense, with a bias, activation relu or none. */
export function preNormActivation(layer: tfl.layers.Layer): PreNormActivation | undefined {
  const kind = layer.getClassName();
  if (kind !== 'Conv2D' && kind !== 'Dense') return undefined;
  const config = layer.getConfig();
  if (config.useBias === false || config.dataFormat === 'channelsFirst') return undefined;
  return config.activation === 'relu' || config.activation === 'linear' ? config.activation : undefined;
}

/**
 * −Σ dx over the positions where the relu passes no gradient (y ≤ 0), for the channels in `which`
 * (the last axis; the others are 0),
 * summed in float64 in one pass over the backend's own storage where it is in this thread
 * (hostFloats), else values read back (this path already reads synchronously).
 */
export function inactiveGradientSum(dx: Float32Array, y: Float32Array, channels: number, which: Int32Array): Float64Array {
  const sums = new Float64Array(channels);
  for (let i = 0; i < dx.length; i += channels) {
    // Multiplying by 0 or 1 rather than branching: relu masks are unpredictable (4× faster here).
    for (let k = 0; k < which.length; k++) {
      const j = i + which[k];
      sums[which[k]] -= dx[j] * +(y[j] <= 0);
    }
  }
  return sums;
}

/**
 * inactiveGradientSum of the tensors `dx` and `y`: on the native kernels' heap where they are active
 * (nativeReluInactiveSum, the same loop in C++, bit-identical per channel and ~10× faster; it sums
 * every channel, and only those in `which` are ever substituted), else the JavaScript loop.
 */
function reluInactiveGradient(dx: Tensor, y: Tensor, channels: number, which: Int32Array): Float64Array {
  const native = nativeReluInactiveSum();
  if (native) return native(dx, y);
  return inactiveGradientSum(hostFloats(dx) ?? (dx.dataSync() as Float32Array), hostFloats(y) ?? (y.dataSync() as Float32Array), channels, which);
}

/**
 * Per channel, whether the inactive positions are certainly the minority, from the global batch's
 * moments of a relu output y ≥ 0: by Cauchy–Schwarz, mean² = E[y·1(y>0)]² ≤ E[y²]·P(y>0), so the
 * active fraction is at least mean² / (mean² + var), which is ≥ 1/2 when mean² ≥ var. `moments` is
 * [N, mean_c …, M2_c …] (common/batch-moments.ts), the same numbers on every slice.
 */
export function inactiveMinority(moments: Float64Array, channels: number): boolean[] {
  const n = moments[0];
  return Array.from({ length: channels }, (_, c) => {
    const mean = moments[1 + c];
    return mean > 0 && mean * mean >= moments[1 + channels + c] / n;
  });
}

/**
 * Per channel, whether the bias takes −Σ_{y ≤ 0} dx (else tfjs's Σ_{y > 0} dx): every channel
 * without an activation (where that is exactly 0), else where the global moments show the inactive
 * positions to be the minority (inactiveMinority).
 */
export function inactiveForm(activation: PreNormActivation, moments: Float64Array, channels: number): boolean[] {
  return activation === 'linear' ? new Array<boolean>(channels).fill(true) : inactiveMinority(moments, channels);
}

/**
 * −Σ_{y ≤ 0} dx for the channels `form` marks (0 elsewhere; all 0 without an activation), from the
 * BatchNorm input's gradient dx and the layer's output y; undefined if no channel takes it.
 */
export function inactiveFormGradient(activation: PreNormActivation, form: readonly boolean[], dx: Tensor, y: Tensor): Float64Array | undefined {
  const which = Int32Array.from(form.flatMap((f, c) => (f ? [c] : [])));
  if (which.length === 0) return undefined;
  return activation === 'linear' ? new Float64Array(form.length) : reluInactiveGradient(dx, y, form.length, which);
}

/** The bias gradient: `recorded` in the channels `form` marks, tfjs's `original` in the others. */
export function substituteChannels(form: readonly boolean[], recorded: Float64Array, original: Tensor): Tensor {
  const gradient = tf.tensor1d(Float32Array.from(recorded));
  return form.every((f) => f) ? gradient : tf.where(tf.tensor1d(form.map(Number), 'bool'), gradient, original);
}

interface Recorded {
  /** The bias variable's name, as tf.variableGrads keys it. */
  biasName: string;
  activation: PreNormActivation;
  /** Per channel: take −Σ_{y ≤ 0} dx (else tfjs's Σ_{y > 0} dx), decided from the global moments. */
  inactiveForm?: boolean[];
  backwardSeen: boolean;
  /** −Σ_{y ≤ 0} dx (float64), computed only if some channel takes it. */
  gradient?: Float64Array;
}

/** A tapped BatchNorm input: `y` to normalize, and where to report the global moments it was normalized with. */
export interface Tap {
  y: Tensor;
  observeMoments(moments: Float64Array): void;
}

/** The taps of one forward and backward pass: `tap` while building it, `substitute` after variableGrads, then `dispose`. */
export class PreNormBiasGradients {
  private readonly recorded: Recorded[] = [];

  /**
   * `y` (the output of `layer`, about to enter a BatchNorm that normalizes with the global batch's
   * mean), unchanged, but recording its bias gradient in the backward pass. Layers that do not
   * qualify (preNormActivation) pass through untapped.
   */
  tap(layer: tfl.layers.Layer | undefined, y: Tensor): Tap {
    const activation = layer && preNormActivation(layer);
    const bias = layer?.trainableWeights.find((w) => /\/bias$/.test(w.originalName ?? w.name));
    if (!activation || !bias) return { y, observeMoments: () => {} };
    const entry: Recorded = { biasName: (bias as unknown as { val: { name: string } }).val.name, activation, backwardSeen: false };
    this.recorded.push(entry);
    const channels = y.shape[y.rank - 1];
    const op = tf.customGrad((...args: (Tensor | tfc.GradSaveFunc)[]) => {
      const [yIn, save] = args as [Tensor, tfc.GradSaveFunc];
      save([yIn]);
      const gradFunc = (dx: Tensor, [ySaved]: Tensor[]) => {
        entry.backwardSeen = true;
        entry.gradient = entry.inactiveForm && inactiveFormGradient(activation, entry.inactiveForm, dx, ySaved);
        return dx;
      };
      // A reshape to the same shape: a new tensor on the same data, no copy.
      return { value: tf.reshape(yIn, yIn.shape), gradFunc };
    });
    return {
      y: op(y),
      observeMoments: (moments) => {
        entry.inactiveForm = inactiveForm(activation, moments, channels);
      },
    };
  }

  /**
   * Puts the recorded gradient in the place of tfjs's in `grads` (tf.variableGrads' map), for the
   * channels whose inactive positions are the minority, as a tensor of the caller's scope. Throws if
   * a tapped layer's forward moments or backward pass were not seen.
   */
  substitute(grads: Record<string, Tensor>): void {
    for (const r of this.recorded) {
      const original = grads[r.biasName];
      if (!r.inactiveForm || !r.backwardSeen || !original) throw new Error(`Expected the global moments, a backward pass and tfjs's gradient for ${r.biasName}, but ${!r.inactiveForm ? 'no moments were observed' : !r.backwardSeen ? 'no backward pass ran' : 'tfjs has none'}.`);
      if (r.gradient) grads[r.biasName] = substituteChannels(r.inactiveForm, r.gradient, original);
    }
  }

  dispose(): void {
    this.recorded.length = 0;
  }
}
