/**
 * `MaxPoolGrad` for the wasm backend in plain JavaScript over the wasm heap: one pass over x that
 * finds each window's maximum and routes dy there. It is memory-bound, and a single pass with
 * the channel axis innermost is several times faster than the stock wasm kernel.
 *
 * Ties: like tfjs's cpu kernel, the whole gradient of a window goes to its FIRST maximum in
 * row-major window order (strict `>`), so equal maxima (e.g. zeros after ReLU) never split or
 * duplicate a gradient. A window that is all NaN or −∞ passes no gradient, also as on cpu.
 * Overlapping windows (stride < filter) add up. Every filter size, stride, padding and dilation is
 * handled, so there is no fallback.
 */
import { tfc } from '../tf.ts';
import { f32, inputsOf, WASM, type KernelRef, type WasmBackend } from './wasm-backend.ts';

export function maxPoolGrad(args: { inputs: tfc.NamedTensorInfoMap; backend: unknown; attrs?: tfc.NamedAttrMap }): tfc.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { dy, input } = inputsOf(args.inputs, 'dy', 'input');
  const attrs = args.attrs as unknown as tfc.MaxPoolGradAttrs;
  const info = tfc.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  const out = backend.makeOutput(input.shape, 'float32');
  const x = f32(backend, input);
  const g = f32(backend, dy);
  const dx = f32(backend, out);
  dx.fill(0);
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo } = info;
  if (info.filterHeight === 2 && info.filterWidth === 2 && info.strideHeight === 2 && info.strideWidth === 2 && info.padInfo.top === 0 && info.padInfo.left === 0 && 2 * Ho <= H && 2 * Wo <= W && info.dilationHeight === 1 && info.dilationWidth === 1) {
    pool2x2(x, g, dx, N, H, W, C, Ho, Wo);
  } else {
    poolGeneric(x, g, dx, info);
  }
  return out;
}

/** The models' case, 2×2 windows with stride 2 and no padding (an odd last row/column is dropped). */
function pool2x2(x: Float32Array, g: Float32Array, dx: Float32Array, N: number, H: number, W: number, C: number, Ho: number, Wo: number): void {
  const row = W * C;
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < Ho; i++) {
      let gi = ((n * Ho + i) * Wo) * C;
      let p00 = ((n * H + 2 * i) * W) * C;
      for (let j = 0; j < Wo; j++, p00 += 2 * C) {
        const p01 = p00 + C;
        const p10 = p00 + row;
        const p11 = p10 + C;
        for (let c = 0; c < C; c++, gi++) {
          // First maximum in row-major order: a later position wins only if strictly greater.
          let best = -1;
          let m = -Infinity;
          const a = x[p00 + c];
          if (a > m) { m = a; best = p00 + c; }
          const b = x[p01 + c];
          if (b > m) { m = b; best = p01 + c; }
          const d = x[p10 + c];
          if (d > m) { m = d; best = p10 + c; }
          const e = x[p11 + c];
          if (e > m) { best = p11 + c; }
          if (best >= 0) dx[best] += g[gi];
        }
      }
    }
  }
}

function poolGeneric(x: Float32Array, g: Float32Array, dx: Float32Array, info: tfc.backend_util.Conv2DInfo): void {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: Ho, outWidth: Wo } = info;
  const { strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = info;
  const { effectiveFilterHeight: fh, effectiveFilterWidth: fw } = info;
  const pt = info.padInfo.top;
  const pl = info.padInfo.left;
  const maxValue = new Float32Array(C);
  const maxIndex = new Int32Array(C);
  for (let n = 0; n < N; n++) {
    for (let i = 0; i < Ho; i++) {
      const r0 = i * sh - pt;
      let rMin = r0;
      while (rMin < 0) rMin += dh;
      const rMax = Math.min(H, r0 + fh);
      for (let j = 0; j < Wo; j++) {
        const c0 = j * sw - pl;
        let cMin = c0;
        while (cMin < 0) cMin += dw;
        const cMax = Math.min(W, c0 + fw);
        maxValue.fill(-Infinity);
        maxIndex.fill(-1);
        for (let r = rMin; r < rMax; r += dh) {
          for (let col = cMin; col < cMax; col += dw) {
            const p = ((n * H + r) * W + col) * C;
            for (let c = 0; c < C; c++) {
              const v = x[p + c];
              if (v > maxValue[c]) { maxValue[c] = v; maxIndex[c] = p + c; }
            }
          }
        }
        const gi = ((n * Ho + i) * Wo + j) * C;
        for (let c = 0; c < C; c++) if (maxIndex[c] >= 0) dx[maxIndex[c]] += g[gi + c];
      }
    }
  }
}

export function maxPoolGradConfig(stock: KernelRef): tfc.KernelConfig {
  return {
    kernelName: 'MaxPoolGrad',
    backendName: WASM,
    // Not used by us, but it binds the stock kernel's wasm function for when it is put back.
    setupFunc: stock.config.setupFunc,
    kernelFunc: maxPoolGrad as tfc.KernelFunc,
  };
}
