/**
 * A minimal, straightforward `Conv2DBackpropFilter` for the wasm backend, which has none: plain
 * JavaScript loops over the wasm heap, dW[kh,kw,ci,co] = Σ x[n, i·s+kh−pt, j·s+kw−pl, ci]·dy[n,i,j,co].
 * It handles every stride and padding (NHWC), so it is the fallback for configurations the fast
 * kernel does not reformulate, and the "stock tfjs" baseline of scripts/bench-compute.ts.
 */
import { tfc } from '../tf.ts';
import { f32, inputsOf, WASM, type WasmBackend } from './wasm-backend.ts';

export function naiveConv2DBackpropFilter(args: { inputs: tfc.NamedTensorInfoMap; backend: unknown; attrs?: tfc.NamedAttrMap }): tfc.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { x, dy } = inputsOf(args.inputs, 'x', 'dy');
  const attrs = args.attrs as unknown as tfc.Conv2DBackpropFilterAttrs;
  if (attrs.dataFormat === 'NCHW') throw new Error('Conv2DBackpropFilter on wasm supports only NHWC (channelsLast).');
  const info = tfc.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
  const out = backend.makeOutput(attrs.filterShape, 'float32');
  const xv = f32(backend, x);
  const dyv = f32(backend, dy);
  const dw = f32(backend, out);
  dw.fill(0);
  accumulateFilterGradient(xv, dyv, dw, x.shape, dy.shape, info);
  return out;
}

export const naiveConv2DBackpropFilterConfig: tfc.KernelConfig = {
  kernelName: 'Conv2DBackpropFilter',
  backendName: WASM,
  kernelFunc: naiveConv2DBackpropFilter as tfc.KernelFunc,
};

/**
 * dW[kh,kw,ci,co] += Σ x[n, i·s+kh−pt, j·s+kw−pl, ci]·dy[n,i,j,co] for NHWC x and dy, any stride and
 * padding. The accumulator's type sets the rounding: float32 here (the wasm baseline), float64 in the
 * cpu backend's kernel (common/kernels/cpu-conv2d-backprop-filter.ts).
 */
export function accumulateFilterGradient(xv: Float32Array, dyv: Float32Array, dw: Float32Array | Float64Array, xShape: number[], dyShape: number[], info: tfc.backend_util.Conv2DInfo): void {
  const [N, H, W, C] = xShape;
  const [, Ho, Wo, Co] = dyShape;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  for (let kh = 0; kh < KH; kh++) {
    for (let kw = 0; kw < KW; kw++) {
      for (let n = 0; n < N; n++) {
        for (let i = 0; i < Ho; i++) {
          const xi = i * sh + kh - pt;
          if (xi < 0 || xi >= H) continue;
          for (let j = 0; j < Wo; j++) {
            const xj = j * sw + kw - pl;
            if (xj < 0 || xj >= W) continue;
            const xo = ((n * H + xi) * W + xj) * C;
            const dyo = ((n * Ho + i) * Wo + j) * Co;
            for (let c = 0; c < C; c++) {
              const xval = xv[xo + c];
              const wo = ((kh * KW + kw) * C + c) * Co;
              for (let o = 0; o < Co; o++) dw[wo + o] += xval * dyv[dyo + o];
            }
          }
        }
      }
    }
  }
}
