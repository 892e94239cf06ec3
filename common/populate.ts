/**
 * Pages mapped before they are used. A fresh buffer's pages are mapped one page fault at a time,
 * at each page's first write; on the VMs dtrain runs on a fault costs 14-40 µs, so the shared-memory
 * step's first stripe (the mlp's next weights, moments and slot: ~1,600 pages) took 25-30 ms of the
 * first step. `populatePages` maps and touches every page when the memory is made instead: with the
 * native addon, madvise(MADV_POPULATE_WRITE) and one atomic touch per page (35-42 ms for 16 MiB
 * against 58-66 ms faulted in, measured on this project's VM); without it, an atomic add of 0 per
 * page. Values are unchanged either way: an add of 0 writes nothing, even under concurrent writers.
 */
import { loadNativeKernels } from './kernels/native/addon.ts';

/** The page size the JavaScript touch steps by: 4 KiB, the smallest in use (a larger page is touched more than once). */
const TOUCH_STRIDE = 4096;

export interface Populated {
  how: 'madvise' | 'touch';
  bytes: number;
}

/** Maps every whole page of `buffer` (a shared one, or a shared WebAssembly.Memory's) now; its values are unchanged. */
export function populatePages(buffer: ArrayBuffer | SharedArrayBuffer, env: NodeJS.ProcessEnv = process.env): Populated {
  const load = loadNativeKernels(env);
  if (load.loaded) return { how: 'madvise', bytes: load.kernels.populatePages(new Uint8Array(buffer)) };
  const words = new Int32Array(buffer, 0, Math.floor(buffer.byteLength / 4));
  for (let i = 0; i < words.length; i += TOUCH_STRIDE / 4) Atomics.add(words, i, 0);
  return { how: 'touch', bytes: Math.floor(buffer.byteLength / TOUCH_STRIDE) * TOUCH_STRIDE };
}
