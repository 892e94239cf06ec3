/**
 * wasm-backend kernels that compute with the native addon (oneDNN) in place on the wasm heap: the
 * backend allocates every output as usual, the addon gets the heap's ArrayBuffer and byte offsets.
 * Each kernel handles the models' configurations (NHWC, no dilation, float32, relu or no
 * activation, per-channel statistics) and hands anything else to `fallback`, the kernel that was
 * registered before it (ours from ../install.ts, or the stock one).
 */
import { tfc } from '../../tf.ts';
import { leadingReduction } from '../reduce-leading.ts';
import { inputsOf, pair, WASM, type KernelRef, type WasmBackend } from '../wasm-backend.ts';
import type { NativeKernels } from './addon.ts';

type TensorInfo = tfc.TensorInfo;

/** What these kernels need of the wasm backend beyond WasmBackend: the heap and offsets into it. */
export interface HeapBackend extends WasmBackend {
  getMemoryOffset(dataId: object): number;
  wasm: { HEAPU8: Uint8Array };
}

type KernelArgs = Parameters<tfc.KernelFunc>[0];

export const heapOf = (b: HeapBackend): ArrayBuffer => b.wasm.HEAPU8.buffer as ArrayBuffer;
/** Zeros the first `length` floats of output `t`: a fresh output is heap memory that nothing has written (a sum over no rows is 0). */
export function zeroOutput(b: HeapBackend, t: TensorInfo, length: number): void {
  new Float32Array(heapOf(b), b.getMemoryOffset(t.dataId), length).fill(0);
}
const at = (b: HeapBackend, t: TensorInfo | undefined): number => (t === undefined ? -1 : b.getMemoryOffset(t.dataId));
const sizeOf = (shape: number[]): number => shape.reduce((a, d) => a * d, 1);
const allFloat = (...ts: (TensorInfo | undefined)[]): boolean => ts.every((t) => t === undefined || t.dtype === 'float32');

/** The kernels these replace; `fallback` for each is whatever is registered for wasm at install time. */
export const NATIVE_KERNEL_NAMES = [
  'Conv2D',
  'FusedConv2D',
  'Conv2DBackpropInput',
  'Conv2DBackpropFilter',
  'BatchMatMul',
  '_FusedMatMul',
  'MaxPool',
  'MaxPoolGrad',
  'FusedBatchNorm',
  'DtrainFusedBatchNormGrad',
  'Sum',
  'Mean',
  'Add',
] as const;
export type NativeKernelName = (typeof NATIVE_KERNEL_NAMES)[number];

/** Sizes as the addon takes them: n, h, w, cin, ho, wo, cout, kh, kw, sh, sw, top, left, bottom, right. */
function convShape(info: tfc.backend_util.Conv2DInfo): number[] | undefined {
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1 || info.dataFormat !== 'channelsLast') return undefined;
  const { top, left, bottom, right } = info.padInfo;
  // oneDNN wants the output size to follow exactly from the padding (floor division).
  const fits = (size: number, k: number, s: number, a: number, b: number, out: number) => a >= 0 && b >= 0 && Math.floor((size - k + a + b) / s) + 1 === out;
  if (!fits(info.inHeight, info.filterHeight, info.strideHeight, top, bottom, info.outHeight)) return undefined;
  if (!fits(info.inWidth, info.filterWidth, info.strideWidth, left, right, info.outWidth)) return undefined;
  return [info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.outChannels,
    info.filterHeight, info.filterWidth, info.strideHeight, info.strideWidth, top, left, bottom, right];
}

function conv2DInfo(xShape: number[], filterShape: number[], attrs: Pick<tfc.Conv2DAttrs, 'strides' | 'pad' | 'dataFormat' | 'dimRoundingMode'> & { dilations?: tfc.Conv2DAttrs['dilations'] }): tfc.backend_util.Conv2DInfo | undefined {
  if (xShape.length !== 4 || filterShape.length !== 4 || attrs.dataFormat === 'NCHW') return undefined;
  const [dh, dw] = pair(attrs.dilations);
  if (dh !== 1 || dw !== 1) return undefined;
  return tfc.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number], attrs.strides, 1, attrs.pad, attrs.dimRoundingMode, false, 'channelsLast');
}

type Fallbacks = Record<NativeKernelName, KernelRef>;

