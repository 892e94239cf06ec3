/**
 * WebGPU in Node: Dawn's bindings (the `webgpu` package) stand in for a browser's navigator.gpu,
 * and tfjs-backend-webgpu runs on them. This module finds the adapter, decides whether it is worth
 * using (a software adapter such as Mesa's lavapipe is slower than our wasm kernels), hands that
 * same adapter to tfjs, and destroys the device at the end so the process can exit on its own.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** What an adapter says about itself (GPUAdapterInfo, plus Dawn's isFallbackAdapter). */
export interface AdapterDescription {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for a fallback adapter: in Dawn, one whose adapter type is CPU. */
  isFallbackAdapter: boolean;
}

interface GpuAdapterLike {
  info?: Record<string, unknown>;
  isFallbackAdapter?: boolean;
}
export interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<GpuAdapterLike | null>;
}
export interface DawnModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

// Names of CPU implementations of Vulkan/WebGPU: Mesa's lavapipe (reports "llvmpipe"), softpipe,
// Google's SwiftShader, Microsoft's WARP.
const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|microsoft basic render|\bwarp\b/i;

export function describeAdapter(adapter: GpuAdapterLike): AdapterDescription {
  const info = adapter.info ?? {};
  const text = (k: string) => (typeof info[k] === 'string' ? (info[k] as string) : '');
  return {
    vendor: text('vendor'),
    architecture: text('architecture'),
    device: text('device'),
    description: text('description'),
    isFallbackAdapter: info.isFallbackAdapter === true || adapter.isFallbackAdapter === true,
  };
}

/** Why this adapter runs on the CPU, or undefined for a real GPU. */
export function softwareAdapterReason(a: AdapterDescription): string | undefined {
  const name = adapterName(a);
  if (a.isFallbackAdapter) return `${name} is a fallback (CPU) adapter`;
  if (a.architecture.toLowerCase() === 'software' || a.architecture.toLowerCase() === 'cpu') return `${name} is a software (CPU) adapter`;
  if (SOFTWARE_NAMES.test(`${a.vendor} ${a.device} ${a.description}`)) return `${name} is a software (CPU) Vulkan driver`;
  return undefined;
}

export function adapterName(a: AdapterDescription): string {
  return [a.vendor, a.description || a.device].filter(Boolean).join(' ') || 'unnamed adapter';
}

/** Dawn prints a warning of its own when the loader is missing, so look before loading it. */
export function findLibrary(name: string): boolean {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib64', '/lib', '/usr/local/lib', '/usr/local/nvidia/lib64'];
  return dirs.some((d) => existsSync(join(d, name)));
}

export interface WebGpuOptions {
  /** Accept a software adapter (--backend webgpu); auto-selection does not. */
  allowSoftware: boolean;
  /** Loads Dawn's module and tfjs-backend-webgpu (by name by default; a bundle passes its own). */
  importModule(name: string): Promise<unknown>;
}

/**
 * Finds the adapter and registers tfjs's webgpu backend on it, or throws saying why not. The
 * adapter checked here is the one tfjs gets: navigator.gpu is a wrapper that returns it.
 */
export async function prepareWebGpu(options: WebGpuOptions): Promise<AdapterDescription> {
  if (process.platform === 'linux' && !findLibrary('libvulkan.so.1')) throw new Error('no Vulkan loader (libvulkan.so.1) on this machine: WebGPU needs one, and a GPU driver');
  const dawn = (await options.importModule('webgpu')) as DawnModule;
  const gpu = dawn.create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter (needs a GPU driver and a Vulkan loader, libvulkan.so.1)');
  const described = describeAdapter(adapter);
  const software = softwareAdapterReason(described);
  if (software && !options.allowSoftware) throw new Error(`${software}, slower than wasm here; --backend webgpu forces it`);
  Object.assign(globalThis, dawn.globals);
  if (!('navigator' in globalThis)) Object.defineProperty(globalThis, 'navigator', { value: {}, writable: true, configurable: true });
  // The wrapper holds Dawn's GPU object too: if it were garbage-collected, Dawn would tear its
  // instance down under the live device (the process then dies in a mutex assertion or SIGSEGV).
  const wrapper: GpuLike & { dawn: GpuLike } = { requestAdapter: async () => adapter, dawn: gpu };
  (globalThis as unknown as { navigator: { gpu?: GpuLike } }).navigator.gpu = wrapper;
  // tfjs-backend-webgpu registers its backend at import time, only if navigator.gpu exists.
  await options.importModule('@tensorflow/tfjs-backend-webgpu');
  return described;
}

interface WebGpuBackendLike {
  device?: { destroy(): void };
}

/** Destroys the webgpu backend's device (tfjs's dispose leaves it alive, and Dawn with it). */
export function destroyWebGpuDevice(backend: unknown): void {
  const device = (backend as WebGpuBackendLike | undefined)?.device;
  if (device && typeof device.destroy === 'function') device.destroy();
}
