/**
 * A float32 tensor's storage when the backend keeps it in this thread's memory (wasm: a view of
 * its heap; cpu: its values array), for reading or copying without a read-back; undefined
 * elsewhere (webgpu). A wasm view is valid until the backend next allocates: read it at once.
 */
import { tf, type Tensor } from './tf.ts';
import type { TensorInfo } from '@tensorflow/tfjs-core';

export function hostFloats(t: Tensor): Float32Array | undefined {
  const backend = tf.backend() as unknown as { typedArrayFromHeap?: (t: Tensor) => unknown; data?: { get(id: object): { values?: unknown } | undefined } };
  let view: unknown;
  if (tf.getBackend() === 'wasm' && typeof backend.typedArrayFromHeap === 'function') view = backend.typedArrayFromHeap(t);
  else if (tf.getBackend() === 'cpu') view = backend.data?.get(t.dataId)?.values;
  return view instanceof Float32Array && view.length === t.size ? view : undefined;
}

/**
 * A new float32 tensor of `shape` in the wasm backend's heap with its values not set: the caller
 * fills them through hostFloats before anything reads the tensor (no copy in, as tf.tensor would
 * make). Undefined on other backends.
 */
export function uninitializedHostTensor(shape: number[]): Tensor | undefined {
  if (tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend() as unknown as { makeOutput?: (shape: number[], dtype: 'float32') => TensorInfo };
  if (typeof backend.makeOutput !== 'function') return undefined;
  return tf.engine().makeTensorFromTensorInfo(backend.makeOutput(shape, 'float32'));
}
