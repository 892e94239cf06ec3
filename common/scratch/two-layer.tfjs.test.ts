/**
 * The hand-written float64 passes against tfjs autograd on the same numbers. tfjs's CPU backend
 * works in float32, so agreement is to about 1e-7 relative; 1e-5 absolute leaves room for the
 * float32 sums over 1000 samples while staying far below the gradients themselves (1e-4 to 1e-2).
 * tfjs is only a referee here: the implementation under test does not import it.
 */
import * as tf from '@tensorflow/tfjs-core';
// tfjs-core alone ships no gradient functions; the umbrella package and tfjs-layers import these.
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import '@tensorflow/tfjs-backend-cpu';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Exercise, type Gradients, initialiseExercise, lossAndGradients } from './two-layer.ts';

const TOLERANCE = 1e-5;

beforeAll(async () => {
  tf.env().set('IS_TEST', true); // silences the "install tfjs-node" banner, nothing else we use
  await tf.setBackend('cpu');
});

let tensorsBefore = 0;
beforeAll(() => {
  tensorsBefore = tf.memory().numTensors;
});
afterAll(() => {
  // Everything below runs inside tidy(); a leak would mean a tensor escaped it.
  expect(tf.memory().numTensors).toBe(tensorsBefore);
});

/** The same network written with tfjs ops, differentiated by tf.grads rather than by hand. */
function tfjsLossAndGradients(exercise: Exercise): { loss: number; gradients: Gradients } {
  return tf.tidy(() => {
    const X = tf.tensor2d(exercise.X);
    const Y = tf.tensor1d(exercise.Y);
    const n = exercise.Y.length;
    const lossOf = (W1: tf.Tensor, b1: tf.Tensor, W2: tf.Tensor, b2: tf.Tensor): tf.Scalar => {
      const H = tf.sigmoid(tf.add(tf.matMul(X, W1 as tf.Tensor2D, false, true), b1));
      const Z2 = tf.add(tf.squeeze(tf.matMul(H, tf.expandDims(W2, 1) as tf.Tensor2D), [1]), b2);
      return tf.div(tf.sum(tf.square(tf.sub(tf.sigmoid(Z2), Y))), 2 * n) as tf.Scalar;
    };
    const { W1, b1, W2, b2 } = exercise.params;
    const inputs = [tf.tensor2d(W1), tf.tensor1d(b1), tf.tensor1d(W2), tf.scalar(b2)];
    const [dW1, db1, dW2, db2] = tf.grads((w1, c1, w2, c2) => lossOf(w1, c1, w2, c2))(inputs);
    const loss = lossOf(inputs[0], inputs[1], inputs[2], inputs[3]);
    return {
      loss: loss.arraySync(),
      gradients: {
        W1: dW1.arraySync() as number[][],
        b1: db1.arraySync() as number[],
        W2: dW2.arraySync() as number[],
        b2: db2.arraySync() as number,
      },
    };
  });
}

function flatten(g: Gradients): number[] {
  return [...g.W1.flat(), ...g.b1, ...g.W2, g.b2];
}

function withBiases(exercise: Exercise): Exercise {
  return { ...exercise, params: { ...exercise.params, b1: exercise.params.b1.map((_, j) => 0.5 - j * 0.4), b2: -0.3 } };
}

describe('hand-written passes agree with tfjs autograd in float32', () => {
  it.each([
    ['the assignment', initialiseExercise()],
    ['seed 1, 10 samples, 5 hidden, non-zero biases', withBiases(initialiseExercise({ seed: 1, samples: 10, hidden: 5 }))],
    ['seed 7, 500 samples, 16 hidden', initialiseExercise({ seed: 7, samples: 500, hidden: 16 })],
  ])('for %s', (_, exercise) => {
    const ours = lossAndGradients(exercise);
    const theirs = tfjsLossAndGradients(exercise);
    expect(Math.abs(ours.loss - theirs.loss)).toBeLessThan(TOLERANCE);
    const a = flatten(ours.gradients);
    const b = flatten(theirs.gradients);
    expect(a).toHaveLength(b.length);
    a.forEach((value, i) => expect(Math.abs(value - b[i]), `entry ${i}`).toBeLessThan(TOLERANCE));
    // The comparison only means something if the gradients are well above the tolerance.
    expect(Math.max(...a.map(Math.abs))).toBeGreaterThan(100 * TOLERANCE);
  });
});
