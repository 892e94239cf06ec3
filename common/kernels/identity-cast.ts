/**
 * `Identity`, and `Cast` to the same dtype, for the wasm backend: both share the input's buffer (a
 * reference count) instead of copying it, as the cpu and webgl backends do. The engine clones every tensor it saves for the
 * backward pass through this kernel, so on wasm each training step copied every saved activation
 * once more: 40 full-size copies per cnn-bn step. Sharing is safe because no kernel writes into
 * its inputs; a variable's `assign` swaps in a new buffer rather than overwriting the old one.
 * The same-dtype Cast is ReLU's gradient, dy·cast(step(x), 'float32'): one copy per ReLU per step.
 * Casting to bool is also ours, because the stock kernel gets it wrong for values other than 0 and 1.
 */
import { tfc } from '../tf.ts';
import { inputsOf, WASM, type KernelRef, type WasmBackend } from './wasm-backend.ts';

interface RefCounted {
  incRef(dataId: object): void;
}

function sharing(kernelName: 'Identity' | 'Cast', stock: KernelRef): tfc.KernelConfig {
  return {
    kernelName,
    backendName: WASM,
    setupFunc: stock.config.setupFunc,
    kernelFunc: (args) => {
      const { x } = inputsOf(args.inputs, 'x');
      const dtype = kernelName === 'Identity' ? x.dtype : (args.attrs as unknown as tfc.CastAttrs).dtype;
      if (x.dtype === 'string' || dtype === 'string' || x.dtype === 'complex64' || dtype === 'complex64') return stock.run(args.inputs, args.attrs ?? {}, args.backend as never);
      if (dtype === 'bool' && x.dtype !== 'bool') return toBool(x, args.backend as WasmBackend);
      if (dtype !== x.dtype) return stock.run(args.inputs, args.attrs ?? {}, args.backend as never);
      (args.backend as RefCounted).incRef(x.dataId);
      return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
    },
  };
}

export const identityConfig = (stock: KernelRef) => sharing('Identity', stock);
export const castConfig = (stock: KernelRef) => sharing('Cast', stock);

/**
 * x ≠ 0, as the cpu backend casts to bool. The stock wasm kernel converts with a typed-array copy,
 * which wraps instead (−2.5 became 254).
 */
function toBool(x: tfc.TensorInfo, backend: WasmBackend): tfc.TensorInfo {
  const out = backend.makeOutput(x.shape, 'bool');
  const src = backend.typedArrayFromHeap(x);
  const dst = backend.typedArrayFromHeap(out);
  for (let i = 0; i < src.length; i++) dst[i] = src[i] !== 0 ? 1 : 0;
  return out;
}
