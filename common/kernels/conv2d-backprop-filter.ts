/**
 * The filter gradient of a stride-1 2-D convolution, which the wasm backend lacks:
 * dW[kh,kw,ci,co] = Σ_{n,i,j} x[n, i+kh−pt, j+kw−pl, ci] · dy[n,i,j,co]. Two formulations, both on
 * XNNPACK; which is faster depends on the layer (docs/kernels.md has the measurements):
 *
 * - `im2col`: one GEMM, dW = Pᵀ·dy with dy viewed as [N·Ho·Wo, Cout] (no copy) and Pᵀ the
 *   transposed patch matrix [kh·kw·Cin, N·Ho·Wo], built by copying rows of x transposed to
 *   [Cin,N,H,W]. The product comes out in [kh,kw,Cin,Cout] order. The copy costs K²·Cin·N·Ho·Wo
 *   moves against Cout times as many multiply-adds, so it pays when Cout is large.
 * - `conv`: the gradient is itself a convolution with the batch as the reduced channel axis:
 *   x transposed to [Cin,H,W,N] convolved with dy transposed to [Ho,Wo,N,Cout] gives
 *   [Cin,kh,kw,Cout], transposed back. No patch matrix, but XNNPACK's per-tap inner loop is only N
 *   long and the dy "filter" is repacked every call.
 *
 * Strides other than 1 and NCHW use the naive JavaScript kernel (there is no stock one).
 */
import { tfc } from '../tf.ts';
import { naiveConv2DBackpropFilter } from './naive-conv2d-backprop-filter.ts';
import { padding, stridesAreOne, type ConvGeometry, type ConvParts } from './conv-util.ts';
import { dispose, f32, inputsOf, WASM, type WasmBackend } from './wasm-backend.ts';

export type FilterGradMethod = 'auto' | 'im2col' | 'conv';

/** Which formulation to use; `auto` picks per layer. Settable for tests and benchmarks. */
export const filterGradOptions: { method: FilterGradMethod } = { method: 'auto' };

/**
 * im2col when the output channels outnumber the patch size (Cout ≥ kh·kw·Cin): then the patch copy
 * is small next to the GEMM, and the convolution's GEMM has few rows. Measured at batch 32 with a
 * fresh dy per call, as in training (docs/kernels.md): cnn conv2d (3→32) 5.5 ms against 12.1;
 * cnn conv2d_1 (32→64) 12.1 against 10.6, conv2d_2 2.1 against 1.9, lenet 3.1 against 2.2 and 1.7
 * against 0.8, all for the convolution. Batch 8 gives the same ranking.
 */
function chooseIm2col(g: ConvGeometry): boolean {
  return g.cout >= g.kh * g.kw * g.cin;
}

