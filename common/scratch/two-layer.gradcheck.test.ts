/**
 * The hand-written backward pass against central finite differences of the forward pass, for
 * configurations other than the assignment's, so a chain-rule mistake cannot hide behind one
 * set of reference numbers.
 */
import { describe, expect, it } from 'vitest';
import { type Exercise, type Gradients, type Parameters, forward, initialiseExercise, lossAndGradients } from './two-layer.ts';

/** Step for (L(p + h) - L(p - h)) / 2h: truncation ~h^2 and rounding ~1e-17 / h both stay near 1e-12. */
const STEP = 1e-5;
/** The worst error seen over the cases below is 4e-12; a wrong chain-rule factor shows up near 1e-4. */
const TOLERANCE = 1e-10;

/** Every scalar parameter as a (read, write) pair, in one fixed order. */
function parameterSlots(params: Parameters): Array<{ name: string; get: () => number; set: (v: number) => void }> {
  const slots: Array<{ name: string; get: () => number; set: (v: number) => void }> = [];
  params.W1.forEach((row, j) =>
    row.forEach((_, k) => slots.push({ name: `W1[${j}][${k}]`, get: () => row[k], set: (v) => (row[k] = v) })),
  );
  params.b1.forEach((_, j) => slots.push({ name: `b1[${j}]`, get: () => params.b1[j], set: (v) => (params.b1[j] = v) }));
  params.W2.forEach((_, j) => slots.push({ name: `W2[${j}]`, get: () => params.W2[j], set: (v) => (params.W2[j] = v) }));
  slots.push({ name: 'b2', get: () => params.b2, set: (v) => (params.b2 = v) });
  return slots;
}

function flatten(g: Gradients): number[] {
  return [...g.W1.flat(), ...g.b1, ...g.W2, g.b2];
}

function finiteDifferences(exercise: Exercise): number[] {
  const { params, X, Y } = exercise;
  return parameterSlots(params).map(({ get, set }) => {
    const original = get();
    set(original + STEP);
    const up = forward(params, X, Y).loss;
    set(original - STEP);
    const down = forward(params, X, Y).loss;
    set(original);
    return (up - down) / (2 * STEP);
  });
}

/** Largest |analytic - numeric| over all parameters, with the name of the worst one. */
function worstDisagreement(exercise: Exercise, analytic: number[]): { name: string; difference: number } {
  const numeric = finiteDifferences(exercise);
  const names = parameterSlots(exercise.params).map((s) => s.name);
  expect(analytic).toHaveLength(numeric.length);
  let worst = { name: '', difference: -1 };
  numeric.forEach((n, i) => {
    const difference = Math.abs(analytic[i] - n);
    if (difference > worst.difference) worst = { name: names[i], difference };
  });
  return worst;
}

describe('backward agrees with central finite differences', () => {
  it.each([
    { seed: 0, samples: 1000, hidden: 3 },
    { seed: 1, samples: 10, hidden: 5 },
    { seed: 42, samples: 200, hidden: 1 },
    { seed: 4294967295, samples: 57, hidden: 8 },
  ])('for %o', (options) => {
    const exercise = initialiseExercise(options);
    const analytic = flatten(lossAndGradients(exercise).gradients);
    const worst = worstDisagreement(exercise, analytic);
    expect(worst.difference, `worst at ${worst.name}`).toBeLessThan(TOLERANCE);
  });

  it('with non-zero biases, which the drawn exercise never has', () => {
    const exercise = initialiseExercise({ seed: 3, samples: 40, hidden: 4 });
    exercise.params.b1 = [0.3, -1.2, 0.05, 2];
    exercise.params.b2 = -0.7;
    const worst = worstDisagreement(exercise, flatten(lossAndGradients(exercise).gradients));
    expect(worst.difference, `worst at ${worst.name}`).toBeLessThan(TOLERANCE);
  });

  it('notices a gradient that is wrong in one entry by as little as 1e-8', () => {
    // Guards the check itself: if it could not fail, the cases above would prove nothing.
    const exercise = initialiseExercise({ seed: 1, samples: 10, hidden: 5 });
    const analytic = flatten(lossAndGradients(exercise).gradients);
    analytic[3] += 1e-8;
    const worst = worstDisagreement(exercise, analytic);
    expect(worst.name).toBe('W1[1][1]');
    expect(worst.difference).toBeGreaterThan(TOLERANCE);
  });
});
