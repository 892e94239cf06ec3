/**
 * Adam on flat Float32Arrays, with tfjs's (and Keras's) defaults and tfjs's update formula:
 *   m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g²
 *   w −= lr · (m / (1−b1^t)) / (sqrt(v / (1−b2^t)) + ε)
 * The coordinator runs this once per step over every trainable weight, so it is a single tight loop.
 */
import { ConfigError } from './errors.ts';
import { assertLength } from './weights.ts';

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

export class Adam {
  readonly config: AdamConfig;
  private state: AdamState;

  constructor(size: number, config: Partial<AdamConfig> = {}) {
    this.config = { ...ADAM_DEFAULTS, ...config };
    const { learningRate, beta1, beta2, epsilon } = this.config;
    if (!(learningRate > 0)) throw new ConfigError(`Adam learning rate must be > 0, got ${learningRate}.`);
    if (!(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1)) throw new ConfigError(`Adam betas must be in [0, 1), got ${beta1} and ${beta2}.`);
    if (!(epsilon > 0)) throw new ConfigError(`Adam epsilon must be > 0, got ${epsilon}.`);
    this.state = { step: 0, m: new Float32Array(size), v: new Float32Array(size) };
  }

  get step(): number {
    return this.state.step;
  }

  /** Applies one update in place: `weights` and `gradient` cover the trainable weights only. */
  apply(weights: Float32Array, gradient: Float32Array): void {
    const { m, v } = this.state;
    assertLength('trainable weights', weights.length, m.length);
    assertLength('gradient', gradient.length, m.length);
    const t = ++this.state.step;
    const { learningRate, beta1, beta2, epsilon } = this.config;
    // Same float64 scalars as tfjs: bias corrections folded into two factors outside the loop.
    const c1 = 1 / (1 - Math.pow(beta1, t));
    const c2 = 1 / (1 - Math.pow(beta2, t));
    const a1 = 1 - beta1;
    const a2 = 1 - beta2;
    for (let i = 0; i < weights.length; i++) {
      const g = gradient[i];
      const mi = (m[i] = beta1 * m[i] + a1 * g);
      const vi = (v[i] = beta2 * v[i] + a2 * g * g);
      weights[i] -= (learningRate * (mi * c1)) / (Math.sqrt(vi * c2) + epsilon);
    }
  }

  snapshot(): AdamState {
    return { step: this.state.step, m: this.state.m.slice(), v: this.state.v.slice() };
  }

  restore(state: AdamState): void {
    assertLength('Adam first moment', state.m.length, this.state.m.length);
    assertLength('Adam second moment', state.v.length, this.state.v.length);
    if (!Number.isInteger(state.step) || state.step < 0) throw new ConfigError(`Adam step must be a non-negative integer, got ${state.step}.`);
    this.state = { step: state.step, m: state.m.slice(), v: state.v.slice() };
  }
}
