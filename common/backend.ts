/**
 * Compute backend selection. `auto` tries the fastest backend first and falls back, recording why
 * each one was skipped: tfjs-node-gpu, tfjs-node, webgpu, wasm, cpu. The native and webgpu packages
 * are optional: they are loaded by name at run time and never required.
 */
import { tf } from './tf.ts';
import { BackendError, ConfigError } from './errors.ts';
import { activeKernelSet, installTrainingKernels, type KernelSelection } from './kernels/native/install-native.ts';
import { installCpuConv2DBackpropFilter } from './kernels/cpu-conv2d-backprop-filter.ts';
import { prepareWebGpu, destroyWebGpuDevice, adapterName, type AdapterDescription } from './webgpu.ts';

import { BACKEND_CHOICES, type BackendChoice } from './config.ts';

export { BACKEND_CHOICES, type BackendChoice };

export interface BackendSelection {
  /** The tfjs backend name now active: tensorflow, webgpu, wasm or cpu. */
  name: string;
  /** Which package provided it, e.g. "@tensorflow/tfjs-node-gpu". */
  source: string;
  /** Why each faster candidate was skipped. */
  skipped: { backend: string; reason: string }[];
  /** The WebGPU adapter, when the backend is webgpu. */
  adapter?: AdapterDescription;
  /** On wasm: which kernel set computes (native oneDNN or our wasm kernels) and why. */
  kernels?: KernelSelection;
}

export function parseBackendChoice(value: string): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new ConfigError(`--backend must be one of ${BACKEND_CHOICES.join(', ')}, got "${value}".`);
}

interface LoadContext {
  /** The backend was named on the command line (not auto): accept what auto would skip. */
  forced: boolean;
}

interface Candidate {
  backend: string;
  source: string;
  /** Loads the package; may return the WebGPU adapter it chose. */
  load(ctx: LoadContext): Promise<void | AdapterDescription>;
}

/** Loaders given in place of `import(name)`: a bundle that carries a package, or a test's mock. */
const providedModules = new Map<string, () => Promise<unknown>>();

/** Makes `name` load through `loader` instead of a dynamic import (bundles, tests). */
export function provideModule(name: string, loader: (() => Promise<unknown>) | undefined): void {
  if (loader) providedModules.set(name, loader);
  else providedModules.delete(name);
}

// Package names live in variables so bundlers and the type checker do not insist they exist.
async function importOptional(name: string): Promise<unknown> {
  const provided = providedModules.get(name);
  return provided ? provided() : import(name);
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
      // Auto-selection skips software adapters (lavapipe, SwiftShader, fallback/CPU adapters):
      // on them our wasm kernels are faster. `--backend webgpu` still takes them.
      load: ({ forced }) => prepareWebGpu({ allowSoftware: forced, importModule: importOptional }),
    },
  ],
  wasm: [
    {
      backend: 'wasm',
      source: '@tensorflow/tfjs-backend-wasm',
      load: async () => {
        await importOptional('@tensorflow/tfjs-backend-wasm');
        installTrainingKernels();
      },
    },
  ],
  cpu: [
    {
      backend: 'cpu',
      source: '@tensorflow/tfjs-backend-cpu',
      load: async () => {
        await importOptional('@tensorflow/tfjs-backend-cpu');
        installCpuConv2DBackpropFilter(); // the stock one is ~100x slower (kernels/cpu-conv2d-backprop-filter.ts)
      },
    },
  ],
};

const AUTO_ORDER: Exclude<BackendChoice, 'auto'>[] = ['tensorflow', 'webgpu', 'wasm', 'cpu'];

function reasonOf(err: unknown): string {
  const e = err as { code?: string; message?: string };
  if (e?.code === 'ERR_MODULE_NOT_FOUND' || e?.code === 'MODULE_NOT_FOUND') return 'package not installed';
  return (e?.message ?? String(err)).split('\n')[0].slice(0, 200);
}

export interface SelectOptions {
  /** Try only the backends after this one in auto's order: the fallback when it failed a real step. */
  after?: Exclude<BackendChoice, 'auto'>;
}

/** The backends tried, in order: auto's list, the one named, or those after a failed one. */
export function candidateKinds(choice: BackendChoice, options: SelectOptions = {}): Exclude<BackendChoice, 'auto'>[] {
  if (options.after) return AUTO_ORDER.slice(AUTO_ORDER.indexOf(options.after) + 1);
  return choice === 'auto' ? AUTO_ORDER : [choice];
}

export async function selectBackend(choice: BackendChoice, options: SelectOptions = {}): Promise<BackendSelection> {
  const kinds = candidateKinds(choice, options);
  const forced = choice !== 'auto' && !options.after;
  const skipped: BackendSelection['skipped'] = [];
  for (const kind of kinds) {
    for (const c of CANDIDATES[kind]) {
      try {
        const adapter = await c.load({ forced });
        if (!(await tf.setBackend(c.backend))) throw new Error(`tf.setBackend('${c.backend}') returned false`);
        await tf.ready();
        return { name: tf.getBackend(), source: c.source, skipped, ...(adapter ? { adapter } : {}), ...(c.backend === 'wasm' ? { kernels: activeKernelSet() } : {}) };
      } catch (err) {
        skipped.push({ backend: `${c.backend} (${c.source})`, reason: reasonOf(err) });
      }
    }
  }
  const detail = skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ');
  throw new BackendError(`No compute backend could be loaded for --backend ${choice}. Tried ${detail}.`);
}

/** One line for logs: the backend, its webgpu adapter, and why faster ones were skipped. */
export function describeSelection(s: BackendSelection): string {
  const what = s.adapter ? `${s.name} (${s.source}, adapter ${adapterName(s.adapter)})` : `${s.name} (${s.source})`;
  return s.skipped.length ? `${what}; skipped ${s.skipped.map((k) => `${k.backend}: ${k.reason}`).join('; ')}` : what;
}

/**
 * Disposes a backend and, for webgpu, destroys its device: Dawn keeps the process alive while a
 * device exists. Called at exit and before falling back to the next backend.
 */
export function releaseBackend(name: string): void {
  const backend = tf.engine().registry[name];
  if (!backend) return;
  tf.removeBackend(name);
  if (name === 'webgpu') destroyWebGpuDevice(backend);
}