function forward(native: NativeKernels, fallback: KernelRef, fused: boolean): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { x, filter } = inputsOf(args.inputs, 'x', 'filter');
    const attrs = args.attrs as unknown as tfc.FusedConv2DAttrs;
    const bias = fused ? args.inputs.bias : undefined;
    const activation = fused ? attrs.activation ?? 'linear' : 'linear';
    const info = conv2DInfo(x.shape, filter.shape, attrs);
    const shape = info && convShape(info);
    const supported = shape && allFloat(x, filter, bias) && (activation === 'linear' || activation === 'relu') &&
      (!fused || args.inputs.preluActivationWeights === undefined) && (bias === undefined || (sizeOf(bias.shape) === info!.outChannels && bias.shape[bias.shape.length - 1] === info!.outChannels));
    if (!supported) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const y = backend.makeOutput(info!.outShape, 'float32');
    native.conv2d(heapOf(backend), at(backend, x), at(backend, filter), at(backend, bias), at(backend, y), activation === 'relu' ? 1 : 0, ...shape!);
    return y;
  };
}

function backpropInput(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { dy, filter } = inputsOf(args.inputs, 'dy', 'filter');
    const attrs = args.attrs as unknown as tfc.Conv2DBackpropInputAttrs;
    const info = conv2DInfo(attrs.inputShape, filter.shape, attrs);
    const shape = info && convShape(info);
    if (!shape || !allFloat(dy, filter) || info!.outShape.join() !== dy.shape.join()) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const dx = backend.makeOutput(attrs.inputShape.slice(), 'float32');
    native.conv2dBackpropInput(heapOf(backend), at(backend, dy), at(backend, filter), at(backend, dx), ...shape);
    return dx;
  };
}

function backpropFilter(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { x, dy } = inputsOf(args.inputs, 'x', 'dy');
    const attrs = args.attrs as unknown as tfc.Conv2DBackpropFilterAttrs;
    const info = conv2DInfo(x.shape, attrs.filterShape, attrs);
    const shape = info && convShape(info);
    if (!shape || !allFloat(x, dy) || info!.outShape.join() !== dy.shape.join()) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const dw = backend.makeOutput(attrs.filterShape.slice(), 'float32');
    native.conv2dBackpropFilter(heapOf(backend), at(backend, x), at(backend, dy), at(backend, dw), ...shape);
    return dw;
  };
}

/** Batch dimensions of a product: equal, or one side a single matrix broadcast against the other. */
function productShape(a: number[], b: number[], transposeA: boolean, transposeB: boolean): { batchA: number; batchB: number; m: number; n: number; k: number; out: number[] } | undefined {
  if (a.length < 2 || b.length < 2) return undefined;
  const m = transposeA ? a[a.length - 1] : a[a.length - 2];
  const k = transposeA ? a[a.length - 2] : a[a.length - 1];
  const kb = transposeB ? b[b.length - 1] : b[b.length - 2];
  const n = transposeB ? b[b.length - 2] : b[b.length - 1];
  if (k !== kb || m < 1 || n < 1 || k < 1) return undefined;
  const dimsA = a.slice(0, -2);
  const dimsB = b.slice(0, -2);
  const batchA = sizeOf(dimsA);
  const batchB = sizeOf(dimsB);
  let dims: number[];
  if (batchA === 1 && batchB === 1) dims = dimsA.length >= dimsB.length ? dimsA : dimsB;
  else if (batchB === 1) dims = dimsA;
  else if (batchA === 1) dims = dimsB;
  else if (dimsA.join() === dimsB.join()) dims = dimsA;
  else return undefined;
  return { batchA, batchB, m, n, k, out: [...dims, m, n] };
}

function matMul(native: NativeKernels, fallback: KernelRef, fused: boolean): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { a, b } = inputsOf(args.inputs, 'a', 'b');
    const attrs = args.attrs as unknown as tfc._FusedMatMulAttrs;
    const bias = fused ? args.inputs.bias : undefined;
    const activation = fused ? attrs.activation ?? 'linear' : 'linear';
    const p = productShape(a.shape, b.shape, attrs.transposeA, attrs.transposeB);
    const supported = p && allFloat(a, b, bias) && (activation === 'linear' || activation === 'relu') &&
      (!fused || args.inputs.preluActivationWeights === undefined) && (bias === undefined || (sizeOf(bias.shape) === p.n && bias.shape[bias.shape.length - 1] === p.n));
    if (!supported) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const c = backend.makeOutput(p!.out, 'float32');
    native.matMul(heapOf(backend), at(backend, a), at(backend, b), at(backend, c), at(backend, bias), activation === 'relu' ? 1 : 0,
      p!.batchA, p!.batchB, p!.m, p!.n, p!.k, attrs.transposeA ? 1 : 0, attrs.transposeB ? 1 : 0);
    return c;
  };
}