export function conv2DBackpropFilterConfig(parts: ConvParts): tfc.KernelConfig {
  return {
    kernelName: 'Conv2DBackpropFilter',
    backendName: WASM,
    kernelFunc: (args) => {
      const backend = args.backend as WasmBackend;
      const { x, dy } = inputsOf(args.inputs, 'x', 'dy');
      const attrs = args.attrs as unknown as tfc.Conv2DBackpropFilterAttrs;
      if (attrs.dataFormat === 'NCHW' || !stridesAreOne(attrs.strides)) return naiveConv2DBackpropFilter(args);
      const info = tfc.backend_util.computeConv2DInfo(
        x.shape as [number, number, number, number], attrs.filterShape, 1, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
      const [n, h, w, cin] = x.shape;
      const [, ho, wo, cout] = dy.shape;
      const [kh, kw] = attrs.filterShape;
      // Top/left padding as the forward pass used it; bottom/right follow from the actual shapes,
      // so that the result is exactly [kh, kw] whatever rounding made dy the size it is.
      const g: ConvGeometry = { n, h, w, cin, ho, wo, cout, kh, kw, top: info.padInfo.top, left: info.padInfo.left };
      const bottom = kh - 1 + ho - h - g.top;
      const right = kw - 1 + wo - w - g.left;
      if (bottom < 0 || right < 0) return naiveConv2DBackpropFilter(args);
      const method = filterGradOptions.method === 'auto' ? (chooseIm2col(g) ? 'im2col' : 'conv') : filterGradOptions.method;
      if (method === 'im2col') return viaIm2col(parts, backend, x, dy, g, attrs.filterShape);
      const xT = parts.transpose.run({ x }, { perm: [3, 1, 2, 0] }, backend); // [Cin, H, W, N]
      const dyT = parts.transpose.run({ x: dy }, { perm: [1, 2, 0, 3] }, backend); // [Ho, Wo, N, Cout]
      const dwT = parts.conv2d.run(
        { x: xT, filter: dyT },
        { strides: [1, 1], pad: padding(g.top, bottom, g.left, right), dilations: [1, 1], dataFormat: 'NHWC' },
        backend,
      ); // [Cin, kh, kw, Cout]
      dispose(backend, xT, dyT);
      const dw = parts.transpose.run({ x: dwT }, { perm: [1, 2, 0, 3] }, backend);
      dispose(backend, dwT);
      return dw;
    },
  };
}

function viaIm2col(parts: ConvParts, backend: WasmBackend, x: tfc.TensorInfo, dy: tfc.TensorInfo, g: ConvGeometry, filterShape: number[]): tfc.TensorInfo {
  const rows = g.n * g.ho * g.wo;
  const xT = parts.transpose.run({ x }, { perm: [3, 0, 1, 2] }, backend); // [Cin, N, H, W]
  const patchesT = backend.makeOutput([g.kh * g.kw * g.cin, rows], 'float32');
  // Both live on the one wasm heap: copy with offsets into a single view (copyWithin is a memmove).
  const src = f32(backend, xT);
  const dst = f32(backend, patchesT);
  const heap = new Float32Array(src.buffer);
  im2colTransposed(heap, src.byteOffset >> 2, dst.byteOffset >> 2, g);
  dispose(backend, xT);
  // dy as a [N·Ho·Wo, Cout] matrix is the same buffer; BatchMatMul reshapes without taking ownership.
  const dy2d = { dataId: dy.dataId, shape: [rows, g.cout], dtype: dy.dtype };
  const dw = parts.batchMatMul.run({ a: patchesT, b: dy2d }, { transposeA: false, transposeB: false }, backend);
  dispose(backend, patchesT);
  dw.shape = filterShape.slice();
  return dw;
}

/**
 * Pᵀ[(a,b,c), (n,i,j)] = xT[c, n, i+a−top, j+b−left] (zero outside the image), rows in the
 * [kh,kw,Cin] order of the filter. Every source run is a contiguous stretch of an image row.
 */
function im2colTransposed(heap: Float32Array, src: number, dst: number, g: ConvGeometry): void {
  const { n, h, w, cin, ho, wo, kh, kw, top, left } = g;
  let o = dst;
  for (let a = 0; a < kh; a++) {
    for (let b = 0; b < kw; b++) {
      // Output columns j whose source column j+b−left lies inside the image.
      const j0 = Math.min(wo, Math.max(0, left - b));
      const j1 = Math.max(j0, Math.min(wo, w + left - b));
      const run = j1 - j0;
      for (let c = 0; c < cin; c++) {
        for (let m = 0; m < n; m++) {
          const plane = src + (c * n + m) * h * w;
          for (let i = 0; i < ho; i++, o += wo) {
            const r = i + a - top;
            if (r < 0 || r >= h || run === 0) {
              heap.fill(0, o, o + wo);
              continue;
            }
            if (j0 > 0) heap.fill(0, o, o + j0);
            const s = plane + r * w + j0 + b - left;
            if (run >= 8) {
              heap.copyWithin(o + j0, s, s + run);
            } else {
              for (let j = 0; j < run; j++) heap[o + j0 + j] = heap[s + j];
            }
            if (j1 < wo) heap.fill(0, o + j1, o + wo);
          }
        }
      }
    }
  }
}
