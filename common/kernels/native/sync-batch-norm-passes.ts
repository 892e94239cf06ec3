/**
 * The whole-activation passes of synchronized BatchNorm (worker/layers/sync-batch-norm.ts) on the
 * native addon, in place on the wasm heap: the float64 moments of x, the backward sums Σdy and
 * Σdy·x̂, and dx. Nothing is read back to JavaScript and x̂ is never stored: each pass recomputes
 * it from x. Every pass is bit-identical to the JavaScript/tfjs reference in sync-batch-norm.ts
 * (same float32 and float64 operations in the same order per channel; see native/dtrain-kernels.cc).
 * Where a relu's output is the BatchNorm's input, dx's pass can carry on through that relu
 * (gradInputRelu): the bits of bnGradInput, reluInactiveSum and reluBackward one after another, in
 * one read of dy and x (worker/direct-backprop.ts; docs/kernels.md).
 *
 * `nativeBatchNormPasses()` answers only when the native kernels are installed and the wasm
 * backend is active; otherwise sync-batch-norm.ts uses its reference passes.
 */
import { tf, tfc, type Tensor } from '../../tf.ts';
import { WASM, inputsOf } from '../wasm-backend.ts';
import { registerWasmKernel } from '../install.ts';
import type { NativeKernels } from './addon.ts';
import { heapOf, zeroOutput, type HeapBackend } from './onednn-kernels.ts';

/** The passes over the activation that synchronized BatchNorm makes; two implementations. */
export interface BatchNormPasses {
  /** [rows, mean…, M2…] of x [..., C] in float64 (common/batch-moments.ts's layout). */
  moments(x: Tensor, channels: number): Float64Array;
  /** What the backward pass keeps of the forward: made from x, γ and the float32 mean and rs = 1/√(var + ε). */
  save(x: Tensor, gamma: Tensor, mean: Float32Array, rs: Float32Array): Tensor[];
  /** [Σdy…, Σdy·x̂…] in float64, x̂ = (x − mean)·rs in float32. */
  backwardSums(dy: Tensor, saved: Tensor[], channels: number): Float64Array;
  /** dx = ((dy − a) − x̂·b)·k in float32, k = γ·rs. */
  gradInput(dy: Tensor, saved: Tensor[], a: Float32Array, b: Float32Array): Tensor;
  /**
   * Where a relu's output is this BatchNorm's input x: gradInput's dx carried on through that relu in
   * the same pass (the native passes only): the relu's backward and its bias's sums, as
   * worker/direct-backprop.ts would take them next from dx (ReluGradient).
   */
  gradInputRelu?(dy: Tensor, saved: Tensor[], a: Float32Array, b: Float32Array): ReluGradient;
}

/** A relu's backward pass through dx, the gradient of its output y: what reluBackward and reluInactiveSum give. */
export interface ReluGradient {
  /** dx·[y > 0]. */
  dz: Tensor;
  /** [C] float32: Σ dz over the leading axes (float64 sums rounded once), the bias's gradient. */
  biasSum: Tensor;
  /** [C] float64: −Σ dx·[y ≤ 0], the pre-norm bias's sums (worker/layers/pre-norm-bias.ts). */
  inactive: Float64Array;
}

export const SYNC_BN_GRAD_INPUT = 'DtrainSyncBatchNormGradInput';
export const SYNC_BN_GRAD_INPUT_RELU = 'DtrainSyncBatchNormGradInputRelu';

const rowsOf = (shape: number[], channels: number): number => shape.reduce((a, d) => a * d, 1) / channels;

function checkFloat(what: string, t: { dtype: string; shape: number[] }, channels: number): void {
  if (t.dtype !== 'float32' || t.shape[t.shape.length - 1] !== channels) {
    throw new Error(`Expected ${what} to be float32 with ${channels} channels last, but got ${t.dtype} [${t.shape.join(',')}].`);
  }
}

