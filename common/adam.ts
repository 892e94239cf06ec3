/**
 * Adam on flat Float32Arrays, with tfjs's (and Keras's) defaults and tfjs's update formula:
 *   m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g²
 *   w −= lr · (m / (1−b1^t)) / (sqrt(v / (1−b2^t)) + ε)
 * The coordinator runs this once per step over every trainable weight. Where WebAssembly SIMD is
 * available (Node 16.4+), a four-lane float32 kernel does it (common/adam-simd.ts), with both
 * moments living in the kernel's memory; with the native kernels installed (common/gradient-passes.ts)
 * their loop does the same on the arrays where they lie; elsewhere a scalar loop does the same arithmetic.
 */
import { ConfigError } from './errors.ts';
import { assertLength } from './weights.ts';
import { simdAdamKernel, type AdamKernel } from './adam-simd.ts';
import { native } from './gradient-passes.ts';

export interface AdamConfig {
  learningRate: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

export const ADAM_DEFAULTS: AdamConfig = { learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };

/** Everything needed to continue bit for bit: the step count and both moments. */
export interface AdamState {
  step: number;
  m: Float32Array;
  v: Float32Array;
}

const PAGE = 64 * 1024;

/** Four arrays of the padded size in one WebAssembly memory: weights, gradient, m, v. */
class SimdBuffers {
  readonly w: Float32Array;
  readonly g: Float32Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly bytes: number;

  private constructor(readonly kernel: AdamKernel, memory: WebAssembly.Memory, padded: number) {
    this.bytes = padded * 4;
    const at = (k: number) => new Float32Array(memory.buffer, k * this.bytes, padded);
    [this.w, this.g, this.m, this.v] = [at(0), at(1), at(2), at(3)];
  }

  static create(size: number): SimdBuffers | undefined {
    // Padding to whole lanes: padded gradients are 0, so padded weights never move.
    const padded = Math.ceil(size / 4) * 4;
    const memory = new WebAssembly.Memory({ initial: Math.max(1, Math.ceil((padded * 16) / PAGE)) });
    const kernel = simdAdamKernel(memory);
    return kernel && new SimdBuffers(kernel, memory, padded);
  }
}

export class Adam {
  readonly config: AdamConfig;
  private step_ = 0;
  private readonly m: Float32Array;
  private readonly v: Float32Array;
  private readonly simd: SimdBuffers | undefined;

  constructor(readonly size: number, config: Partial<AdamConfig> = {}, options: { simd?: boolean } = {}) {
    this.config = { ...ADAM_DEFAULTS, ...config };
    const { learningRate, beta1, beta2, epsilon } = this.config;
    if (!(learningRate > 0)) throw new ConfigError(`Adam learning rate must be > 0, got ${learningRate}.`);
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new ConfigError(`Adam betas must be in [0, 1), got ${beta1} and ${beta2}.`);
    if (!(epsilon > 0)) throw new ConfigError(`Adam epsilon must be > 0, got ${epsilon}.`);
    this.simd = options.simd === false ? undefined : SimdBuffers.create(size);
    this.m = this.simd ? this.simd.m.subarray(0, size) : new Float32Array(size);
    this.v = this.simd ? this.simd.v.subarray(0, size) : new Float32Array(size);
  }

  get step(): number {
    return this.step_;
  }

  /** Which arithmetic runs: 'simd' (float32 lanes: WebAssembly, or the native kernels' loop, bit for bit the same) or 'scalar' (JavaScript). */
  get kind(): 'simd' | 'scalar' {
    return this.simd ? 'simd' : 'scalar';
  }

  /** Whether the SIMD arithmetic runs natively, on the arrays where they lie (common/gradient-passes.ts). */
  get runsNative(): boolean {
    return this.simd !== undefined && native() !== undefined;
  }

  /** Applies one update in place: `weights` and `gradient` cover the trainable weights only. */
  apply(weights: Float32Array, gradient: Float32Array): void {
    assertLength('trainable weights', weights.length, this.size);
    assertLength('gradient', gradient.length, this.size);
    const t = ++this.step_;
    const { learningRate, beta1, beta2, epsilon } = this.config;
    // The bias corrections, folded into two scalars outside the loop (in float64, as tfjs does).
    const stepSize = learningRate / (1 - Math.pow(beta1, t));
    const sqrtCorrection = 1 / Math.sqrt(1 - Math.pow(beta2, t));
    const kernels = this.simd && native();
    if (kernels) {
      // No copies: the SIMD kernel needs its operands in its own memory, the native one does not.
      kernels.adamInPlace(weights, gradient, this.m, this.v, beta1, beta2, 1 - beta1, 1 - beta2, stepSize, sqrtCorrection, epsilon);
      return;
    }
    if (this.simd) {
      const s = this.simd;
      s.w.set(weights);
      s.g.set(gradient);
      s.kernel(s.bytes, 0, s.bytes, 2 * s.bytes, 3 * s.bytes, 0, 2 * s.bytes, 3 * s.bytes, beta1, beta2, 1 - beta1, 1 - beta2, stepSize, sqrtCorrection, epsilon);
      weights.set(s.w.subarray(0, this.size));
      return;
    }
    const { m, v } = this;
    const a1 = 1 - beta1;
    const a2 = 1 - beta2;
    for (let i = 0; i < weights.length; i++) {
      const g = gradient[i];
      const mi = (m[i] = beta1 * m[i] + a1 * g);
      const vi = (v[i] = beta2 * v[i] + a2 * g * g);
      weights[i] -= (stepSize * mi) / (Math.sqrt(vi) * sqrtCorrection + epsilon);
    }
  }

  snapshot(): AdamState {
    return { step: this.step_, m: this.m.slice(), v: this.v.slice() };
  }

  restore(state: AdamState): void {
    assertLength('Adam first moment', state.m.length, this.size);
    assertLength('Adam second moment', state.v.length, this.size);
    if (!Number.isInteger(state.step) || state.step < 0) throw new ConfigError(`Adam step must be a non-negative integer, got ${state.step}.`);
    this.step_ = state.step;
    this.m.set(state.m);
    this.v.set(state.v);
  }
}
