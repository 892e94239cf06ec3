import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import {
  ASSIGNMENT_EXPECTED,
  ASSIGNMENT_TOLERANCE,
  EXERCISE_DEFAULTS,
  type Gradients,
  forward,
  initialiseExercise,
  lossAndGradients,
  pairwiseSum,
} from './two-layer.ts';

/*
 * Reference values: numpy 2.4.6 on python3 3.11 (OpenBLAS 0.3.31, x86_64), printed by
 *
 *   import numpy as np
 *   def exercise(seed=0, N=1000, hidden=3):
 *       np.random.seed(seed)
 *       W1 = np.random.randn(hidden, 2); b1 = np.zeros(hidden); W2 = np.random.randn(hidden); b2 = 0
 *       X = np.random.rand(N, 2); Y = np.random.randint(0, 2, size=N)
 *       sig = lambda z: 1 / (1 + np.exp(-z))
 *       H = sig(X @ W1.T + b1); Yhat = sig(H @ W2 + b2)
 *       L = np.sum((Yhat - Y) ** 2) / (2 * N)
 *       dZ2 = (Yhat - Y) / N * Yhat * (1 - Yhat)
 *       dZ1 = np.outer(dZ2, W2) * H * (1 - H)
 *       return L, dZ1.T @ X, dZ1.sum(0), H.T @ dZ2, dZ2.sum()
 *   for args in [(), (1, 10, 5)]:
 *       L, dW1, db1, dW2, db2 = exercise(*args)
 *       print(repr(float(L)), dW1.tolist(), db1.tolist(), dW2.tolist(), repr(float(db2)))
 */
const NUMPY_DEFAULT = {
  loss: 0.1332476222330792,
  gradients: {
    W1: [
      [0.0024459584849412094, 0.0026201934201430274],
      [-0.0003076456661379759, -0.00024187502299769856],
      [-0.00034768167796295056, -0.0003719963913779411],
    ],
    b1: [0.004925766627982226, -0.0005802286843354632, -0.0006597650949647065],
    W2: [0.022160112628882813, 0.024330972928015396, 0.01797174137087623],
    b2: 0.029249230265318685,
  },
};

const NUMPY_SEED1_N10_H5 = {
  loss: 0.11512945741743721,
  gradients: {
    W1: [
      [-0.002545896782877689, 0.006586853740216645],
      [0.004628299416443503, -0.007219658617444785],
      [0.0009394302881182418, -0.0005248072951983349],
      [0.0006490146619052013, -0.0017002452569477436],
      [-0.002745974511786988, 0.004973391169261065],
    ],
    b1: [0.0033606290570240703, -0.00197102826872626, 0.0005879206876072626, -0.0008521039280711919, 0.0018762374364476942],
    W2: [-0.002916084908051767, 0.00023988826127977663, -0.0065385629815162966, -0.003790506817843686, 0.0014827638001498502],
    b2: 0.006716164336240017,
  },
};

const GRADIENT_TOLERANCE = 1e-12;

function expectLossWithinRelative(actual: number, expected: number, relative: number): void {
  expect(Math.abs(actual - expected)).toBeLessThanOrEqual(relative * Math.abs(expected));
}

function expectGradientsClose(actual: Gradients, expected: Gradients, tolerance: number): void {
  expect(actual.W1.length).toBe(expected.W1.length);
  actual.W1.forEach((row, j) => row.forEach((v, k) => expect(Math.abs(v - expected.W1[j][k])).toBeLessThanOrEqual(tolerance)));
  expect(actual.b1).toHaveLength(expected.b1.length);
  actual.b1.forEach((v, j) => expect(Math.abs(v - expected.b1[j])).toBeLessThanOrEqual(tolerance));
  expect(actual.W2).toHaveLength(expected.W2.length);
  actual.W2.forEach((v, j) => expect(Math.abs(v - expected.W2[j])).toBeLessThanOrEqual(tolerance));
  expect(Math.abs(actual.b2 - expected.b2)).toBeLessThanOrEqual(tolerance);
}

describe('initialiseExercise', () => {
  it('draws W1, W2, X and Y in the assignment order', () => {
    // np.random.seed(0); W1 = np.random.randn(3, 2); b1 = np.zeros(3); W2 = np.random.randn(3)
    // X = np.random.rand(1000, 2); Y = np.random.randint(0, 2, size=1000)
    // W1.tolist(), W2.tolist(), X[:2].tolist(), Y[:20].tolist()
    const { params, X, Y } = initialiseExercise();
    expect(params.W1).toEqual([
      [1.764052345967664, 0.4001572083672233],
      [0.9787379841057392, 2.240893199201458],
      [1.8675579901499675, -0.977277879876411],
    ]);
    expect(params.b1).toEqual([0, 0, 0]);
    expect(params.W2).toEqual([0.9500884175255894, -0.1513572082976979, -0.10321885179355784]);
    expect(params.b2).toBe(0);
    expect(X).toHaveLength(1000);
    expect(X.slice(0, 2)).toEqual([
      [0.7917250380826646, 0.5288949197529045],
      [0.5680445610939323, 0.925596638292661],
    ]);
    expect(Y.slice(0, 20)).toEqual([1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 1]);
  });

  it('defaults to the assignment configuration', () => {
    expect(EXERCISE_DEFAULTS).toEqual({ seed: 0, samples: 1000, hidden: 3 });
    expect(initialiseExercise({ hidden: 4 }).params.W1).toHaveLength(4);
  });

  it.each([
    [{ samples: 0 }, /samples must be an integer >= 1, got 0/],
    [{ hidden: 2.5 }, /hidden must be an integer >= 1, got 2.5/],
    [{ seed: -1 }, /seed must be an integer/],
  ])('rejects %o', (options, message) => {
    expect(() => initialiseExercise(options)).toThrow(ConfigError);
    expect(() => initialiseExercise(options)).toThrow(message);
  });
});

