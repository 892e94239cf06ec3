/**
 * The small part of tfjs-backend-wasm that our kernels touch, typed once. Our kernels run inside the
 * engine's kernel dispatch, so they work on `TensorInfo`s and call other wasm kernels' functions
 * directly: no engine bookkeeping, no tape, and every intermediate is freed with `disposeData`.
 */
import { tfc } from '../tf.ts';

type TensorInfo = tfc.TensorInfo;
type NamedAttrMap = tfc.NamedAttrMap;
type KernelConfig = tfc.KernelConfig;

/** What our kernels use of `BackendWasm` (its class is not exported with these members typed). */
export interface WasmBackend {
  makeOutput(shape: number[], dtype: tfc.DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  typedArrayFromHeap(info: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

export const WASM = 'wasm';

/**
 * A stock wasm kernel as registered before we installed ours: the fallback for configurations we
 * do not reformulate, and the building blocks (Conv2D, BatchMatMul, Transpose) ours are made of.
 */
export interface KernelRef {
  readonly config: KernelConfig;
  run(inputs: tfc.NamedTensorInfoMap, attrs: NamedAttrMap, backend: WasmBackend): TensorInfo;
}

export function kernelRef(config: KernelConfig): KernelRef {
  return {
    config,
    run(inputs, attrs, backend) {
      return config.kernelFunc({ inputs, attrs, backend }) as TensorInfo;
    },
  };
}

/** A gradient we register for wasm, and tfjs's own, which it delegates to elsewhere and restores. */
export interface GradientOverride {
  ours: tfc.GradConfig;
  original: tfc.GradConfig;
}

/**
 * A Float32 view of a tensor on the wasm heap. Views go stale when the heap grows, which any
 * allocation can do, so take them only after every output of a kernel has been made.
 */
export function f32(backend: WasmBackend, info: TensorInfo): Float32Array {
  const a = backend.typedArrayFromHeap(info);
  if (!(a instanceof Float32Array)) throw new Error(`Expected a float32 tensor, but got ${info.dtype}.`);
  return a;
}

export function dispose(backend: WasmBackend, ...infos: TensorInfo[]): void {
  for (const info of infos) backend.disposeData(info.dataId);
}

/** A kernel's named inputs, checked present (the engine's map types every input as optional). */
export function inputsOf<K extends string>(inputs: tfc.NamedTensorInfoMap, ...names: K[]): Record<K, TensorInfo> {
  const out = {} as Record<K, TensorInfo>;
  for (const name of names) {
    const t = inputs[name];
    if (t === undefined) throw new Error(`Kernel input '${name}' is missing.`);
    out[name] = t;
  }
  return out;
}

/** Normalises a `[h, w] | n` attribute (strides, dilations, filter sizes) to a pair. */
export function pair(v: number | [number, number] | number[] | undefined, fallback = 1): [number, number] {
  if (v === undefined) return [fallback, fallback];
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}
