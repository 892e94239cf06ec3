/**
 * Backends whose tensors can be read in the middle of a step without a device sync: synchronized
 * BatchNorm's exchange inside the forward pass and the direct backward pass need it. Its own module
 * (not common/backend.ts, which loads Node-only backends) so the browser worker can bundle it.
 */
export const SYNC_READ_BACKENDS: ReadonlySet<string> = new Set(['cpu', 'wasm', 'tensorflow']);
