/**
 * `BatchMatMul` for the wasm backend: only the untransposed product takes the stock kernel's fast
 * XNNPACK path; with `transposeA` or `transposeB` it falls to a generic loop that is 10–40× slower
 * (32×3072ᵀ·32×128, a Dense layer's weight gradient: 34 ms against 2 ms). Dense backward passes are
 * exactly those transposed products, so we transpose explicitly and call the fast path:
 *
 *   Aᵀ·B   = (Aᵀ)·B                 transpose A
 *   A·Bᵀ   = (A·Bᵀ) or (B·Aᵀ)ᵀ       whichever moves fewer values: B, or A and the result
 *   Aᵀ·Bᵀ  = (B·A)ᵀ                  transpose the result
 *
 * Products with a real batch (> 1) keep the stock kernel.
 */
import { tfc } from '../tf.ts';
import { dispose, inputsOf, WASM, type KernelRef, type WasmBackend } from './wasm-backend.ts';

function size(shape: number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function batchMatMulConfig(stock: KernelRef, transpose: KernelRef): tfc.KernelConfig {
  return {
    kernelName: 'BatchMatMul',
    backendName: WASM,
    setupFunc: stock.config.setupFunc,
    kernelFunc: (args) => {
      const backend = args.backend as WasmBackend;
      const { a, b } = inputsOf(args.inputs, 'a', 'b');
      const { transposeA, transposeB } = args.attrs as unknown as tfc.BatchMatMulAttrs;
      const rank = a.shape.length;
      const batchOfOne = rank === b.shape.length && (rank === 2 || (rank === 3 && a.shape[0] === 1 && b.shape[0] === 1));
      if ((!transposeA && !transposeB) || !batchOfOne || a.dtype !== 'float32' || b.dtype !== 'float32') {
        return stock.run(args.inputs, args.attrs ?? {}, backend);
      }
      const swapLast = rank === 2 ? [1, 0] : [0, 2, 1];
      const t = (x: tfc.TensorInfo): tfc.TensorInfo => transpose.run({ x }, { perm: swapLast }, backend);
      const plain = { transposeA: false, transposeB: false };
      if (transposeA && transposeB) {
        const ba = stock.run({ a: b, b: a }, plain, backend);
        const out = t(ba);
        dispose(backend, ba);
        return out;
      }
      if (transposeA) {
        const aT = t(a);
        const out = stock.run({ a: aT, b }, plain, backend);
        dispose(backend, aT);
        return out;
      }
      // A·Bᵀ: a is [M,K], b is [N,K].
      const m = a.shape[rank - 2];
      const n = b.shape[rank - 2];
      if (size(b.shape) <= size(a.shape) + m * n) {
        const bT = t(b);
        const out = stock.run({ a, b: bT }, plain, backend);
        dispose(backend, bT);
        return out;
      }
      const aT = t(a);
      const baT = stock.run({ a: b, b: aT }, plain, backend);
      const out = t(baT);
      dispose(backend, aT, baT);
      return out;
    },
  };
}
