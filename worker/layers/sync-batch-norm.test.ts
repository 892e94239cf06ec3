import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from '../../common/tf.ts';
import { combineMoments, sumVectors } from '../../common/batch-moments.ts';
import { SeededRandom } from '../../common/random.ts';
import { identityExchange, localBatchNorm, syncBatchNorm, type PhaseExchange } from './sync-batch-norm.ts';

const EPS = 1e-3;

function randomArray(n: number, seed: number, scale = 1, shift = 0): Float32Array {
  const r = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale + shift);
}

/** Gradients of Σ y·w with respect to x, γ and β, and y itself. */
function run(norm: (x: Tensor, g: Tensor, b: Tensor) => Tensor, x: Tensor, gamma: Tensor, beta: Tensor, w: Tensor): Float32Array[] {
  return tf.tidy(() => {
    const f = (xi: Tensor, gi: Tensor, bi: Tensor) => tf.sum(tf.mul(norm(xi, gi, bi), w));
    const grads = tf.grads(f as (...t: Tensor[]) => Tensor)([x, gamma, beta]);
    return [norm(x, gamma, beta), ...grads].map((t) => t.dataSync() as Float32Array);
  });
}

function relativeError(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

describe('synchronized BatchNorm', () => {
  const shape = [6, 5, 5, 4] as const;
  const size = 6 * 5 * 5 * 4;
  const x = tf.tensor4d(randomArray(size, 1, 3, 0.5), [...shape]);
  const w = tf.tensor4d(randomArray(size, 2), [...shape]);
  const gamma = tf.tensor1d(randomArray(4, 3, 0.5, 1));
  const beta = tf.tensor1d(randomArray(4, 4));

  it("matches tfjs's own BatchNorm and its gradient for one slice (relative error <= 1e-4)", () => {
    const ours = run((a, g, b) => syncBatchNorm(a, g, b, EPS, identityExchange).y, x, gamma, beta, w);
    const stock = run((a, g, b) => localBatchNorm(a, g, b, EPS).y, x, gamma, beta, w);
    const names = ['y', 'dx', 'dgamma', 'dbeta'];
    ours.forEach((o, i) => expect(relativeError(o, stock[i]), names[i]).toBeLessThanOrEqual(1e-4));
    // The gradient is not trivially zero, so the comparison means something.
    expect(Math.max(...ours[1].map(Math.abs))).toBeGreaterThan(1e-2);
  });

  it('gives three slices, with their sums exchanged, the output and gradients of the whole batch', () => {
    const whole = run((a, g, b) => syncBatchNorm(a, g, b, EPS, identityExchange).y, x, gamma, beta, w);
    const bounds = [0, 1, 3, 6]; // slices of 1, 2 and 3 samples
    const xs = bounds.slice(0, 3).map((b0, i) => tf.slice(x, b0, bounds[i + 1] - b0));
    const ws = bounds.slice(0, 3).map((b0, i) => tf.slice(w, b0, bounds[i + 1] - b0));
    // Three rounds in one thread: record the forward moments, then the backward sums, then use both totals.
    const locals: Record<string, Float64Array[]> = { forward: [], backward: [] };
    const totals: Record<string, Float64Array | undefined> = {};
    const exchangeFor = (i: number): PhaseExchange => (phase, local) => {
      locals[phase][i] = local;
      return totals[phase] ?? local;
    };
    const pass = () => xs.map((xi, i) => run((a, g, b) => syncBatchNorm(a, g, b, EPS, exchangeFor(i)).y, xi, gamma, beta, ws[i]));
    pass();
    totals.forward = combineMoments(locals.forward, 4);
    pass();
    totals.backward = sumVectors(locals.backward, 8);
    const sliced = pass();
    const concat = (k: number) => Float32Array.from(sliced.flatMap((s) => Array.from(s[k])));
    expect(relativeError(concat(0), whole[0])).toBeLessThan(1e-6);
    expect(relativeError(concat(1), whole[1])).toBeLessThan(1e-5);
    // dγ and dβ are each slice's share; their sum is the whole batch's.
    for (const k of [2, 3]) {
      const summed = sliced.reduce((acc, s) => acc.map((v, j) => v + s[k][j]), new Float32Array(4));
      expect(relativeError(summed, whole[k])).toBeLessThan(1e-5);
    }
    tf.dispose([...xs, ...ws]);
  });

  it("reports the slice's own mean and biased variance", () => {
    const out = syncBatchNorm(x, gamma, beta, EPS, identityExchange);
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    expect(relativeError(out.mean.dataSync() as Float32Array, mean.dataSync() as Float32Array)).toBeLessThan(1e-6);
    expect(relativeError(out.variance.dataSync() as Float32Array, variance.dataSync() as Float32Array)).toBeLessThan(1e-5);
    tf.dispose([out.y, out.mean, out.variance, mean, variance]);
  });

  it('fails loudly when the exchange returns the wrong number of values', () => {
    expect(() => tf.tidy(() => syncBatchNorm(x, gamma, beta, EPS, () => new Float64Array(3)).y)).toThrow(/Expected moments of 9 values.*got 3/);
  });

  it('keeps no tensors after a forward and backward pass', () => {
    run((a, g, b) => syncBatchNorm(a, g, b, EPS, identityExchange).y, x, gamma, beta, w);
    const before = tf.memory().numTensors;
    run((a, g, b) => syncBatchNorm(a, g, b, EPS, identityExchange).y, x, gamma, beta, w);
    expect(tf.memory().numTensors).toBe(before);
  });
});
