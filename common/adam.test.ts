import { describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { Adam, ADAM_DEFAULTS } from './adam.ts';
import { ConfigError, ShapeError } from './errors.ts';
import { SeededRandom } from './random.ts';

/** Bit patterns, so that -0, +0 and every last ulp count as different. */
function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

function randomArray(rng: SeededRandom, n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.next() * 2 - 1) * scale;
  return a;
}

describe('Adam: hand-computed steps', () => {
  // lr = 0.1, beta1 = 0.8, beta2 = 0.9, epsilon = 1e-7 (as tfjs's adam_optimizer_test, plus a real ε).
  const config = { learningRate: 0.1, beta1: 0.8, beta2: 0.9, epsilon: 1e-7 };

  it('takes the first step from zero moments as worked out by hand', () => {
    const adam = new Adam(2, config);
    const w = new Float32Array([1, 2]);
    adam.apply(w, new Float32Array([2, 4]));
    // t = 1, g = [2, 4]
    // m = 0.8·0 + 0.2·g        = [0.4, 0.8]
    // v = 0.9·0 + 0.1·g²       = [0.4, 1.6]
    // m̂ = m / (1 − 0.8)        = [2, 4]
    // v̂ = v / (1 − 0.9)        = [4, 16]    sqrt(v̂) = [2, 4]
    // Δ = 0.1·m̂ / (sqrt(v̂) + ε) = [0.2/(2+1e-7), 0.4/(4+1e-7)] = [0.099999995, 0.0999999975]
    // w = [1 − 0.099999995, 2 − 0.0999999975] = [0.900000005, 1.9000000025]
    expect(adam.step).toBe(1);
    expect(w[0]).toBeCloseTo(0.900000005, 6);
    expect(w[1]).toBeCloseTo(1.9000000025, 6);
    const { m, v } = adam.snapshot();
    expect(m[0]).toBeCloseTo(0.4, 6);
    expect(m[1]).toBeCloseTo(0.8, 6);
    expect(v[0]).toBeCloseTo(0.4, 6);
    expect(v[1]).toBeCloseTo(1.6, 6);
  });

  it('takes a second step with the bias corrections of t = 2', () => {
    const adam = new Adam(2, config);
    const w = new Float32Array([1, 2]);
    adam.apply(w, new Float32Array([2, 4]));
    adam.apply(w, new Float32Array([-2, 0]));
    // t = 2, g = [-2, 0], starting from m = [0.4, 0.8], v = [0.4, 1.6], w = [0.900000005, 1.9000000025]
    // m = 0.8·[0.4, 0.8] + 0.2·[-2, 0] = [0.32 − 0.4, 0.64]  = [-0.08, 0.64]
    // v = 0.9·[0.4, 1.6] + 0.1·[4, 0]  = [0.36 + 0.4, 1.44] = [0.76, 1.44]
    // 1 − 0.8² = 0.36, 1 − 0.9² = 0.19
    // m̂ = [-0.08/0.36, 0.64/0.36] = [-2/9, 16/9]
    // v̂ = [0.76/0.19, 1.44/0.19]  = [4, 144/19]    sqrt(v̂) = [2, 12/sqrt(19)]
    // m̂/sqrt(v̂) = [-1/9, (16/9)·sqrt(19)/12] = [-0.1111111, 4·sqrt(19)/27] = [-0.1111111, 0.6457628065]
    // ε shifts these by under 3e-9, below the tolerance.
    // w = [0.900000005 + 0.01111111, 1.9000000025 − 0.06457628065] = [0.911111116, 1.835423722]
    expect(adam.step).toBe(2);
    expect(w[0]).toBeCloseTo(0.911111116, 6);
    expect(w[1]).toBeCloseTo(1.835423722, 6);
    const { m, v } = adam.snapshot();
    expect(m[0]).toBeCloseTo(-0.08, 6);
    expect(m[1]).toBeCloseTo(0.64, 6);
    expect(v[0]).toBeCloseTo(0.76, 6);
    expect(v[1]).toBeCloseTo(1.44, 6);
  });

  it('moves every weight by about lr on the first step, whatever the gradient scale', () => {
    // t = 1: m̂ = g and v̂ = g², so Δ = lr·g/(|g| + ε) = lr·sign(g)·(1 − ε/|g|), and ε/|g| ≤ 2e-7 here.
    const adam = new Adam(3, { ...config, learningRate: 0.01 });
    const w = new Float32Array([0, 0, 0]);
    adam.apply(w, new Float32Array([0.5, -50, 7]));
    expect(w[0]).toBeCloseTo(-0.01, 6);
    expect(w[1]).toBeCloseTo(0.01, 6);
    expect(w[2]).toBeCloseTo(-0.01, 6);
  });

  it("uses tfjs's and Keras's defaults when no config is given", () => {
    expect(new Adam(1).config).toEqual({ learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 });
    expect(ADAM_DEFAULTS).toEqual({ learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 });
  });
});