/**
 * The addon's general pooling loops run along the channels; with fewer than this many they barely
 * vectorize and the stock forward and our JavaScript gradient are faster (lenet's first pooling,
 * six channels: 0.80 against 0.36 CPU ms per step at batch 32). The 2×2/stride-2 paths, forward and
 * gradient, have no such overhead (the channel count is a compile-time constant for 6, 16, 32 and
 * 64) and take any channel count: lenet's first pooling forward, [32,28,28,6], 16 µs against the
 * stock XNNPACK kernel's 146 µs.
 */
export const MIN_POOL_CHANNELS = 16;

const isPlain2x2 = (info: tfc.backend_util.Conv2DInfo) =>
  info.filterHeight === 2 && info.filterWidth === 2 && info.strideHeight === 2 && info.strideWidth === 2 && info.padInfo.top === 0 && info.padInfo.left === 0;

/** n, h, w, c, ho, wo, kh, kw, sh, sw, top, left; undefined where the addon's loops do not apply. */
function poolShape(xShape: number[], attrs: tfc.MaxPoolAttrs): { shape: number[]; out: number[] } | undefined {
  if (xShape.length !== 4) return undefined;
  const info = tfc.backend_util.computePool2DInfo(xShape as [number, number, number, number], attrs.filterSize, attrs.strides, 1, attrs.pad, attrs.dimRoundingMode);
  if (info.dilationHeight !== 1 || info.dilationWidth !== 1 || info.padInfo.top < 0 || info.padInfo.left < 0) return undefined;
  if (xShape[3] < MIN_POOL_CHANNELS && !isPlain2x2(info)) return undefined;
  const shape = [info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.outHeight, info.outWidth, info.filterHeight, info.filterWidth,
    info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left];
  return { shape, out: info.outShape };
}

function maxPool(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { x } = inputsOf(args.inputs, 'x');
    const p = allFloat(x) ? poolShape(x.shape, args.attrs as unknown as tfc.MaxPoolAttrs) : undefined;
    if (!p) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const y = backend.makeOutput(p.out, 'float32');
    native.maxPool(heapOf(backend), at(backend, x), at(backend, y), ...p.shape);
    return y;
  };
}

function maxPoolGrad(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { dy, input } = inputsOf(args.inputs, 'dy', 'input');
    const p = allFloat(dy, input) ? poolShape(input.shape, args.attrs as unknown as tfc.MaxPoolGradAttrs) : undefined;
    if (!p || p.out.join() !== dy.shape.join()) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const dx = backend.makeOutput(input.shape.slice(), 'float32');
    native.maxPoolGrad(heapOf(backend), at(backend, dy), at(backend, input), at(backend, dx), ...p.shape);
    return dx;
  };
}

/** Statistics (and scale, offset) of shape [C] for x [..., C]: per-channel, what the addon handles. */
function perChannel(x: TensorInfo, ...stats: (TensorInfo | undefined)[]): number | undefined {
  const channels = x.shape[x.shape.length - 1];
  if (x.shape.length < 1 || channels < 1 || !allFloat(x, ...stats)) return undefined;
  return stats.every((t) => t === undefined || (t.shape.length === 1 && t.shape[0] === channels)) ? channels : undefined;
}

function batchNorm(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { x, mean, variance } = inputsOf(args.inputs, 'x', 'mean', 'variance');
    const { offset, scale } = args.inputs;
    const channels = perChannel(x, mean, variance, offset, scale);
    if (channels === undefined || sizeOf(x.shape) === 0) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const { varianceEpsilon } = args.attrs as unknown as tfc.FusedBatchNormAttrs;
    const y = backend.makeOutput(x.shape.slice(), 'float32');
    native.batchNorm(heapOf(backend), at(backend, x), at(backend, mean), at(backend, variance), at(backend, offset), at(backend, scale), at(backend, y),
      sizeOf(x.shape) / channels, channels, varianceEpsilon);
    return y;
  };
}