/** dx = bnGradInput(dy, x, [mean; rs; k], [a; b]) as a wasm kernel, so that the backend allocates dx. */
export function syncBatchNormGradInputKernel(native: NativeKernels): tfc.KernelConfig {
  return {
    kernelName: SYNC_BN_GRAD_INPUT,
    backendName: WASM,
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as HeapBackend;
      const { dy, x, meanRsK, ab } = inputsOf(inputs, 'dy', 'x', 'meanRsK', 'ab');
      const channels = meanRsK.shape[1];
      checkFloat('dy', dy, channels);
      if (dy.shape.join() !== x.shape.join()) throw new Error(`Expected dy and x of one shape, but got [${dy.shape.join(',')}] and [${x.shape.join(',')}].`);
      const dx = b.makeOutput(x.shape.slice(), 'float32');
      const rows = rowsOf(x.shape, channels);
      if (rows > 0) {
        native.bnGradInput(heapOf(b), b.getMemoryOffset(dy.dataId), b.getMemoryOffset(x.dataId), b.getMemoryOffset(meanRsK.dataId), b.getMemoryOffset(ab.dataId),
          b.getMemoryOffset(dx.dataId), rows, channels);
      }
      return dx;
    },
  };
}

/**
 * [dz, Σ dz] = bnGradInputRelu(dy, x, [mean; rs; k], [a; b]) as a wasm kernel, so that the backend
 * allocates both; the inactive positions' float64 sums go into the `inactive` attribute's array.
 */
export function syncBatchNormGradInputReluKernel(native: NativeKernels): tfc.KernelConfig {
  return {
    kernelName: SYNC_BN_GRAD_INPUT_RELU,
    backendName: WASM,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const b = backend as unknown as HeapBackend;
      const { dy, x, meanRsK, ab } = inputsOf(inputs, 'dy', 'x', 'meanRsK', 'ab');
      const channels = meanRsK.shape[1];
      checkFloat('dy', dy, channels);
      if (dy.shape.join() !== x.shape.join()) throw new Error(`Expected dy and x of one shape, but got [${dy.shape.join(',')}] and [${x.shape.join(',')}].`);
      const inactive = (attrs as unknown as { inactive: Float64Array }).inactive;
      if (!(inactive instanceof Float64Array) || inactive.length !== channels) throw new Error(`Expected a Float64Array of ${channels} values for the inactive sums, but got ${String(inactive)}.`);
      const dz = b.makeOutput(x.shape.slice(), 'float32');
      const sum = b.makeOutput([channels], 'float32');
      const rows = rowsOf(x.shape, channels);
      if (rows > 0) {
        native.bnGradInputRelu(heapOf(b), b.getMemoryOffset(dy.dataId), b.getMemoryOffset(x.dataId), b.getMemoryOffset(meanRsK.dataId), b.getMemoryOffset(ab.dataId),
          b.getMemoryOffset(dz.dataId), rows, channels, b.getMemoryOffset(sum.dataId), inactive);
      } else {
        inactive.fill(0);
        zeroOutput(b, sum, channels);
      }
      return [dz, sum];
    },
  };
}

/** `a` and `b` as the [2, C] tensor the gradient kernels take, for the length of `run`. */
function withAb<T>(a: Float32Array, b: Float32Array, run: (ab: Tensor) => T): T {
  const ab = new Float32Array(2 * a.length);
  ab.set(a);
  ab.set(b, a.length);
  const abT = tf.tensor2d(ab, [2, a.length]);
  try {
    return run(abT);
  } finally {
    abT.dispose();
  }
}

