/**
 * Float arrays made once and reused for values that become a new tensor at once: a step's
 * preprocessed images, a Dropout mask. Where the backend copies a new tensor's values into its own
 * memory when the tensor is made (wasm), the array is free again as soon as the tensor exists.
 *
 * A fresh array per step is a fresh allocation the C library may map anew (a batch of 32 images
 * is 393 KB, above glibc's first mmap threshold), and every new page then faults once. On this
 * project's VMs a fault costs 17-40 us: `dtrain train --model mlp --workers 1` took 25-111 page
 * faults per step and 2-3 ms of a 1.5 ms step in them, and never stopped doing so; with the input
 * array reused, 0.1 per step (docs/shared-step.md, "Page faults").
 *
 * Elsewhere (cpu keeps the array as the tensor's storage; webgl and webgpu upload it later)
 * `take` answers undefined and the caller makes a fresh array, as before.
 */
import { tf } from './tf.ts';

/** Backends that copy a new tensor's values before `tf.tensor` returns. */
const COPYING_BACKENDS = new Set(['wasm']);

/** Whether the current backend copies a new tensor's values (so the array may be reused or shared). */
export function backendCopiesUploads(): boolean {
  return COPYING_BACKENDS.has(tf.getBackend());
}

/** Distinct lengths kept at most: a training slice, an evaluation chunk, a last short batch, a mask. */
const MAX_LENGTHS = 4;

export class UploadScratch {
  private readonly arrays = new Map<number, Float32Array>();

  /** An array of `length` floats to fill entirely and turn into a tensor at once; undefined where the backend would keep it. */
  take(length: number): Float32Array | undefined {
    if (!backendCopiesUploads()) return undefined;
    let array = this.arrays.get(length);
    if (!array) {
      if (this.arrays.size >= MAX_LENGTHS) this.arrays.clear();
      array = new Float32Array(length);
      this.arrays.set(length, array);
    }
    return array;
  }
}
