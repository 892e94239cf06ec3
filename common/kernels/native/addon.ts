/**
 * Finds and loads dtrain's optional native kernels (native/dtrain-kernels.cc, built by
 * `npm run build:native`), the way tfjs-node is optional: absent, disabled or broken, loading
 * says why and training stays on the wasm kernels.
 *
 *   DTRAIN_NATIVE_KERNELS=0        never load it (the wasm kernels, e.g. to compare or to test the fallback)
 *   DTRAIN_NATIVE_KERNELS_PATH=F   load F instead of native/build/dtrain-kernels.node
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../errors.ts';

/** Byte offsets into the wasm heap; −1 for an absent optional operand. Shapes as plain integers. */
export interface NativeKernels {
  /** y = relu?(conv(x, filter) + bias); then n, h, w, cin, ho, wo, cout, kh, kw, sh, sw, top, left, bottom, right. */
  conv2d(heap: ArrayBuffer, x: number, filter: number, bias: number, y: number, relu: number, ...shape: number[]): void;
  conv2dBackpropInput(heap: ArrayBuffer, dy: number, filter: number, dx: number, ...shape: number[]): void;
  conv2dBackpropFilter(heap: ArrayBuffer, x: number, dy: number, dw: number, ...shape: number[]): void;
  matMul(heap: ArrayBuffer, a: number, b: number, c: number, bias: number, relu: number, batchA: number, batchB: number, m: number, n: number, k: number, transposeA: number, transposeB: number): void;
  /** Then n, h, w, c, ho, wo, kh, kw, sh, sw, top, left. */
  maxPool(heap: ArrayBuffer, x: number, y: number, ...shape: number[]): void;
  maxPoolGrad(heap: ArrayBuffer, dy: number, x: number, dx: number, ...shape: number[]): void;
  batchNorm(heap: ArrayBuffer, x: number, mean: number, variance: number, offset: number, scale: number, y: number, rows: number, channels: number, epsilon: number): void;
  batchNormGrad(heap: ArrayBuffer, dy: number, x: number, mean: number, variance: number, scale: number, dx: number, dMean: number, dVariance: number, dScale: number, dOffset: number, rows: number, channels: number, epsilon: number): void;
  /**
   * Synchronized BatchNorm's passes over x [rows, C] (worker/layers/sync-batch-norm.ts), each
   * bit-identical to its JavaScript reference there. bnMoments fills `out` (1 + 2C) with
   * [rows, mean…, M2…] (two passes, float64), as common/batch-moments.ts localMoments.
   */
  bnMoments(heap: ArrayBuffer, x: number, rows: number, channels: number, out: Float64Array): void;
  /** out (2C) = [Σdy…, Σdy·x̂…] in float64, x̂ = (x − mean)·rs in float32; meanRs is [2, C] float32 on the heap. */
  bnBackwardSums(heap: ArrayBuffer, dy: number, x: number, meanRs: number, rows: number, channels: number, out: Float64Array): void;
  /** dx = ((dy − a) − x̂·b)·k in float32; meanRsK is [3, C] on the heap (mean, rs, k), ab [2, C] (a, b). */
  bnGradInput(heap: ArrayBuffer, dy: number, x: number, meanRsK: number, ab: number, dx: number, rows: number, channels: number): void;
  /**
   * bnGradInput's dx carried through the relu whose output x is, in one pass (dx never stored):
   * dz = dx·[x > 0], sum (C, float32 on the heap) = Σ dz in float64 rounded once, as reluBackward;
   * inactive (C) = −Σ dx·[x ≤ 0] in float64, as reluInactiveSum. The same bits as the three passes.
   */
  bnGradInputRelu(heap: ArrayBuffer, dy: number, x: number, meanRsK: number, ab: number, dz: number, rows: number, channels: number, sum: number, inactive: Float64Array): void;
  /** out (C) = −Σ dx·[y ≤ 0] per channel in float64: a relu's inactive positions (worker/layers/pre-norm-bias.ts). */
  reluInactiveSum(heap: ArrayBuffer, dx: number, y: number, rows: number, channels: number, out: Float64Array): void;
  /** dz = y > 0 ? dy : 0 and sum[c] = Σ dz over the rows (float64, rounded once), in one pass. */
  reluBackward(heap: ArrayBuffer, dy: number, y: number, dz: number, rows: number, channels: number, sum: number): void;
  /** out[r·C + c] = a[r·C + c] + bias[c]: a bias broadcast along the leading axes. */
  biasAdd(heap: ArrayBuffer, a: number, bias: number, out: number, rows: number, channels: number): void;
  /** dst[c] = scale·Σ_r src[r·cols + c] (float64 accumulation). */
  sumRows(heap: ArrayBuffer, src: number, dst: number, rows: number, cols: number, scale: number): void;
  /** out = (images − mean[j]) / std[j], bit-identical to common/data/preprocess.ts's loop. */
  standardize(images: Uint8Array, mean: Float32Array, std: Float32Array, out: Float32Array): void;
  /**
   * The shared-memory step's stripe in one pass (common/step-stripe.ts): slots summed, scaled by
   * inv, Adam applied; bit for bit the SIMD reduce and Adam kernels. Byte offsets into `memory`.
   * `flags`: 1 returns Σ g² of slot 0 (else 0); 2 runs the portable loop even on AVX-512 (tests).
   */
  stripeStep(
    memory: Uint8Array, lanes: number, g: number, stride: number, slots: number, wide: number, w: number, m: number, v: number, wOut: number, mOut: number, vOut: number,
    inv: number, b1: number, b2: number, a1: number, a2: number, step: number, sc2: number, eps: number, flags: number,
  ): number;
  /**
   * stripeStep over one slot whose gradient is `gradient` (the backend's own tensor, outside
   * `memory`): the same bits. With gOut ≥ 0 it also writes the gradient into the slot there, in the
   * same pass (−1: nowhere). With `weightsCopy`, the next weights are also written there (a backend
   * tensor). Both hold exactly `lanes` values; gOut … vOut are byte offsets into memory.
   */
  stripeStepFrom(
    memory: Uint8Array, lanes: number, gradient: Float32Array, gOut: number, w: number, m: number, v: number, wOut: number, mOut: number, vOut: number,
    inv: number, b1: number, b2: number, a1: number, a2: number, step: number, sc2: number, eps: number, flags: number, weightsCopy: Float32Array | null,
  ): number;
  /** Copies row indices[j] of src (rowBytes each) to dst at dstOffset + j·rowBytes; checks every index and the room in dst. */
  gatherRows(dst: Uint8Array, dstOffset: number, src: Uint8Array, indices: Uint32Array, rowBytes: number): void;
  /**
   * Maps every whole page inside the view now (madvise MADV_POPULATE_WRITE, then an atomic add of 0
   * per page) rather than one page fault per page at its first write; values are unchanged. Returns
   * the bytes touched.
   */
  populatePages(view: Uint8Array): number;
  /**
   * glibc's malloc keeps what it frees (mallopt): blocks up to mmapThreshold bytes from the heap,
   * trimmed only past trimThreshold bytes free. False where the C library is not glibc.
   */
  keepFreedMemory(mmapThreshold: number, trimThreshold: number): boolean;
  /** dst = (first ? 0 : dst) + src in float32 (common/gradient-passes.ts). */
  foldInto(dst: Float32Array, src: Float32Array, first: boolean): void;
  /** x = fl32(x · inv) in place; the first index whose result is not within ±limit (NaN included), or −1. */
  scaleBounded(x: Float32Array, inv: number, limit: number): number;
  /** Σ x² in float64: NaN or Infinity exactly where some value is not finite. */
  sumSquares(x: Float32Array): number;
  /** Adam in place on w, m and v (scalars as the SIMD kernel takes them), bit for bit the SIMD kernel. */
  adamInPlace(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, b1: number, b2: number, a1: number, a2: number, step: number, sc2: number, eps: number): void;
  info(): NativeInfo;
}

