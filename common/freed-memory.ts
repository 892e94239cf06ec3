/**
 * glibc's malloc told to keep the memory a process frees. By default it hands large freed blocks
 * back to the kernel (each block above a threshold is a mapping of its own, and the heap's free top
 * is trimmed), so the next allocation of that size gets fresh pages, each faulted in at its first
 * write: 14-40 µs a page on the VMs this project runs on. Over WebSockets a step allocates several
 * such blocks (ws's reassembled frames, the masked copy of a result: 1.6 MB each for the mlp), and
 * the PyTorch peer of the benchmark runs with the same setting (scripts/bench-torch.py), so dtrain
 * does too: blocks up to 32 MiB come from the heap, and the heap is trimmed only past 1 GiB free.
 * The resident set then stays at its high-water mark instead of shrinking after a peak.
 *
 *   DTRAIN_KEEP_FREED_MEMORY=0   leave glibc's defaults (to compare, or to give memory back)
 */
import { ConfigError } from './errors.ts';
import { loadNativeKernels } from './kernels/native/addon.ts';

/** The largest block glibc accepts as its mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit). */
export const MMAP_THRESHOLD_BYTES = 32 << 20;
export const TRIM_THRESHOLD_BYTES = 1 << 30;

export interface MallocMode {
  /** 'keeps freed memory': the policy above is in effect; 'glibc default': it is not (see mallocReason). */
  malloc: 'keeps freed memory' | 'glibc default';
  mallocReason?: string;
}

let applied: MallocMode | undefined;

/** Applies the policy once per process (mallopt is process-wide) and says what is in effect, for the start-up log line. */
export function keepFreedMemory(env: NodeJS.ProcessEnv = process.env): MallocMode {
  const wanted = env.DTRAIN_KEEP_FREED_MEMORY;
  if (wanted !== undefined && wanted !== '' && wanted !== '0' && wanted !== '1') throw new ConfigError(`DTRAIN_KEEP_FREED_MEMORY must be 0 or 1, got "${wanted}".`);
  if (applied) return applied;
  if (wanted === '0') return (applied = { malloc: 'glibc default', mallocReason: 'DTRAIN_KEEP_FREED_MEMORY=0' });
  const load = loadNativeKernels(env);
  if (!load.loaded) return (applied = { malloc: 'glibc default', mallocReason: load.reason });
  const kept = load.kernels.keepFreedMemory(MMAP_THRESHOLD_BYTES, TRIM_THRESHOLD_BYTES);
  return (applied = kept ? { malloc: 'keeps freed memory' } : { malloc: 'glibc default', mallocReason: 'mallopt refused: the C library is not glibc' });
}
