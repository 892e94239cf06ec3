/**
 * A relu's backward pass and the bias gradient of the layer it ends, in one native pass over the
 * wasm heap: dz = y > 0 ? dy : 0 and Σ dz over the leading axes. tfjs's own relu gradient is
 * Step(y)·dy (two kernels, one intermediate the size of the activation) and the bias gradient a
 * third kernel, Sum, reading dz again; here all three are one read of dy and y and one write of dz.
 * dz is the same multiply as Step·dy, and the sum is summed as the native Sum kernel sums (float64
 * in row order, rounded once), so both are the same bits (relu-backward.test.ts). At batch 128 the
 * pass takes 2.71 ms against 3.55 for the three kernels over cnn-bn's first activation
 * [128,30,30,32], 0.75 against 0.86 over its second (wall, 20 calls each, 2026-11-30).
 * Used by worker/direct-backprop.ts; `nativeReluBackward()` answers only while the native kernels
 * are installed and wasm is the active backend.
 */
import { tf, tfc, type Tensor } from '../../tf.ts';
import { WASM, inputsOf } from '../wasm-backend.ts';
import { registerWasmKernel } from '../install.ts';
import type { NativeKernels } from './addon.ts';
import { heapOf, zeroOutput, type HeapBackend } from './onednn-kernels.ts';

export const RELU_BACKWARD = 'DtrainReluBackward';

function kernel(native: NativeKernels): tfc.KernelConfig {
  return {
    kernelName: RELU_BACKWARD,
    backendName: WASM,
    kernelFunc: ({ inputs, backend }) => {
      const b = backend as unknown as HeapBackend;
      const { dy, y } = inputsOf(inputs, 'dy', 'y');
      if (dy.dtype !== 'float32' || y.dtype !== 'float32' || dy.shape.join() !== y.shape.join() || y.shape.length < 2) {
        throw new Error(`Expected dy and y float32 of one shape [..., C], but got ${dy.dtype} [${dy.shape.join(',')}] and ${y.dtype} [${y.shape.join(',')}].`);
      }
      const channels = y.shape[y.shape.length - 1];
      const rows = y.shape.reduce((a, d) => a * d, 1) / channels;
      const dz = b.makeOutput(y.shape.slice(), 'float32');
      const sum = b.makeOutput([channels], 'float32');
      if (rows > 0 && channels > 0) {
        native.reluBackward(heapOf(b), b.getMemoryOffset(dy.dataId), b.getMemoryOffset(y.dataId), b.getMemoryOffset(dz.dataId), rows, channels, b.getMemoryOffset(sum.dataId));
      } else if (channels > 0) {
        zeroOutput(b, sum, channels);
      }
      return [dz, sum];
    },
  };
}

let installed: NativeKernels | undefined;

/** Called by install-native.ts: the addon to use (undefined: none). */
export function setNativeReluBackward(native: NativeKernels | undefined): void {
  if (native === installed) return;
  installed = native;
  if (!native) return;
  registerWasmKernel(kernel(native));
}

/** (dy, y) → [dz, Σ dz over the leading axes], where the native kernels are active; else undefined. */
export function nativeReluBackward(): ((dy: Tensor, y: Tensor) => [Tensor, Tensor]) | undefined {
  if (installed === undefined || tf.getBackend() !== WASM) return undefined;
  return (dy, y) => tfc.engine().runKernel(RELU_BACKWARD, { dy, y }) as unknown as [Tensor, Tensor];
}