function batchNormGrad(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { dy, x, mean, variance } = inputsOf(args.inputs, 'dy', 'x', 'mean', 'variance');
    const { scale } = args.inputs;
    const channels = perChannel(x, mean, variance, scale);
    if (channels === undefined || dy.shape.join() !== x.shape.join() || !allFloat(dy) || sizeOf(x.shape) === 0) {
      return fallback.config.kernelFunc(args) as TensorInfo[];
    }
    const { varianceEpsilon } = args.attrs as unknown as tfc.FusedBatchNormAttrs;
    const outs = [backend.makeOutput(x.shape.slice(), 'float32'), ...[0, 1, 2, 3].map(() => backend.makeOutput([channels], 'float32'))];
    const [dx, dMean, dVariance, dScale, dOffset] = outs.map((o) => at(backend, o));
    native.batchNormGrad(heapOf(backend), at(backend, dy), at(backend, x), at(backend, mean), at(backend, variance), at(backend, scale),
      dx, dMean, dVariance, dScale, dOffset, sizeOf(x.shape) / channels, channels, varianceEpsilon);
    return outs;
  };
}

/** Sum or Mean over leading axes ([N,H,W] of NHWC: bias gradients, statistics); anything else falls back. */
function reduceLeading(native: NativeKernels, fallback: KernelRef, mean: boolean): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { x } = inputsOf(args.inputs, 'x');
    const { axis, keepDims } = args.attrs as unknown as tfc.SumAttrs;
    const r = leadingReduction(x.shape, axis, keepDims);
    if (!r || r.rows === 0 || r.cols === 0 || x.dtype !== 'float32') return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const out = backend.makeOutput(r.outShape, 'float32');
    native.sumRows(heapOf(backend), at(backend, x), at(backend, out), r.rows, r.cols, mean ? 1 / r.rows : 1);
    return out;
  };
}

/**
 * a + b where b is a bias: [C] (or [1, …, 1, C]) against a [..., C], the layers' unfused bias add
 * while training (Conv2D and Dense with an activation). Everything else (other broadcasts,
 * int32, the bias on the left) falls back to the stock kernel.
 */
function biasAdd(native: NativeKernels, fallback: KernelRef): tfc.KernelFunc {
  return (args: KernelArgs) => {
    const backend = args.backend as HeapBackend;
    const { a, b } = inputsOf(args.inputs, 'a', 'b');
    const channels = a.shape[a.shape.length - 1];
    const isBias = a.shape.length >= 1 && b.shape.length >= 1 && b.shape.length <= a.shape.length && b.shape[b.shape.length - 1] === channels && sizeOf(b.shape) === channels;
    if (!isBias || !allFloat(a, b) || sizeOf(a.shape) === 0) return fallback.run(args.inputs, args.attrs ?? {}, backend);
    const out = backend.makeOutput(a.shape.slice(), 'float32');
    native.biasAdd(heapOf(backend), at(backend, a), at(backend, b), at(backend, out), sizeOf(a.shape) / channels, channels);
    return out;
  };
}

/** One kernel config per name, each falling back to the kernel it replaces. */
export function nativeKernelConfigs(native: NativeKernels, fallbacks: Fallbacks): tfc.KernelConfig[] {
  const funcs: Record<NativeKernelName, tfc.KernelFunc> = {
    Conv2D: forward(native, fallbacks.Conv2D, false),
    FusedConv2D: forward(native, fallbacks.FusedConv2D, true),
    Conv2DBackpropInput: backpropInput(native, fallbacks.Conv2DBackpropInput),
    Conv2DBackpropFilter: backpropFilter(native, fallbacks.Conv2DBackpropFilter),
    BatchMatMul: matMul(native, fallbacks.BatchMatMul, false),
    _FusedMatMul: matMul(native, fallbacks._FusedMatMul, true),
    MaxPool: maxPool(native, fallbacks.MaxPool),
    MaxPoolGrad: maxPoolGrad(native, fallbacks.MaxPoolGrad),
    FusedBatchNorm: batchNorm(native, fallbacks.FusedBatchNorm),
    DtrainFusedBatchNormGrad: batchNormGrad(native, fallbacks.DtrainFusedBatchNormGrad),
    Sum: reduceLeading(native, fallbacks.Sum, false),
    Mean: reduceLeading(native, fallbacks.Mean, true),
    Add: biasAdd(native, fallbacks.Add),
  };
  // The fallback's setup (the stock kernels bind their wasm functions there) runs when ours is set up.
  return NATIVE_KERNEL_NAMES.map((kernelName) => ({ kernelName, backendName: WASM, kernelFunc: funcs[kernelName], setupFunc: fallbacks[kernelName].config.setupFunc }));
}
