/**
 * The gradient of `FusedBatchNorm` with per-channel statistics, as one kernel on wasm. tfjs forms
 * it from about ten whole-tensor operations (x − mean, dy·scale, four reductions, the products
 * between them); with rs = 1/√(variance + ε) and s = scale (1 if absent), per channel:
 *
 *   dx = dy·s·rs          dmean = −s·rs·Σdy           dvariance = −½·s·rs³·Σdy·(x − mean)
 *   dscale = rs·Σdy·(x − mean)                         doffset = Σdy
 *
 * so two passes suffice: one accumulating Σdy and Σdy·(x − mean) (in float64), one writing dx.
 * For cnn-bn's first BatchNorm (32×30×30×32) that is about 2 ms instead of about 9. Everything
 * else (other backends, statistics not of shape [C]) takes tfjs's own gradient.
 */
import { tfc } from '../tf.ts';
import { f32, inputsOf, WASM, type GradientOverride, type WasmBackend } from './wasm-backend.ts';

type Tensor = tfc.Tensor;

const KERNEL = 'DtrainFusedBatchNormGrad';

/** Outputs [dx, dmean, dvariance, dscale, doffset]; inputs dy, x, mean, variance and scale (optional). */
export const fusedBatchNormGradKernelConfig: tfc.KernelConfig = {
  kernelName: KERNEL,
  backendName: WASM,
  kernelFunc: (args) => {
    const backend = args.backend as WasmBackend;
    const { dy, x, mean, variance } = inputsOf(args.inputs, 'dy', 'x', 'mean', 'variance');
    const { varianceEpsilon } = args.attrs as unknown as tfc.FusedBatchNormAttrs;
    const channels = mean.shape[0];
    const m = Float64Array.from(f32(backend, mean));
    const v = f32(backend, variance);
    const scale = args.inputs.scale ? f32(backend, args.inputs.scale) : undefined;
    const rs = new Float64Array(channels);
    const s = new Float64Array(channels);
    for (let c = 0; c < channels; c++) {
      rs[c] = 1 / Math.sqrt(v[c] + varianceEpsilon);
      s[c] = scale ? scale[c] : 1;
    }
    const outs = [
      backend.makeOutput(x.shape, 'float32'),
      ...[0, 1, 2, 3].map(() => backend.makeOutput([channels], 'float32')),
    ];
    const [dx, dMean, dVariance, dScale, dOffset] = outs.map((o) => f32(backend, o));
    const sumDy = new Float64Array(channels);
    const sumDyXm = new Float64Array(channels);
    accumulate(f32(backend, dy), f32(backend, x), m, sumDy, sumDyXm, channels);
    const k = new Float64Array(channels);
    for (let c = 0; c < channels; c++) {
      k[c] = s[c] * rs[c];
      dMean[c] = -k[c] * sumDy[c];
      dVariance[c] = -0.5 * k[c] * rs[c] * rs[c] * sumDyXm[c];
      dScale[c] = rs[c] * sumDyXm[c];
      dOffset[c] = sumDy[c];
    }
    scaleChannels(f32(backend, dy), dx, k, channels);
    return outs;
  },
};

/** Σdy and Σdy·(x − m) per channel; four channels at a time in locals (see batch-norm.ts). */
function accumulate(dy: Float32Array, x: Float32Array, m: Float64Array, sumDy: Float64Array, sumDyXm: Float64Array, channels: number): void {
  const n = dy.length;
  let c = 0;
  for (; c + 4 <= channels; c += 4) {
    const m0 = m[c], m1 = m[c + 1], m2 = m[c + 2], m3 = m[c + 3];
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
    for (let i = c; i < n; i += channels) {
      const d0 = dy[i], d1 = dy[i + 1], d2 = dy[i + 2], d3 = dy[i + 3];
      a0 += d0;
      a1 += d1;
      a2 += d2;
      a3 += d3;
      b0 += d0 * (x[i] - m0);
      b1 += d1 * (x[i + 1] - m1);
      b2 += d2 * (x[i + 2] - m2);
      b3 += d3 * (x[i + 3] - m3);
    }
    sumDy[c] = a0, sumDy[c + 1] = a1, sumDy[c + 2] = a2, sumDy[c + 3] = a3;
    sumDyXm[c] = b0, sumDyXm[c + 1] = b1, sumDyXm[c + 2] = b2, sumDyXm[c + 3] = b3;
  }
  for (; c < channels; c++) {
    const mc = m[c];
    let a = 0, b = 0;
    for (let i = c; i < n; i += channels) {
      a += dy[i];
      b += dy[i] * (x[i] - mc);
    }
    sumDy[c] = a;
    sumDyXm[c] = b;
  }
}

/** out[i] = src[i]·k[i mod C]. */
function scaleChannels(src: Float32Array, out: Float32Array, k: Float64Array, channels: number): void {
  const n = src.length;
  let c = 0;
  for (; c + 4 <= channels; c += 4) {
    const k0 = k[c], k1 = k[c + 1], k2 = k[c + 2], k3 = k[c + 3];
    for (let i = c; i < n; i += channels) {
      out[i] = src[i] * k0;
      out[i + 1] = src[i + 1] * k1;
      out[i + 2] = src[i + 2] * k2;
      out[i + 3] = src[i + 3] * k3;
    }
  }
  for (; c < channels; c++) {
    const kc = k[c];
    for (let i = c; i < n; i += channels) out[i] = src[i] * kc;
  }
}

function perChannel(t: Tensor | undefined, channels: number): boolean {
  return t === undefined || (t.rank === 1 && t.shape[0] === channels && t.dtype === 'float32');
}

export function fusedBatchNormGradientOverride(): GradientOverride {
  const original = tfc.getGradient('FusedBatchNorm');
  if (original === undefined) throw new Error("tfjs has no gradient registered for 'FusedBatchNorm'.");
  const ours: tfc.GradConfig = {
    kernelName: 'FusedBatchNorm',
    inputsToSave: original.inputsToSave,
    gradFunc: (dy, saved, attrs) => {
      // Saved in inputsToSave order: x, mean, variance, scale (undefined when there is none).
      const [x, mean, variance, scale] = saved as (Tensor | undefined)[];
      const channels = x !== undefined && x.rank > 0 ? x.shape[x.rank - 1] : -1;
      const handled =
        tfc.getBackend() === WASM && !Array.isArray(dy) && x !== undefined && x.dtype === 'float32' && dy.dtype === 'float32' &&
        mean !== undefined && variance !== undefined && mean.rank === 1 && perChannel(mean, channels) && perChannel(variance, channels) && perChannel(scale, channels);
      if (!handled) return original.gradFunc(dy, saved, attrs);
      // Computed now, not in the thunks: the tape runs each thunk in its own tidy, which would
      // dispose the outputs the other thunks return. Unused outputs go with the backward scope.
      const inputs: tfc.NamedTensorMap = { dy: dy as Tensor, x, mean, variance };
      if (scale !== undefined) inputs.scale = scale;
      const [dx, dMean, dVariance, dScale, dOffset] = tfc.engine().runKernel(KERNEL, inputs, { varianceEpsilon: attrs.varianceEpsilon }) as Tensor[];
      return { x: () => dx, mean: () => dMean, variance: () => dVariance, scale: () => dScale, offset: () => dOffset };
    },
  };
  return { original, ours };
}
