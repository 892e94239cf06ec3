/**
 * `Conv2DBackpropFilter` for the pure-JavaScript cpu backend, as one loop over typed arrays. The
 * stock cpu kernel reads every value through TensorBuffer.get: for cnn-bn's first convolution and
 * four images it takes about 10 s per step (measured 2026-11-30 with an ad-hoc timing script), which made
 * the cpu backend, the one whose sums have a fixed order and on which the K-independence tests
 * run, unusable for the CNNs. Same sum as stock, dW[kh,kw,ci,co] = Σ x[n, i·s+kh−pt, j·s+kw−pl, ci]·dy[n,i,j,co],
 * for NHWC with any stride and padding; other configurations (NCHW, dilations) keep the stock kernel.
 * The sums are accumulated in float64 (as the cpu backend's Sum and MatMul do), so a gradient summed
 * over a whole batch and the same gradient summed over slices agree to float32 rounding: without it,
 * their difference, amplified by Adam where a gradient is near zero, broke cnn-bn's K-independence
 * test (2e-3 after 20 steps instead of < 1e-5).
 */
import { tfc } from '../tf.ts';
import { accumulateFilterGradient } from './naive-conv2d-backprop-filter.ts';

type CpuBackend = { data: { get(id: unknown): { values: unknown } }; makeTensorInfo(shape: number[], dtype: 'float32', values: Float32Array): tfc.TensorInfo };

function values(backend: CpuBackend, t: tfc.TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

export function cpuConv2DBackpropFilterConfig(stock: tfc.KernelConfig): tfc.KernelConfig {
  return {
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'cpu',
    kernelFunc: (args) => {
      const { x, dy } = args.inputs as { x: tfc.TensorInfo; dy: tfc.TensorInfo };
      const attrs = args.attrs as unknown as tfc.Conv2DBackpropFilterAttrs;
      const backend = args.backend as unknown as CpuBackend;
      if (attrs.dataFormat === 'NCHW' || x.dtype !== 'float32' || dy.dtype !== 'float32') return stock.kernelFunc(args);
      const info = tfc.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], attrs.filterShape, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
      const dw = new Float64Array(attrs.filterShape.reduce((a, b) => a * b, 1));
      accumulateFilterGradient(values(backend, x), values(backend, dy), dw, x.shape, dy.shape, info);
      return backend.makeTensorInfo(attrs.filterShape, 'float32', Float32Array.from(dw));
    },
  };
}

let installed = false;

/** Registers the kernel for the cpu backend in place of the stock one. Idempotent. */
export function installCpuConv2DBackpropFilter(): void {
  if (installed) return;
  const stock = tfc.getKernel('Conv2DBackpropFilter', 'cpu');
  if (!stock) return; // the cpu backend is not loaded: nothing to replace
  tfc.unregisterKernel('Conv2DBackpropFilter', 'cpu');
  tfc.registerKernel(cpuConv2DBackpropFilterConfig(stock));
  installed = true;
}
