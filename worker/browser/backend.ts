/**
 * The browser's compute backend: the first that loads of WebGPU, WebGL and WebAssembly (with
 * dtrain's training kernels), then plain JavaScript as a last resort. Like common/backend.ts for
 * Node, it records why each faster one was skipped. Browser only: it touches `navigator`.
 */
import { tf } from '../../common/tf.ts';
import { installWasmTrainingKernels } from '../../common/kernels/install.ts';

export const BROWSER_BACKENDS = ['webgpu', 'webgl', 'wasm', 'cpu'] as const;
export type BrowserBackend = (typeof BROWSER_BACKENDS)[number];

export interface BrowserSelection {
  name: BrowserBackend;
  skipped: { backend: BrowserBackend; reason: string }[];
}

interface GpuNavigator {
  gpu?: { requestAdapter(): Promise<unknown> };
}

/** Loads a backend's package and registers it; throws with the reason it cannot be used. */
const LOADERS: Record<BrowserBackend, (wasmPath: string) => Promise<void>> = {
  webgpu: async () => {
    const gpu = (navigator as unknown as GpuNavigator).gpu;
    if (!gpu) throw new Error('this browser has no navigator.gpu');
    if (!(await gpu.requestAdapter())) throw new Error('no WebGPU adapter (no GPU, or it is disabled)');
    await import('@tensorflow/tfjs-backend-webgpu');
  },
  webgl: async () => {
    await import('@tensorflow/tfjs-backend-webgl');
  },
  wasm: async (wasmPath) => {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // The .wasm files come from the coordinator (the page works offline), never from a CDN.
    wasm.setWasmPaths(wasmPath);
    installWasmTrainingKernels();
  },
  cpu: async () => {},
};

/** `only` forces one backend (the page's ?backend=...); otherwise the first that works wins. */
export async function selectBrowserBackend(wasmPath: string, only?: BrowserBackend): Promise<BrowserSelection> {
  const skipped: BrowserSelection['skipped'] = [];
  for (const backend of only ? [only] : BROWSER_BACKENDS) {
    try {
      await LOADERS[backend](wasmPath);
      if (!(await tf.setBackend(backend))) throw new Error(`tf.setBackend('${backend}') returned false`);
      await tf.ready();
      return { name: backend, skipped };
    } catch (err) {
      skipped.push({ backend, reason: ((err as Error)?.message ?? String(err)).split('\n')[0].slice(0, 200) });
    }
  }
  throw new Error(`No compute backend loaded in this browser: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`);
}

export function parseBrowserBackend(value: string | null): BrowserBackend | undefined {
  if (value === null || value === '' || value === 'auto') return undefined;
  if ((BROWSER_BACKENDS as readonly string[]).includes(value)) return value as BrowserBackend;
  throw new Error(`backend must be one of auto, ${BROWSER_BACKENDS.join(', ')}, got "${value}".`);
}