describe("Adam: agreement with tfjs's Adam", () => {
  it('matches tf.train.adam over 20 steps of random gradients within 1e-6 relative, without leaking tensors', async () => {
    await tf.setBackend('cpu');
    const size = 257;
    const steps = 20;
    const rng = new SeededRandom(1234);
    // Weights away from zero, so a relative tolerance means something.
    const initial = new Float32Array(size);
    for (let i = 0; i < size; i++) initial[i] = (rng.next() < 0.5 ? -1 : 1) * (0.5 + rng.next());
    const gradients = Array.from({ length: steps }, (_, s) => randomArray(rng, size, s % 3 === 0 ? 10 : 0.1));

    const tensorsBefore = tf.memory().numTensors;
    const optimizer = tf.train.adam(0.001, 0.9, 0.999, 1e-7);
    const initialTensor = tf.tensor1d(initial);
    const variable = tf.variable(initialTensor, true, 'adam_test_w');
    initialTensor.dispose();
    const ours = new Adam(size, { learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 });
    const weights = initial.slice();

    let tensorsAfterFirstStep = -1;
    for (let s = 0; s < steps; s++) {
      const g = tf.tensor1d(gradients[s]);
      optimizer.applyGradients([{ name: 'adam_test_w', tensor: g }]);
      g.dispose();
      ours.apply(weights, gradients[s]);
      // The first step creates tfjs's moment accumulators; after that the count must stay put.
      if (s === 0) tensorsAfterFirstStep = tf.memory().numTensors;
      else expect(tf.memory().numTensors).toBe(tensorsAfterFirstStep);
    }

    const expected = variable.dataSync() as Float32Array;
    let worst = 0;
    for (let i = 0; i < size; i++) worst = Math.max(worst, Math.abs(weights[i] - expected[i]) / Math.abs(expected[i]));
    expect(worst).toBeLessThan(1e-6);
    // The comparison must be about something: the weights did move.
    let moved = 0;
    for (let i = 0; i < size; i++) moved = Math.max(moved, Math.abs(weights[i] - initial[i]));
    expect(moved).toBeGreaterThan(1e-3);

    optimizer.dispose();
    variable.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });
});

describe('Adam: snapshot and restore', () => {
  it('continues bit for bit after restoring a snapshot into a fresh optimizer', () => {
    const rng = new SeededRandom(99);
    const size = 64;
    const grads = Array.from({ length: 10 }, () => randomArray(rng, size, 1));
    const start = randomArray(rng, size, 1);

    const straight = new Adam(size);
    const w = start.slice();
    for (let s = 0; s < 5; s++) straight.apply(w, grads[s]);
    const saved = straight.snapshot();
    const weightsAtStep5 = w.slice();
    for (let s = 5; s < 10; s++) straight.apply(w, grads[s]);

    const resumed = new Adam(size);
    resumed.restore(saved);
    expect(resumed.step).toBe(5);
    const w2 = weightsAtStep5.slice();
    for (let s = 5; s < 10; s++) resumed.apply(w2, grads[s]);

    expect(resumed.step).toBe(10);
    expect(bits(w2)).toEqual(bits(w));
    expect(bits(resumed.snapshot().m)).toEqual(bits(straight.snapshot().m));
    expect(bits(resumed.snapshot().v)).toEqual(bits(straight.snapshot().v));
  });

  it('hands out a snapshot that later steps do not change', () => {
    const adam = new Adam(2);
    const w = new Float32Array([1, 1]);
    adam.apply(w, new Float32Array([1, 1]));
    const saved = adam.snapshot();
    const m = saved.m.slice();
    adam.apply(w, new Float32Array([5, 5]));
    expect(saved.step).toBe(1);
    expect(bits(saved.m)).toEqual(bits(m));
  });

  it('keeps its own copy of a restored state', () => {
    const adam = new Adam(2);
    const state = { step: 3, m: new Float32Array([0.5, 0.5]), v: new Float32Array([1, 1]) };
    adam.restore(state);
    state.m.fill(123);
    expect(Array.from(adam.snapshot().m)).toEqual([0.5, 0.5]);
  });
});