/** The numbers in the issue, copied by hand rather than imported, so the two cannot drift together. */
const ISSUE = {
  loss: 0.1332476222330792,
  W1: [
    [0.00244596, 0.00262019],
    [-0.00030765, -0.00024188],
    [-0.00034768, -0.000372],
  ],
  b1: [0.00492577, -0.00058023, -0.00065977],
  W2: [0.02216011, 0.02433097, 0.01797174],
  b2: 0.029249230265318688,
};

describe('forward and backward for the assignment (seed 0, N 1000, hidden 3)', () => {
  const result = lossAndGradients(initialiseExercise());

  it('gives the assignment loss to within 1e-15 relative', () => {
    expectLossWithinRelative(result.loss, ISSUE.loss, 1e-15);
    expect(result.loss).toBe(0.1332476222330792); // and in fact bit for bit
  });

  it('gives every gradient entry to within 1e-12 of numpy', () => {
    expectGradientsClose(result.gradients, NUMPY_DEFAULT.gradients, GRADIENT_TOLERANCE);
  });

  it('agrees with the values the assignment printed', () => {
    // W1, b1 and W2 were printed at 8 decimals, so half a unit there; b2 in full.
    expectGradientsClose(result.gradients, { ...ISSUE, b2: result.gradients.b2 }, 5e-9);
    expect(Math.abs(result.gradients.b2 - ISSUE.b2)).toBeLessThanOrEqual(GRADIENT_TOLERANCE);
  });

  it('exports the issue numbers and tolerances the CLI compares against', () => {
    expect(ASSIGNMENT_EXPECTED).toEqual(ISSUE);
    expect(ASSIGNMENT_TOLERANCE).toEqual({ loss: 1e-15 * ISSUE.loss, W1: 5e-9, b1: 5e-9, W2: 5e-9, b2: 1e-12 });
  });
});

describe('forward and backward away from the assignment', () => {
  it('matches numpy for seed 1, 10 samples, 5 hidden units (an odd count of normals for W2)', () => {
    const result = lossAndGradients(initialiseExercise({ seed: 1, samples: 10, hidden: 5 }));
    expectLossWithinRelative(result.loss, NUMPY_SEED1_N10_H5.loss, 1e-15);
    expectGradientsClose(result.gradients, NUMPY_SEED1_N10_H5.gradients, GRADIENT_TOLERANCE);
  });

  it('matches the numpy loss bit for bit for 5000 samples, where summing left to right would not', () => {
    // np.random.seed(5); W1 = np.random.randn(3, 2); W2 = np.random.randn(3)
    // X = np.random.rand(5000, 2); Y = np.random.randint(0, 2, size=5000)
    // sig = lambda z: 1 / (1 + np.exp(-z)); Yh = sig(sig(X @ W1.T) @ W2)
    // repr(np.sum((Yh - Y) ** 2) / (2 * 5000))   (left to right gives 0.14015731905882356)
    expect(lossAndGradients(initialiseExercise({ seed: 5, samples: 5000 })).loss).toBe(0.14015731905882395);
  });

  it('gives zero loss when the network already outputs the labels', () => {
    // With W2 = 0 and b2 = 0 every output is sigmoid(0) = 0.5, so labels of 0.5 give L = 0.
    const params = { W1: [[1, -1]], b1: [0], W2: [0], b2: 0 };
    expect(forward(params, [[0.3, 0.7], [0.1, 0.2]], [0.5, 0.5]).loss).toBe(0);
  });

  it('gives the hand-computed loss for one sample', () => {
    // Z1 = 0, H = 0.5, Z2 = 0.5 * 2 = 1, Yhat = sigmoid(1); L = (sigmoid(1) - 1)^2 / 2.
    const params = { W1: [[0, 0]], b1: [0], W2: [2], b2: 0 };
    const sigmoid1 = 1 / (1 + Math.exp(-1));
    expect(forward(params, [[5, -3]], [1]).loss).toBeCloseTo((sigmoid1 - 1) ** 2 / 2, 15);
  });
});

describe('pairwiseSum', () => {
  it('sums exactly what it is given', () => {
    expect(pairwiseSum([])).toBe(0);
    expect(pairwiseSum([1, 2, 3])).toBe(6);
    expect(pairwiseSum(Array.from({ length: 1000 }, (_, i) => i))).toBe(499500);
  });

  it.each([
    // np.sum(np.array([1e16] + [1.0] * 15)): one block with eight accumulators
    [15, 1.0000000000000014e16],
    // np.sum(np.array([1e16] + [1.0] * 300)): split into blocks of 144 and 157 first
    [300, 1.0000000000000292e16],
  ])('follows numpy summation order for 1e16 followed by %i ones', (ones, expected) => {
    // Left to right, each 1 is lost against 1e16; numpy keeps most of them in other accumulators.
    const values = [1e16, ...new Array<number>(ones).fill(1)];
    expect(values.reduce((a, b) => a + b, 0)).toBe(1e16);
    expect(pairwiseSum(values)).toBe(expected);
  });
});
