/**
 * `FusedBatchNorm` (inference-style normalisation with given statistics; tfjs-layers uses it in
 * training too, with the batch moments) for the wasm backend, for per-channel statistics: the stock
 * kernel takes 3.6 ms for a 32×30×30×32 activation, a loop with the per-channel factor
 * scale·rsqrt(variance+ε) computed once per channel about 1 ms. Same formula as the cpu backend,
 * (x − mean)·scale·rsqrt(variance + ε) + offset, with the product of the last two factors formed
 * once per channel (in float64, as the cpu backend computes). Statistics of any other shape keep the stock kernel.
 */
import { tfc } from '../tf.ts';
import { f32, inputsOf, WASM, type KernelRef, type WasmBackend } from './wasm-backend.ts';

/** The values of a per-channel parameter ([C] or [1,…,1,C]), or undefined if it is shaped otherwise. */
function perChannel(backend: WasmBackend, t: tfc.TensorInfo | undefined, channels: number, fill: number): Float64Array | undefined {
  if (t === undefined) return new Float64Array(channels).fill(fill);
  if (t.dtype !== 'float32' || t.shape[t.shape.length - 1] !== channels || t.shape.some((d, i) => i < t.shape.length - 1 && d !== 1)) return undefined;
  return Float64Array.from(f32(backend, t));
}

export function fusedBatchNormConfig(stock: KernelRef): tfc.KernelConfig {
  return {
    kernelName: 'FusedBatchNorm',
    backendName: WASM,
    setupFunc: stock.config.setupFunc,
    kernelFunc: (args) => {
      const backend = args.backend as WasmBackend;
      const { x, mean, variance } = inputsOf(args.inputs, 'x', 'mean', 'variance');
      const { varianceEpsilon } = args.attrs as unknown as tfc.FusedBatchNormAttrs;
      const channels = x.shape[x.shape.length - 1];
      const m = perChannel(backend, mean, channels, 0);
      const v = perChannel(backend, variance, channels, 1);
      const offset = perChannel(backend, args.inputs.offset, channels, 0);
      const scale = perChannel(backend, args.inputs.scale, channels, 1);
      if (x.dtype !== 'float32' || x.shape.length === 0 || channels === 0 || !m || !v || !offset || !scale) {
        return stock.run(args.inputs, args.attrs ?? {}, backend);
      }
      const factor = new Float64Array(channels);
      for (let c = 0; c < channels; c++) factor[c] = scale[c] * (1 / Math.sqrt(v[c] + varianceEpsilon));
      const out = backend.makeOutput(x.shape, 'float32');
      const src = f32(backend, x);
      const dst = f32(backend, out);
      normalize(src, dst, m, factor, offset, channels);
      return out;
    },
  };
}

/**
 * dst = (src − m[c])·k[c] + o[c], channel c = index mod C. Four channels at a time with their
 * parameters in locals, walking down the rows: in V8 about 3× faster than a loop over rows with a
 * short inner loop over channels, or one flat loop with a wrapping channel index.
 */
function normalize(src: Float32Array, dst: Float32Array, m: Float64Array, k: Float64Array, o: Float64Array, channels: number): void {
  const n = src.length;
  let c = 0;
  for (; c + 4 <= channels; c += 4) {
    const m0 = m[c], m1 = m[c + 1], m2 = m[c + 2], m3 = m[c + 3];
    const k0 = k[c], k1 = k[c + 1], k2 = k[c + 2], k3 = k[c + 3];
    const o0 = o[c], o1 = o[c + 1], o2 = o[c + 2], o3 = o[c + 3];
    for (let i = c; i < n; i += channels) {
      dst[i] = (src[i] - m0) * k0 + o0;
      dst[i + 1] = (src[i + 1] - m1) * k1 + o1;
      dst[i + 2] = (src[i + 2] - m2) * k2 + o2;
      dst[i + 3] = (src[i + 3] - m3) * k3 + o3;
    }
  }
  for (; c < channels; c++) {
    const mc = m[c], kc = k[c], oc = o[c];
    for (let i = c; i < n; i += channels) dst[i] = (src[i] - mc) * kc + oc;
  }
}