/** The passes on the addon; valid while the wasm backend is the active one. */
export function nativePasses(native: NativeKernels): BatchNormPasses {
  const backend = () => tf.backend() as unknown as HeapBackend;
  return {
    moments(x, channels) {
      checkFloat('x', x, channels);
      const rows = rowsOf(x.shape, channels);
      const out = new Float64Array(1 + 2 * channels);
      if (rows === 0) return out;
      const b = backend();
      native.bnMoments(heapOf(b), b.getMemoryOffset(x.dataId), rows, channels, out);
      return out;
    },
    save(x, gamma, mean, rs) {
      // k = γ·rs rounded to float32, as tfjs's float32 mul makes it in the reference.
      const g = gamma.dataSync();
      const coefficients = new Float32Array(3 * mean.length);
      coefficients.set(mean);
      coefficients.set(rs, mean.length);
      for (let c = 0; c < mean.length; c++) coefficients[2 * mean.length + c] = Math.fround(g[c] * rs[c]);
      return [x, tf.tensor2d(coefficients, [3, mean.length])];
    },
    backwardSums(dy, saved, channels) {
      const [x, meanRsK] = saved;
      checkFloat('dy', dy, channels);
      const out = new Float64Array(2 * channels);
      const rows = rowsOf(x.shape, channels);
      if (rows === 0) return out;
      const b = backend();
      native.bnBackwardSums(heapOf(b), b.getMemoryOffset(dy.dataId), b.getMemoryOffset(x.dataId), b.getMemoryOffset(meanRsK.dataId), rows, channels, out);
      return out;
    },
    gradInput(dy, saved, a, b) {
      const [x, meanRsK] = saved;
      return withAb(a, b, (ab) => tfc.engine().runKernel(SYNC_BN_GRAD_INPUT, { dy, x, meanRsK, ab }) as Tensor);
    },
    gradInputRelu(dy, saved, a, b) {
      const [x, meanRsK] = saved;
      const inactive = new Float64Array(a.length);
      const [dz, biasSum] = withAb(a, b, (ab) => tfc.engine().runKernel(SYNC_BN_GRAD_INPUT_RELU, { dy, x, meanRsK, ab }, { inactive } as never) as unknown as [Tensor, Tensor]);
      return { dz, biasSum, inactive };
    },
  };
}

let installed: { native: NativeKernels; passes: BatchNormPasses } | undefined;

/** Called by install-native.ts: the addon whose passes to use (undefined: none, the reference passes). */
export function setNativeBatchNormKernels(native: NativeKernels | undefined): void {
  if (native === undefined) {
    installed = undefined;
    return;
  }
  if (installed?.native === native) return;
  registerWasmKernel(syncBatchNormGradInputKernel(native));
  registerWasmKernel(syncBatchNormGradInputReluKernel(native));
  installed = { native, passes: nativePasses(native) };
}

/**
 * −Σ dx·[y ≤ 0] per channel (a relu's inactive positions) in float64, for dx and y [..., C] on the
 * wasm heap: the pass of worker/layers/pre-norm-bias.ts's inactiveGradientSum, for every channel,
 * each bit-identical to that JavaScript loop's (same operations, same order per channel). Undefined
 * where the native kernels are not active (use the JavaScript there).
 */
export function nativeReluInactiveSum(): ((dx: Tensor, y: Tensor) => Float64Array) | undefined {
  if (installed === undefined || tf.getBackend() !== WASM) return undefined;
  const native = installed.native;
  return (dx, y) => {
    const channels = y.shape[y.rank - 1];
    checkFloat('dx', dx, channels);
    checkFloat('y', y, channels);
    if (dx.shape.join() !== y.shape.join()) throw new Error(`Expected dx and y of one shape, but got [${dx.shape.join(',')}] and [${y.shape.join(',')}].`);
    const out = new Float64Array(channels);
    const rows = rowsOf(y.shape, channels);
    if (rows === 0) return out;
    const b = tf.backend() as unknown as HeapBackend;
    native.reluInactiveSum(heapOf(b), b.getMemoryOffset(dx.dataId), b.getMemoryOffset(y.dataId), rows, channels, out);
    return out;
  };
}

/** The native passes when the native kernels are installed and wasm is the active backend; else undefined. */
export function nativeBatchNormPasses(): BatchNormPasses | undefined {
  return installed !== undefined && tf.getBackend() === WASM ? installed.passes : undefined;
}
