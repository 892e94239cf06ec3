/**
 * Compute backend selection. `auto` tries the fastest backend first and falls back, recording why
 * each one was skipped: tfjs-node-gpu, tfjs-node, webgpu, wasm, cpu. The native and webgpu packages
 * are optional: they are loaded by name at run time and never required.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { tf } from './tf.ts';
import { BackendError, ConfigError } from './errors.ts';
import { installWasmTrainingKernels } from './kernels/install.ts';

export const BACKEND_CHOICES = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

export interface BackendSelection {
  /** The tfjs backend name now active: tensorflow, webgpu, wasm or cpu. */
  name: string;
  /** Which package provided it, e.g. "@tensorflow/tfjs-node-gpu". */
  source: string;
  /** Why each faster candidate was skipped. */
  skipped: { backend: string; reason: string }[];
}

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new ConfigError(`--backend must be one of ${BACKEND_CHOICES.join(', ')}, got "${value}".`);
}

interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

interface Candidate {
  backend: string;
  source: string;
  load(): Promise<void>;
}

// Package names live in variables so bundlers and the type checker do not insist they exist.
async function importOptional(name: string): Promise<unknown> {
  return import(name);
}

const CANDIDATES: Record<Exclude<BackendChoice, 'auto'>, Candidate[]> = {
  tensorflow: [
    { backend: 'tensorflow', source: '@tensorflow/tfjs-node-gpu', load: async () => void (await importOptional('@tensorflow/tfjs-node-gpu')) },
    { backend: 'tensorflow', source: '@tensorflow/tfjs-node', load: async () => void (await importOptional('@tensorflow/tfjs-node')) },
  ],
  webgpu: [
    {
      backend: 'webgpu',
      source: '@tensorflow/tfjs-backend-webgpu',
      load: async () => {
        // Dawn's Node bindings (the `webgpu` package) provide what a browser's navigator.gpu would.
        if (process.platform === 'linux' && !findLibrary('libvulkan.so.1')) throw new Error('no Vulkan loader (libvulkan.so.1) on this machine: WebGPU needs one, and a GPU driver');
        const dawn = (await importOptional('webgpu')) as { create(flags: string[]): GpuLike; globals: Record<string, unknown> };
        const gpu = dawn.create([]);
        // Without a driver (no Vulkan loader, no GPU) there is no adapter: skip before touching globals.
        const adapter = await gpu.requestAdapter();
        if (!adapter) throw new Error('no WebGPU adapter (needs a GPU driver and a Vulkan loader, libvulkan.so.1)');
        Object.assign(globalThis, dawn.globals);
        if (!('navigator' in globalThis)) Object.defineProperty(globalThis, 'navigator', { value: {}, writable: true, configurable: true });
        (globalThis as unknown as { navigator: { gpu?: GpuLike } }).navigator.gpu = gpu;
        await importOptional('@tensorflow/tfjs-backend-webgpu');
      },
    },
  ],
  wasm: [
    {
      backend: 'wasm',
      source: '@tensorflow/tfjs-backend-wasm',
      load: async () => {
        await importOptional('@tensorflow/tfjs-backend-wasm');
        installWasmTrainingKernels();
      },
    },
  ],
  cpu: [{ backend: 'cpu', source: '@tensorflow/tfjs-backend-cpu', load: async () => void (await importOptional('@tensorflow/tfjs-backend-cpu')) }],
};

/** Dawn prints a warning of its own when the loader is missing, so look before loading it. */
function findLibrary(name: string): boolean {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib64', '/lib', '/usr/local/lib', '/usr/local/nvidia/lib64'];
  return dirs.some((d) => existsSync(join(d, name)));
}

const AUTO_ORDER: Exclude<BackendChoice, 'auto'>[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

function reasonOf(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') return 'package not installed';
  return (e?.message ?? String(err)).split('\n')[0].slice(0, 200);
}

export async function selectBackend(choice: BackendChoice): Promise<BackendSelection> {
  const kinds = choice === 'auto' ? AUTO_ORDER : [choice];
  const skipped: BackendSelection['skipped'] = [];
  for (const kind of kinds) {
    for (const c of CANDIDATES[kind]) {
      try {
        await c.load();
        if (!(await tf.setBackend(c.backend))) throw new Error(`tf.setBackend('${c.backend}') returned false`);
        await tf.ready();
        return { name: tf.getBackend(), source: c.source, skipped };
      } catch (err) {
        skipped.push({ backend: `${c.backend} (${c.source})`, reason: reasonOf(err) });
      }
    }
  }
  const detail = skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ');
  throw new BackendError(`No compute backend could be loaded for --backend ${choice}. Tried ${detail}.`);
}
