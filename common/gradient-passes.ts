/**
 * The passes the coordinator makes over a step's gradients on the message path (WebSocket
 * workers): the codec's finiteness check and the result screen's Σ g² of each result, folding each
 * result into the sum, and the mean with Adam's safety check (common/adam.ts runs Adam itself the
 * same way). With the native kernels (common/kernels/native) each is one native loop over the
 * arrays where they lie; without them (not built, or DTRAIN_NATIVE_KERNELS=0), JavaScript loops
 * with the same results: bit for bit, except Σ x², which is summed in another order (the two agree
 * to rounding; a NaN or an Infinity anywhere makes either one non-finite).
 *
 * Why: for the mlp (402,250 parameters) these JavaScript loops took ~2.5 ms of the coordinator's
 * main thread per step (a CPU profile of a WebSocket run, docs/shared-step.md), around ~1.3 ms of
 * compute on the worker.
 */
import type { NativeKernels } from './kernels/native/addon.ts';
import { sumSquares } from './sum-squares-simd.ts';

/** What this module and Adam take from the native kernels. No import of the addon here: the codec is also bundled for browsers. */
export type NativePasses = Pick<NativeKernels, 'foldInto' | 'scaleBounded' | 'sumSquares' | 'adamInPlace'>;

let passes: NativePasses | undefined;

/** Installs (or, with undefined, removes) the native passes (common/kernels/native/install-native.ts). */
export function setGradientPasses(kernels: NativePasses | undefined): void {
  passes = kernels;
}

/** The native passes where installed (Adam.apply asks too). */
export function native(): NativePasses | undefined {
  return passes;
}

/** Σ x² in float64. */
export function squaresOf(x: Float32Array): number {
  const n = native();
  return n ? n.sumSquares(x) : sumSquares(x);
}

/** The index of the first value that is NaN or ±Infinity, or −1. */
export function firstNonFinite(x: Float32Array): number {
  // One fast pass decides; only a bad array is searched value by value.
  if (Number.isFinite(squaresOf(x))) return -1;
  for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) return i;
  return -1;
}

/** dst = (first ? 0 : dst) + src, in float32 (0 + src rather than a copy: −0 becomes 0, as a sum from zero gives). */
export function foldInto(dst: Float32Array, src: Float32Array, first: boolean): void {
  if (src.length !== dst.length) throw new RangeError(`Expected ${dst.length} values to fold, but got ${src.length}.`);
  const n = native();
  if (n) return n.foldInto(dst, src, first);
  if (first) for (let i = 0; i < dst.length; i++) dst[i] = 0 + src[i];
  else for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

/**
 * x = x · inv (the product in float64, rounded to float32), in place; returns the first index whose
 * result is not within ±limit (NaN included), or −1.
 */
export function scaleBounded(x: Float32Array, inv: number, limit: number): number {
  const n = native();
  if (n) return n.scaleBounded(x, inv, limit);
  let bad = -1;
  for (let i = 0; i < x.length; i++) {
    x[i] *= inv;
    const r = x[i];
    if (bad < 0 && !(r <= limit && r >= -limit)) bad = i;
  }
  return bad;
}