export interface NativeInfo {
  /** oneDNN's version, e.g. "2.6.3". */
  onednn: string;
  /** The instruction set oneDNN dispatches to on this CPU, e.g. "avx512_core". */
  isa: string;
  threads: number;
  /** oneDNN's name for the implementation behind the latest convolution primitive created. */
  lastImplementation: string;
}

export type NativeLoad = { loaded: true; kernels: NativeKernels; path: string; info: NativeInfo } | { loaded: false; reason: string };

export const DEFAULT_ADDON_PATH = fileURLToPath(new URL('../../../native/build/dtrain-kernels.node', import.meta.url));

const FUNCTIONS = ['conv2d', 'conv2dBackpropInput', 'conv2dBackpropFilter', 'matMul', 'maxPool', 'maxPoolGrad', 'batchNorm', 'batchNormGrad', 'bnMoments', 'bnBackwardSums', 'bnGradInput', 'bnGradInputRelu', 'reluInactiveSum', 'reluBackward', 'biasAdd', 'sumRows', 'standardize', 'stripeStep', 'stripeStepFrom', 'gatherRows', 'populatePages', 'keepFreedMemory', 'foldInto', 'scaleBounded', 'sumSquares', 'adamInPlace', 'info'] as const;

/** Reads DTRAIN_NATIVE_KERNELS: unset or 1 means "use it when present", 0 means never. */
export function nativeKernelsWanted(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env.DTRAIN_NATIVE_KERNELS;
  if (v === undefined || v === '' || v === '1') return true;
  if (v === '0') return false;
  throw new ConfigError(`DTRAIN_NATIVE_KERNELS must be 0 or 1, got "${v}".`);
}

const loads = new Map<string, NativeLoad>();

/** Loads the addon once per thread and path; never throws for an absent or broken addon, only for bad settings. */
export function loadNativeKernels(env: NodeJS.ProcessEnv = process.env): NativeLoad {
  if (!nativeKernelsWanted(env)) return { loaded: false, reason: 'disabled by DTRAIN_NATIVE_KERNELS=0' };
  const path = env.DTRAIN_NATIVE_KERNELS_PATH || DEFAULT_ADDON_PATH;
  let load = loads.get(path);
  if (load === undefined) loads.set(path, (load = tryLoad(path)));
  return load;
}

function tryLoad(path: string): NativeLoad {
  if (!existsSync(path)) return { loaded: false, reason: `no native kernels at ${path} (build them with: npm run build:native; needs g++ and libdnnl-dev)` };
  try {
    const addon = createRequire(import.meta.url)(path) as Partial<NativeKernels>;
    const missing = FUNCTIONS.filter((f) => typeof addon[f] !== 'function');
    if (missing.length > 0) return { loaded: false, reason: `${path} lacks ${missing.join(', ')} (rebuild: npm run build:native)` };
    const kernels = addon as NativeKernels;
    return { loaded: true, kernels, path, info: kernels.info() };
  } catch (err) {
    // Typically "libdnnl.so.2: cannot open shared object file" where oneDNN is not installed.
    return { loaded: false, reason: `cannot load ${path}: ${(err as Error).message.split('\n')[0].slice(0, 200)}` };
  }
}
