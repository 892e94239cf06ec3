/**
 * Chooses the kernel set the wasm backend trains with: our wasm kernels (../install.ts) always,
 * and on top of them the native oneDNN kernels (onednn-kernels.ts) when the optional addon loads.
 * Records which set is active and why, for the `backend_selected` log.
 */
import { tfc } from '../../tf.ts';
import { setStandardizer } from '../../data/preprocess.ts';
import { setNativeStripe } from '../../step-stripe.ts';
import { setGradientPasses } from '../../gradient-passes.ts';
import { installWasmTrainingKernels, registerWasmKernel } from '../install.ts';
import { kernelRef, WASM, type KernelRef } from '../wasm-backend.ts';
import { loadNativeKernels, type NativeKernels } from './addon.ts';
import { NATIVE_KERNEL_NAMES, nativeKernelConfigs, type NativeKernelName } from './onednn-kernels.ts';
import { setNativeBatchNormKernels } from './sync-batch-norm-passes.ts';
import { setNativeReluBackward } from './relu-backward.ts';

export type KernelSet = 'onednn' | 'wasm';

export interface KernelSelection {
  /** `onednn`: the native addon computes convolutions, products, pooling and BatchNorm; `wasm`: our wasm kernels do. */
  set: KernelSet;
  /** Why: the addon's version and ISA, or why it was not used. */
  reason: string;
}

let fallbacks: Map<NativeKernelName, tfc.KernelConfig> | undefined;
const configsByAddon = new WeakMap<NativeKernels, tfc.KernelConfig[]>();
let active: KernelSelection | undefined;

/** The wasm kernels registered under the names the native ones take, captured before any native one is. */
function fallbackConfigs(): Map<NativeKernelName, tfc.KernelConfig> {
  if (fallbacks) return fallbacks;
  const found = new Map<NativeKernelName, tfc.KernelConfig>();
  for (const name of NATIVE_KERNEL_NAMES) {
    const config = tfc.getKernel(name, WASM);
    if (config === undefined) throw new Error(`Cannot install the native kernels: the wasm backend has no '${name}' kernel.`);
    found.set(name, config);
  }
  fallbacks = found;
  return found;
}

/**
 * Installs our wasm training kernels, then the native ones over them if the addon loads
 * (DTRAIN_NATIVE_KERNELS=0 or a missing addon leave the wasm kernels). Call after importing the
 * wasm backend; idempotent.
 */
export function installTrainingKernels(env: NodeJS.ProcessEnv = process.env): KernelSelection {
  const load = loadNativeKernels(env);
  uninstallNativeKernels();
  installWasmTrainingKernels();
  if (!load.loaded) return (active = { set: 'wasm', reason: load.reason });
  const previous = fallbackConfigs();
  let configs = configsByAddon.get(load.kernels);
  if (!configs) {
    const refs = Object.fromEntries(NATIVE_KERNEL_NAMES.map((n) => [n, kernelRef(previous.get(n)!)])) as Record<NativeKernelName, KernelRef>;
    configs = nativeKernelConfigs(load.kernels, refs);
    configsByAddon.set(load.kernels, configs);
  }
  for (const config of configs) registerWasmKernel(config);
  // The mlp's input standardization: 1.7 of 8.2 CPU ms per batch-128 step in JavaScript.
  const native = load.kernels;
  setStandardizer((images, mean, std, out) => native.standardize(images, mean, std, out));
  // Synchronized BatchNorm's moments, backward sums and dx: 20 of 39 CPU ms per cnn-bn step in JavaScript.
  setNativeBatchNormKernels(native);
  setNativeReluBackward(native);
  // The shared-memory step's reduction, Adam and Σ g² in one AVX-512 pass (scripts/bench-stripe.ts, mlp, one slot: 0.12 ms against 0.31 ms plus Σ g² for the SIMD kernels).
  setNativeStripe(native);
  // The message path's passes over gradients and Adam, for an owning thread that runs them.
  setGradientPasses(native);
  return (active = { set: 'onednn', reason: `oneDNN ${load.info.onednn} (${load.info.isa}, ${load.info.threads} thread) from ${load.path}` });
}

/** Puts back the kernels the native ones replaced (our wasm kernels, or stock ones); no-op when none are installed. */
export function uninstallNativeKernels(): void {
  if (active?.set !== 'onednn' || !fallbacks) return;
  for (const config of fallbacks.values()) registerWasmKernel(config);
  setStandardizer(undefined);
  setNativeBatchNormKernels(undefined);
  setNativeReluBackward(undefined);
  setNativeStripe(undefined);
  setGradientPasses(undefined);
  active = { set: 'wasm', reason: 'native kernels uninstalled' };
}

/**
 * A coordinator's passes over gradients and its Adam (common/gradient-passes.ts), native where the
 * addon loads. A coordinator may run no backend at all (its workers compute), so this loads the
 * addon by itself; the training kernels stay as they are. Returns why not, when not.
 */
export function installGradientPasses(env: NodeJS.ProcessEnv = process.env): { native: boolean; reason: string } {
  const load = loadNativeKernels(env);
  setGradientPasses(load.loaded ? load.kernels : undefined);
  return load.loaded ? { native: true, reason: `native, from ${load.path}` } : { native: false, reason: load.reason };
}

/** The kernel set installed last, or undefined before any installTrainingKernels(). */
export function activeKernelSet(): KernelSelection | undefined {
  return active;
}
