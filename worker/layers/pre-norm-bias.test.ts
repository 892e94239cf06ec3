import { afterAll, describe, expect, it } from 'vitest';
import { tf, tfc, tfl, type Tensor } from '../../common/tf.ts';
import { combineMoments, sumVectors } from '../../common/batch-moments.ts';
import { SeededRandom } from '../../common/random.ts';
import { identityExchange, syncBatchNorm, type PhaseExchange } from './sync-batch-norm.ts';
import { inactiveMinority, preNormActivation, PreNormBiasGradients } from './pre-norm-bias.ts';

const EPS = 1e-3;
const ROWS = 60;

function randomArray(n: number, seed: number, scale = 1, shift = 0): Float32Array {
  const r = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => (r.next() * 2 - 1) * scale + shift);
}

/** Dense 3 → 4 with a bias that makes channel 0 active on every row, channel 1 on none, 2 and 3 on some. */
function denseLayer(activation: 'relu' | 'linear'): tfl.layers.Layer {
  const layer = tfl.layers.dense({ units: 4, activation, inputShape: [3] });
  tf.tidy(() => {
    layer.apply(tf.zeros([1, 3]));
    layer.setWeights([tf.tensor2d(randomArray(12, 5), [3, 4]), tf.tensor1d([20, -20, 0.1, -0.2])]);
  });
  return layer;
}

/**
 * The bias gradient of Σ BN(layer(x))·w (synchronized BatchNorm over the rows of `x`, whose other
 * slices answer through `exchange`), as tfjs computes it or through the tap.
 */
function biasGradient(layer: tfl.layers.Layer, x: Tensor, w: Tensor, tapped: boolean, exchange: PhaseExchange = identityExchange): Float32Array {
  const vars = layer.trainableWeights.map((v) => (v as unknown as { val: tfc.Variable }).val);
  const biases = new PreNormBiasGradients();
  try {
    return tf.tidy(() => {
      const gamma = tf.tensor1d([1.5, 0.7, 1, 2]);
      const beta = tf.tensor1d([0.1, 0.2, -0.3, 0]);
      const { grads } = tf.variableGrads(() => {
        const y = layer.apply(x) as Tensor;
        const tap = tapped ? biases.tap(layer, y) : { y, observeMoments: () => {} };
        const out = syncBatchNorm(tap.y, gamma, beta, EPS, (phase, local) => {
          const totals = exchange(phase, local);
          if (phase === 'forward') tap.observeMoments(totals);
          return totals;
        });
        return tf.sum(tf.mul(out.y, w)) as tfc.Scalar;
      }, vars);
      if (tapped) biases.substitute(grads);
      return grads[vars[1].name].dataSync().slice() as Float32Array;
    });
  } finally {
    biases.dispose();
  }
}

describe('which layers feed a BatchNorm through a tappable bias', () => {
  it('takes Conv2D and Dense with a bias and relu or no activation, and nothing else', () => {
    expect(preNormActivation(tfl.layers.conv2d({ filters: 2, kernelSize: 3, activation: 'relu' }))).toBe('relu');
    expect(preNormActivation(tfl.layers.dense({ units: 2 }))).toBe('linear');
    expect(preNormActivation(tfl.layers.dense({ units: 2, activation: 'sigmoid' }))).toBeUndefined();
    expect(preNormActivation(tfl.layers.dense({ units: 2, activation: 'relu', useBias: false }))).toBeUndefined();
    expect(preNormActivation(tfl.layers.maxPooling2d({ poolSize: 2 }))).toBeUndefined();
  });
});

describe('inactiveMinority', () => {
  it('is true where mean² ≥ variance (then at least half the rows are active), false at mean 0', () => {
    // N = 4; means 2, 0, 0.5, 1; M2 = 4, 0, 4, 4 → variances 1, 0, 1, 1; mean² 4, 0, 0.25, 1.
    const moments = Float64Array.from([4, 2, 0, 0.5, 1, 4, 0, 4, 4]);
    expect(inactiveMinority(moments, 4)).toEqual([true, false, false, true]);
  });
});

describe('the bias gradient of a layer that feeds synchronized BatchNorm', () => {
  const x = tf.tensor2d(randomArray(ROWS * 3, 1, 1, 0), [ROWS, 3]);
  const w = tf.tensor2d(randomArray(ROWS * 4, 2), [ROWS, 4]);
  const relu = denseLayer('relu');
  const linear = denseLayer('linear');
  afterAll(() => {
    tf.dispose([x, w]);
    relu.dispose();
    linear.dispose();
  });

  it("is tfjs's gradient up to rounding, and exactly 0 for the channel active on every row", () => {
    const stock = biasGradient(relu, x, w, false);
    const ours = biasGradient(relu, x, w, true);
    // Channel 0: the true gradient is 0, tfjs's is the rounding noise of a cancelling sum.
    expect(ours[0] === 0).toBe(true);
    expect(stock[0]).not.toBe(0);
    expect(Math.abs(stock[0])).toBeLessThan(1e-4);
    // Channel 1 (never active): 0 both ways. Channels 2 and 3: the same gradient, not trivially 0.
    expect(ours[1]).toBe(0);
    expect(stock[1]).toBe(0);
    for (const c of [2, 3]) {
      expect(Math.abs(stock[c])).toBeGreaterThan(1e-2);
      expect(Math.abs(ours[c] - stock[c])).toBeLessThan(1e-5 * Math.abs(stock[c]) + 1e-6);
    }
  });

  it('is exactly 0 without an activation (BatchNorm removes any constant shift)', () => {
    const ours = biasGradient(linear, x, w, true);
    expect(ours.every((v) => v === 0)).toBe(true);
    // tfjs's own: the cancelling sum over every row, not exactly 0.
    expect(biasGradient(linear, x, w, false).some((v) => v !== 0)).toBe(true);
  });

  it("adds up over three slices (sums exchanged) to the whole batch's, channel 0 being 0 in every slice", () => {
    const whole = biasGradient(relu, x, w, true);
    const bounds = [0, 7, 31, ROWS];
    const xs = [0, 1, 2].map((i) => tf.slice(x, bounds[i], bounds[i + 1] - bounds[i]));
    const ws = [0, 1, 2].map((i) => tf.slice(w, bounds[i], bounds[i + 1] - bounds[i]));
    // Replayed in one thread: each pass hands every slice the totals of the pass before.
    const totals: Record<string, Float64Array | undefined> = {};
    let parts: Float32Array[] = [];
    for (let pass = 0; pass < 3; pass++) {
      const locals: Record<string, Float64Array[]> = { forward: [], backward: [] };
      parts = [0, 1, 2].map((i) => biasGradient(relu, xs[i], ws[i], true, (phase, local) => {
        locals[phase][i] = local;
        return totals[phase] ?? local;
      }));
      totals.forward = combineMoments(locals.forward, 4);
      totals.backward = sumVectors(locals.backward, 8);
    }
    for (const p of parts) expect(p[0] === 0).toBe(true);
    for (const c of [2, 3]) expect(Math.abs(parts[0][c] + parts[1][c] + parts[2][c] - whole[c])).toBeLessThan(1e-5 * Math.abs(whole[c]));
    tf.dispose([...xs, ...ws]);
  });

  it('leaves no tensors behind', () => {
    biasGradient(relu, x, w, true);
    const before = tf.memory().numTensors;
    biasGradient(relu, x, w, true);
    expect(tf.memory().numTensors).toBe(before);
  });
});
