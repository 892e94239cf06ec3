/**
 * `Sum` and `Mean` over leading axes (e.g. [N,H,W] of an NHWC tensor: per-channel statistics, bias
 * and BatchNorm gradients) for the wasm backend. The stock kernels first transpose the reduced axes
 * to the end, a full copy in a cache-hostile order; reading the tensor once as rows of C values and
 * summing columns in registers is several times faster. Accumulation is in float64, like the cpu
 * backend. Any other reduction keeps the stock kernel.
 */
import { tfc } from '../tf.ts';
import { f32, inputsOf, WASM, type KernelRef, type WasmBackend } from './wasm-backend.ts';

/** The number of leading axes reduced, or -1 if `axis` is not exactly [0, 1, …, k−1] with k < rank. */
function leadingAxes(axis: number | number[], rank: number): number {
  const axes = (Array.isArray(axis) ? axis : [axis]).map((a) => (a < 0 ? a + rank : a)).sort((a, b) => a - b);
  if (axes.length === 0 || axes.length >= rank) return -1;
  return axes.every((a, i) => a === i) ? axes.length : -1;
}

/**
 * A reduction of `shape` over `axis` as a sum down the rows of [rows, cols] (rows: the leading axes'
 * product, cols: the rest's) and the output's shape; undefined unless `axis` is leading (leadingAxes).
 */
export function leadingReduction(shape: number[], axis: number | number[], keepDims: boolean): { rows: number; cols: number; outShape: number[] } | undefined {
  const k = leadingAxes(axis, shape.length);
  if (k < 0) return undefined;
  const kept = shape.slice(k);
  const size = (dims: number[]) => dims.reduce((a, b) => a * b, 1);
  return { rows: size(shape.slice(0, k)), cols: size(kept), outShape: keepDims ? [...shape.slice(0, k).map(() => 1), ...kept] : kept };
}

function reduceLeadingConfig(kernelName: 'Sum' | 'Mean', stock: KernelRef): tfc.KernelConfig {
  return {
    kernelName,
    backendName: WASM,
    setupFunc: stock.config.setupFunc,
    kernelFunc: (args) => {
      const backend = args.backend as WasmBackend;
      const { x } = inputsOf(args.inputs, 'x');
      const { axis, keepDims } = args.attrs as unknown as tfc.SumAttrs;
      const r = leadingReduction(x.shape, axis, keepDims);
      if (!r || r.rows === 0 || x.dtype !== 'float32') return stock.run(args.inputs, args.attrs ?? {}, backend);
      const out = backend.makeOutput(r.outShape, 'float32');
      const src = f32(backend, x);
      const dst = f32(backend, out);
      sumRows(src, dst, r.rows, r.cols, kernelName === 'Mean' ? 1 / r.rows : 1);
      return out;
    },
  };
}

/**
 * dst[c] = scale·Σ_r src[r·cols + c]. Four columns at a time in local float64 accumulators, walking
 * down the rows: about 2× faster in V8 than one pass over rows into an accumulator array.
 */
function sumRows(src: Float32Array, dst: Float32Array, rows: number, cols: number, scale: number): void {
  const n = rows * cols;
  let c = 0;
  for (; c + 4 <= cols; c += 4) {
    let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (let i = c; i < n; i += cols) {
      a0 += src[i];
      a1 += src[i + 1];
      a2 += src[i + 2];
      a3 += src[i + 3];
    }
    dst[c] = a0 * scale;
    dst[c + 1] = a1 * scale;
    dst[c + 2] = a2 * scale;
    dst[c + 3] = a3 * scale;
  }
  for (; c < cols; c++) {
    let a = 0;
    for (let i = c; i < n; i += cols) a += src[i];
    dst[c] = a * scale;
  }
}

export const sumConfig = (stock: KernelRef) => reduceLeadingConfig('Sum', stock);
export const meanConfig = (stock: KernelRef) => reduceLeadingConfig('Mean', stock);
