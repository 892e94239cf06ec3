/**
 * The input gradient of a stride-1 2-D convolution, on XNNPACK instead of the stock wasm
 * `Conv2DBackpropInput` (about 9× slower). Two formulations; which is faster depends on the layer
 * (docs/kernels.md has the measurements):
 *
 * - `col2im`: one GEMM, col = dy·Wᵀ with dy viewed as [N·Ho·Wo, Cout] and W as [kh·kw·Cin, Cout]
 *   (no copies), then each row of col, a kh×kw×Cin patch, is added into dx where it came from.
 * - `conv`: dx is the "full" convolution of dy with the filter rotated by 180° and its channel axes
 *   swapped, dx = conv2d(dy, W'), W'[a,b,co,ci] = W[kh−1−a, kw−1−b, ci, co], with dy padded by
 *   k−1−(forward padding) before and whatever makes the result exactly the input's size after.
 *   XNNPACK pads implicitly, but it multiplies the padding zeros too: (H·W)/(Ho·Wo) more work.
 *
 * Strides other than 1, NCHW, and forward padding wider than the filter use the stock kernel.
 */
import { tfc } from '../tf.ts';
import { padding, stridesAreOne, type ConvGeometry, type ConvParts } from './conv-util.ts';
import { dispose, f32, inputsOf, WASM, type KernelRef, type WasmBackend } from './wasm-backend.ts';

export type InputGradMethod = 'auto' | 'col2im' | 'conv';

/** Which formulation to use; `auto` picks per layer. Settable for tests and benchmarks. */
export const inputGradOptions: { method: InputGradMethod } = { method: 'auto' };

/**
 * col2im only where the full convolution would mostly multiply padding: dx at least twice the size
 * of dy (cnn conv2d_2, 4×4 → 6×6: 2.3 ms against 3.0 at batch 32). For cnn conv2d_1 (13×13 → 15×15)
 * the convolution wins, 9.8 ms against 12.8: col2im's scatter in JavaScript costs more than the
 * padding does. Thin inputs (lenet, Cin 6) make the scatter's runs short: convolution.
 */
function chooseCol2im(h: number, w: number, ho: number, wo: number, cin: number): boolean {
  return cin >= 16 && h * w >= 2 * ho * wo;
}

export function conv2DBackpropInputConfig(parts: ConvParts, stock: KernelRef): tfc.KernelConfig {
  return {
    kernelName: 'Conv2DBackpropInput',
    backendName: WASM,
    // The stock kernel is our fallback; its setup (binding the wasm function) must still run.
    setupFunc: stock.config.setupFunc,
    kernelFunc: (args) => {
      const backend = args.backend as WasmBackend;
      const { dy, filter } = inputsOf(args.inputs, 'dy', 'filter');
      const attrs = args.attrs as unknown as tfc.Conv2DBackpropInputAttrs;
      if (attrs.dataFormat === 'NCHW' || !stridesAreOne(attrs.strides)) return stock.run(args.inputs, args.attrs ?? {}, backend);
      const info = tfc.backend_util.computeConv2DInfo(
        attrs.inputShape, filter.shape as [number, number, number, number], 1, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
      const { filterHeight: kh, filterWidth: kw } = info;
      const { top, left } = info.padInfo;
      // Pad dy so that the result is exactly inputShape: k−1−top before, the rest after.
      const [, h, w] = attrs.inputShape;
      const full = padding(kh - 1 - top, h - dy.shape[1] + top, kw - 1 - left, w - dy.shape[2] + left);
      // Forward padding wider than the filter would need cropping: rare, leave it to the stock kernel.
      if (full.some(([a, b]) => a < 0 || b < 0)) return stock.run(args.inputs, args.attrs ?? {}, backend);
      const [n, , , cin] = attrs.inputShape;
      const [, ho, wo, cout] = dy.shape;
      const method = inputGradOptions.method === 'auto' ? (chooseCol2im(h, w, ho, wo, cin) ? 'col2im' : 'conv') : inputGradOptions.method;
      if (method === 'col2im') return viaCol2im(parts, backend, dy, filter, { n, h, w, cin, ho, wo, cout, kh, kw, top, left });
      const rotated = rotateFilter(filter, backend);
      const dx = parts.conv2d.run({ x: dy, filter: rotated }, { strides: [1, 1], pad: full, dilations: [1, 1], dataFormat: 'NHWC' }, backend);
      dispose(backend, rotated);
      return dx;
    },
  };
}

/** W[kh,kw,ci,co] → W'[kh−1−kh, kw−1−kw, co, ci]: small (≤ 40k values here), so plain JavaScript. */
function rotateFilter(filter: tfc.TensorInfo, backend: WasmBackend): tfc.TensorInfo {
  const [kh, kw, ci, co] = filter.shape;
  const out = backend.makeOutput([kh, kw, co, ci], 'float32');
  const w = f32(backend, filter);
  const r = f32(backend, out);
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      const src = ((kh - 1 - a) * kw + (kw - 1 - b)) * ci * co;
      const dst = (a * kw + b) * co * ci;
      for (let i = 0; i < ci; i++) {
        for (let o = 0; o < co; o++) r[dst + o * ci + i] = w[src + i * co + o];
      }
    }
  }
  return out;
}


function viaCol2im(parts: ConvParts, backend: WasmBackend, dy: tfc.TensorInfo, filter: tfc.TensorInfo, g: ConvGeometry): tfc.TensorInfo {
  const rows = g.n * g.ho * g.wo;
  const patch = g.kh * g.kw * g.cin;
  // Views of existing buffers with another shape; the kernels read them without taking ownership.
  const w2d = { dataId: filter.dataId, shape: [patch, g.cout], dtype: filter.dtype };
  const dy2d = { dataId: dy.dataId, shape: [rows, g.cout], dtype: dy.dtype };
  const wT = parts.transpose.run({ x: w2d }, { perm: [1, 0] }, backend); // [Cout, kh·kw·Cin], small
  const col = parts.batchMatMul.run({ a: dy2d, b: wT }, { transposeA: false, transposeB: false }, backend);
  dispose(backend, wT);
  const dx = backend.makeOutput([g.n, g.h, g.w, g.cin], 'float32');
  const c = f32(backend, col);
  const d = f32(backend, dx);
  d.fill(0);
  col2im(c, d, g);
  dispose(backend, col);
  return dx;
}

/** dx[n, i+a−top, j+b−left, :] += col[(n,i,j), (a,b,:)], skipping positions outside the image. */
function col2im(col: Float32Array, dx: Float32Array, g: ConvGeometry): void {
  const { n, h, w, cin, ho, wo, kh, kw, top, left } = g;
  const patch = kh * kw * cin;
  for (let m = 0; m < n; m++) {
    for (let i = 0; i < ho; i++) {
      for (let a = 0; a < kh; a++) {
        const r = i + a - top;
        if (r < 0 || r >= h) continue;
        const rowBase = (m * h + r) * w;
        for (let j = 0; j < wo; j++) {
          // Filter columns b whose target column j+b−left is inside the image: one contiguous run.
          const b0 = Math.max(0, left - j);
          const b1 = Math.min(kw, w + left - j);
          if (b1 <= b0) continue;
          let src = ((m * ho + i) * wo + j) * patch + (a * kw + b0) * cin;
          let dst = (rowBase + j + b0 - left) * cin;
          const end = dst + (b1 - b0) * cin;
          while (dst < end) dx[dst++] += col[src++];
        }
      }
    }
  }
}
