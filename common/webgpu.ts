/**
 * WebGPU in Node: Dawn's bindings (the `webgpu` package) stand in for a browser's navigator.gpu,
 * and tfjs-backend-webgpu runs on them. This module finds the adapter, decides whether it is worth
 * using (a software adapter such as Mesa's lavapipe is slower than our wasm kernels), hands that
 * same adapter to tfjs, and destroys the device at the end so the process can exit on its own.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
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
  /** Auto-selection's look at the adapter from another process (default: probeAdapter). */
  probe?: () => Promise<AdapterProbe>;
}

/** What a look at the WebGPU adapter found: its description, or why there is none. */
export type AdapterProbe = { adapter: AdapterDescription } | { adapter: null; reason: string };

/** Where a process passes its probe's verdict on to the threads and processes it starts. */
export const PROBE_ENV = 'DTRAIN_WEBGPU_PROBE';

const NO_ADAPTER = 'no WebGPU adapter (needs a GPU driver and a Vulkan loader, libvulkan.so.1)';

// Run by `node -e` with the path of Dawn's module; prints one JSON line. Dawn's own warnings go to
// the child's stderr, which nobody shows.
const PROBE_SCRIPT = `
const dawn = require(process.argv[1]);
const say = (v) => { process.stdout.write(JSON.stringify(v) + '\\n'); process.exit(0); };
dawn.create([]).requestAdapter({ powerPreference: 'high-performance' }).then((a) => {
  if (!a) return say({ adapter: null });
  const i = a.info || {};
  say({ adapter: { vendor: i.vendor, architecture: i.architecture, device: i.device, description: i.description, isFallbackAdapter: i.isFallbackAdapter === true || a.isFallbackAdapter === true } });
}, (e) => say({ error: String((e && e.message) || e) }));
`;

/** JSON text parsed, or undefined where it is not JSON. */
function parsed(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

/** The adapter in a verdict's `adapter` field (the probe's line, or the environment's copy), if it holds one. */
function adapterIn(v: unknown): AdapterDescription | undefined {
  const a = (v as { adapter?: unknown } | null)?.adapter;
  if (!a || typeof a !== 'object') return undefined;
  return describeAdapter({ info: a as Record<string, unknown>, isFallbackAdapter: (a as { isFallbackAdapter?: unknown }).isFallbackAdapter === true });
}

/** A probe verdict from the environment, or undefined where there is none or it is not one (then the process looks again). */
export function probeFromEnv(raw: string | undefined): AdapterProbe | undefined {
  if (raw === undefined) return undefined;
  const v = parsed(raw) as { adapter?: unknown; reason?: unknown } | null | undefined;
  if (v?.adapter === null && typeof v.reason === 'string') return { adapter: null, reason: v.reason };
  const adapter = adapterIn(v);
  return adapter ? { adapter } : undefined;
}

let probed: Promise<AdapterProbe> | undefined;

/**
 * Looks at the WebGPU adapter in a child process, once per process (and, through DTRAIN_WEBGPU_PROBE,
 * once for the threads and processes started after it). Dawn prints warnings of its own to stderr
 * while it enumerates Vulkan devices: with Mesa's lavapipe installed, two lines about
 * maxDynamic*BuffersPerPipelineLayout; with no GPU, "Failed to detect any valid GPUs". A run that
 * auto-selection then trains on wasm should show none of them, so Dawn comes into this process
 * only for an adapter worth using. Throws MODULE_NOT_FOUND where Dawn's package is not installed.
 */
export function probeAdapter(): Promise<AdapterProbe> {
  const cached = probeFromEnv(process.env[PROBE_ENV]);
  if (cached) return Promise.resolve(cached);
  probed ??= runProbe().then((p) => {
    process.env[PROBE_ENV] = JSON.stringify(p);
    return p;
  });
  return probed;
}

function runProbe(): Promise<AdapterProbe> {
  const dawnPath = createRequire(import.meta.url).resolve('webgpu');
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', PROBE_SCRIPT, dawnPath], { timeout: 60_000, encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout) => {
      const v = parsed(stdout.trim().split('\n').pop() ?? '') as { adapter?: unknown; error?: unknown } | null | undefined;
      const adapter = adapterIn(v);
      if (adapter) return resolve({ adapter });
      if (v?.adapter === null) return resolve({ adapter: null, reason: NO_ADAPTER });
      const why = typeof v?.error === 'string' ? v.error : err ? `the probe process failed: ${err.message.split('\n')[0]}` : 'the probe process said nothing';
      resolve({ adapter: null, reason: `${NO_ADAPTER}: ${why}`.slice(0, 300) });
    });
  });
}

/** Auto-selection's refusal of a CPU adapter. */
function refuseSoftware(adapter: AdapterDescription): void {
  const software = softwareAdapterReason(adapter);
  if (software) throw new Error(`${software}, slower than wasm here; --backend webgpu forces it`);
}

/**
 * Finds the adapter and registers tfjs's webgpu backend on it, or throws saying why not. The
 * adapter checked here is the one tfjs gets: navigator.gpu is a wrapper that returns it.
 */
export async function prepareWebGpu(options: WebGpuOptions): Promise<AdapterDescription> {
  if (process.platform === 'linux' && !findLibrary('libvulkan.so.1')) throw new Error('no Vulkan loader (libvulkan.so.1) on this machine: WebGPU needs one, and a GPU driver');
  if (!options.allowSoftware) {
    const seen = await (options.probe ?? probeAdapter)();
    if (!seen.adapter) throw new Error(seen.reason);
    refuseSoftware(seen.adapter);
  }
  const dawn = (await options.importModule('webgpu')) as DawnModule;
  const gpu = dawn.create([]);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error(NO_ADAPTER);
  const described = describeAdapter(adapter);
  if (!options.allowSoftware) refuseSoftware(described);
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
