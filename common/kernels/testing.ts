/**
 * Test helpers for the wasm kernels: both backends in one process, deterministic data, and a
 * norm-wise relative comparison. Values cross backends as plain arrays, never as tensors.
 */
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import { tf, type Tensor } from '../tf.ts';
import { installWasmTrainingKernels } from './install.ts';
import { installTrainingKernels, uninstallNativeKernels } from './native/install-native.ts';

/** `wasm`: our wasm kernels only; `onednn`: the wasm backend with the native kernels over them. */
export type Backend = 'cpu' | 'wasm' | 'onednn';

export async function use(backend: Backend): Promise<void> {
  if (backend === 'wasm') {
    uninstallNativeKernels();
    installWasmTrainingKernels();
  }
  if (backend === 'onednn') {
    const selection = installTrainingKernels();
    if (selection.set !== 'onednn') throw new Error(`The native kernels are not available: ${selection.reason}`);
  }
  const name = backend === 'onednn' ? 'wasm' : backend;
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
}

/** A small deterministic generator (mulberry32), so a failing shape can be rerun exactly. */
export class TestRandom {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
  /** Uniform in [-1, 1). */
  array(n: number): Float32Array {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = this.next() * 2 - 1;
    return a;
  }
}

export interface Computed {
  values: Float32Array[];
  shapes: number[][];
}

/** Runs `f` (which builds its tensors from plain arrays) on `backend` and reads every output back. */
export async function on(backend: Backend, f: () => Tensor[]): Promise<Computed> {
  await use(backend);
  return tf.tidy(() => {
    const outs = f();
    return { values: outs.map((t) => Float32Array.from(t.dataSync())), shapes: outs.map((t) => t.shape) };
  });
}

/** max|a − b| / max(max|b|, floor): a norm-wise relative error that tolerates exact zeros. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-6): number {
  if (a.length !== b.length) return Infinity;
  let diff = 0;
  let scale = floor;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= diff)) diff = d; // also catches NaN
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** Asserts wasm and cpu agree output by output; returns the worst relative error for reporting. */
export function worstError(wasm: Computed, cpu: Computed): number {
  if (wasm.values.length !== cpu.values.length) throw new Error(`Expected ${cpu.values.length} outputs, but got ${wasm.values.length}.`);
  let worst = 0;
  wasm.values.forEach((v, i) => {
    if (wasm.shapes[i].join(',') !== cpu.shapes[i].join(',')) {
      throw new Error(`Output ${i}: expected shape [${cpu.shapes[i]}], but got [${wasm.shapes[i]}].`);
    }
    worst = Math.max(worst, relativeError(v, cpu.values[i]));
  });
  return worst;
}