describe('Adam: invalid input', () => {
  it.each([
    ['a zero learning rate', { learningRate: 0 }, /learning rate must be > 0, got 0/],
    ['a negative learning rate', { learningRate: -0.1 }, /learning rate must be > 0, got -0.1/],
    ['a NaN learning rate', { learningRate: NaN }, /learning rate must be > 0, got NaN/],
    ['beta1 of 1', { beta1: 1 }, /betas must be in \[0, 1\), got 1 and 0.999/],
    ['a negative beta2', { beta2: -0.5 }, /betas must be in \[0, 1\), got 0.9 and -0.5/],
    ['a zero epsilon', { epsilon: 0 }, /epsilon must be > 0, got 0/],
  ])('rejects %s with a ConfigError naming the value', (_, config, message) => {
    expect(() => new Adam(4, config)).toThrow(ConfigError);
    expect(() => new Adam(4, config)).toThrow(message);
  });

  it('rejects weights of the wrong length, naming expected and actual', () => {
    const adam = new Adam(3);
    const apply = () => adam.apply(new Float32Array(4), new Float32Array(3));
    expect(apply).toThrow(ShapeError);
    expect(apply).toThrow('Expected trainable weights of 3 float32 values, but got 4.');
  });

  it('rejects a gradient of the wrong length, naming expected and actual', () => {
    const adam = new Adam(3);
    expect(() => adam.apply(new Float32Array(3), new Float32Array(2))).toThrow('Expected gradient of 3 float32 values, but got 2.');
  });

  it('does not count a rejected step', () => {
    const adam = new Adam(3);
    expect(() => adam.apply(new Float32Array(3), new Float32Array(2))).toThrow(ShapeError);
    expect(adam.step).toBe(0);
  });

  it('rejects a snapshot whose moments have the wrong length', () => {
    const adam = new Adam(3);
    expect(() => adam.restore({ step: 1, m: new Float32Array(2), v: new Float32Array(3) })).toThrow('Expected Adam first moment of 3 float32 values, but got 2.');
    expect(() => adam.restore({ step: 1, m: new Float32Array(3), v: new Float32Array(5) })).toThrow('Expected Adam second moment of 3 float32 values, but got 5.');
  });

  it.each([-1, 1.5, NaN])('rejects a snapshot whose step is %s', (step) => {
    const adam = new Adam(2);
    const restore = () => adam.restore({ step, m: new Float32Array(2), v: new Float32Array(2) });
    expect(restore).toThrow(ConfigError);
    expect(restore).toThrow(`Adam step must be a non-negative integer, got ${step}.`);
  });
});

describe('Adam: the WebAssembly SIMD kernel against the scalar loop', () => {
  it('runs the SIMD kernel on this Node', () => {
    expect(new Adam(10).kind).toBe('simd');
    expect(new Adam(10, {}, { simd: false }).kind).toBe('scalar');
  });

  // 1,003 parameters: not a multiple of the four lanes, so the padding is exercised too.
  it('agrees with the scalar loop over 30 steps to float32 rounding, for a size that is not a multiple of 4', () => {
    const n = 1003;
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
    const wSimd = Float32Array.from({ length: n }, rand);
    const wScalar = wSimd.slice();
    const start = wSimd.slice();
    const simd = new Adam(n, { learningRate: 0.01 });
    const scalar = new Adam(n, { learningRate: 0.01 }, { simd: false });
    for (let step = 0; step < 30; step++) {
      const g = Float32Array.from({ length: n }, () => rand() * 0.1);
      simd.apply(wSimd, g);
      scalar.apply(wScalar, g);
    }
    // Each step moves a weight by up to lr = 0.01; float32 against float64 arithmetic differs by
    // rounding only, far below one step.
    let worst = 0;
    let moved = 0;
    for (let i = 0; i < n; i++) {
      worst = Math.max(worst, Math.abs(wSimd[i] - wScalar[i]));
      moved = Math.max(moved, Math.abs(wSimd[i] - start[i]));
    }
    expect(moved).toBeGreaterThan(0.05);
    expect(worst).toBeLessThan(1e-5);
    const a = simd.snapshot();
    const b = scalar.snapshot();
    for (let i = 0; i < n; i += 97) expect(a.v[i]).toBeCloseTo(b.v[i], 6);
  });
});
