/**
 * Makes the wasm backend able to train our models, and fast at it. It registers wasm kernels:
 *
 *   Conv2DBackpropFilter   missing on wasm: im2col + GEMM, or a convolution   conv2d-backprop-filter.ts
 *   Conv2DBackpropInput    a convolution, or GEMM + col2im                   conv2d-backprop-input.ts
 *   MaxPoolGrad            one JavaScript pass, first maximum wins            max-pool-grad.ts
 *   BatchMatMul            transposed products on the fast untransposed path  batch-mat-mul.ts
 *   Sum, Mean              over leading axes, without a transpose             reduce-leading.ts
 *   Tile                   block copies                                       tile.ts
 *   FusedBatchNorm         per-channel factors, one pass                      batch-norm.ts
 *   Identity, Cast         share the buffer instead of copying (same dtype)   identity-cast.ts
 *
 * and, for wasm only, reformulates the gradients of Sum and Mean (reduce-gradients.ts) and of
 * FusedBatchNorm (batch-norm-grad.ts, with a kernel of its own). Kernels rather than
 * gradient overrides wherever possible: tfjs reaches the conv backprop kernels from two gradient
 * functions (Conv2D's and FusedConv2D's), and a kernel registered for 'wasm' leaves every other
 * backend untouched by construction. Everything outside the models' configurations (strides, NCHW,
 * other shapes) falls back to the stock kernel. docs/kernels.md has the measurements.
 */
import { tfc } from '../tf.ts';
import { BackendError } from '../errors.ts';
import { batchMatMulConfig } from './batch-mat-mul.ts';
import { fusedBatchNormConfig } from './batch-norm.ts';
import { fusedBatchNormGradKernelConfig, fusedBatchNormGradientOverride } from './batch-norm-grad.ts';
import { conv2DBackpropFilterConfig } from './conv2d-backprop-filter.ts';
import { conv2DBackpropInputConfig } from './conv2d-backprop-input.ts';
import { castConfig, identityConfig } from './identity-cast.ts';
import { maxPoolGradConfig } from './max-pool-grad.ts';
import { naiveConv2DBackpropFilterConfig } from './naive-conv2d-backprop-filter.ts';
import { reduceGradientOverrides } from './reduce-gradients.ts';
import { meanConfig, sumConfig } from './reduce-leading.ts';
import { tileConfig } from './tile.ts';
import { kernelRef, WASM, type GradientOverride } from './wasm-backend.ts';

/** The kernels we replace, as the wasm backend registered them (it has no Conv2DBackpropFilter). */
const REPLACED = [
  'Conv2DBackpropInput',
  'MaxPoolGrad',
  'BatchMatMul',
  'Sum',
  'Mean',
  'Tile',
  'FusedBatchNorm',
  'Identity',
  'Cast',
] as const;

interface Installed {
  stock: Map<string, tfc.KernelConfig>;
  ours: tfc.KernelConfig[];
  gradients: GradientOverride[];
}

let installed: Installed | undefined;
let active: 'ours' | 'stock' = 'stock';

function prepare(): Installed {
  if (installed) return installed;
  const stock = new Map<string, tfc.KernelConfig>();
  for (const name of [...REPLACED, 'Conv2D', 'Transpose']) {
    const config = tfc.getKernel(name, WASM);
    if (config === undefined) {
      throw new BackendError(`Cannot install the wasm training kernels: the wasm backend has no '${name}' kernel; import '@tensorflow/tfjs-backend-wasm' first.`);
    }
    stock.set(name, config);
  }
  const ref = (name: string) => kernelRef(stock.get(name)!);
  const parts = { conv2d: ref('Conv2D'), transpose: ref('Transpose'), batchMatMul: ref('BatchMatMul') };
  const ours = [
    conv2DBackpropFilterConfig(parts),
    conv2DBackpropInputConfig(parts, ref('Conv2DBackpropInput')),
    maxPoolGradConfig(ref('MaxPoolGrad')),
    tileConfig(ref('Tile')),
    batchMatMulConfig(ref('BatchMatMul'), ref('Transpose')),
    sumConfig(ref('Sum')),
    meanConfig(ref('Mean')),
    identityConfig(ref('Identity')),
    castConfig(ref('Cast')),
    fusedBatchNormConfig(ref('FusedBatchNorm')),
    fusedBatchNormGradKernelConfig,
  ];
  installed = { stock, ours, gradients: [...reduceGradientOverrides(), fusedBatchNormGradientOverride()] };
  return installed;
}

/** Registers `config` for wasm in place of what is there, and sets it up if the backend already runs. */
export function registerWasmKernel(config: tfc.KernelConfig): void {
  if (tfc.getKernel(config.kernelName, WASM) !== undefined) tfc.unregisterKernel(config.kernelName, WASM);
  tfc.registerKernel(config);
  // The engine runs setup functions when a backend is selected; a kernel registered after that
  // (a stock kernel put back) must be set up now. Not findBackend: that would start initialising
  // a backend nobody has selected yet.
  const backend = tfc.engine().registry[WASM];
  if (backend !== undefined && config.setupFunc) config.setupFunc(backend);
}

/** Registers our wasm training kernels. Idempotent; call after importing the wasm backend. */
export function installWasmTrainingKernels(): void {
  const { ours, gradients } = prepare();
  const inPlace = ours.every((k) => tfc.getKernel(k.kernelName, WASM) === k) && gradients.every((g) => tfc.getGradient(g.ours.kernelName) === g.ours);
  if (active === 'ours' && inPlace) return;
  for (const k of ours) registerWasmKernel(k);
  for (const g of gradients) tfc.registerGradient(g.ours);
  active = 'ours';
}

/**
 * Puts the stock wasm kernels back, plus the naive JavaScript `Conv2DBackpropFilter` so that
 * convolutions can still train: the "stock tfjs" baseline of scripts/bench-compute.ts and of tests.
 * `installWasmTrainingKernels()` switches back.
 */
export function useStockWasmKernels(): void {
  const { stock, gradients } = prepare();
  for (const name of REPLACED) registerWasmKernel(stock.get(name)!);
  for (const g of gradients) tfc.registerGradient(g.original);
  registerWasmKernel(naiveConv2DBackpropFilterConfig);
  active = 'stock';
}
