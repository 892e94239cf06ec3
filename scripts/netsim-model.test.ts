import { describe, expect, it } from 'vitest';
import { coordinatorCeiling, efficiencyAt, features, fitModel, fitNonNegative, largestK, predictCommMs, type Fit, type ModelProfile, type NetsimRun } from './netsim-model.ts';

function run(over: Partial<NetsimRun>): NetsimRun {
  return {
    model: 'lenet', dtype: 'float32', rateGbit: 1, workers: 4, stepsMeasured: 8, ms: 0, computeMs: 10, commMs: 0, optimizerMs: 1,
    bytesOut: 1e6, bytesIn: 1e6, samples: 128, ifaceBytesPerStep: 0, loadStart: [0, 0, 0], loadEnd: [0, 0, 0], wallSeconds: 1, ...over,
  };
}

describe('the network model fit', () => {
  it('recovers the terms that generated the data', () => {
    // comm = 2 + 0.5·K + 1.2·wireMs + 3e-7·bytes + 1e-5·converted
    const truth = [2, 0.5, 1.2, 3e-7, 1e-5];
    const runs: NetsimRun[] = [];
    for (const model of ['mlp', 'lenet']) {
      for (const dtype of ['float32', 'float16'] as const) {
        for (const rateGbit of [1, 10]) {
          for (const workers of [1, 4]) {
            const r = run({ model, dtype, rateGbit, workers, bytesOut: workers * (model === 'mlp' ? 1.6e6 : 2.5e5) * (dtype === 'float32' ? 1 : 0.5), bytesIn: 0 });
            r.commMs = features(r).reduce((s, f, i) => s + f * truth[i], 0);
            runs.push(r);
          }
        }
      }
    }
    const fit = fitModel(runs, 'free');
    expect(fit.rmseMs).toBeLessThan(1e-6);
    expect(Object.values(fit.coefficients).map((c, i) => c / truth[i])).toEqual(truth.map(() => expect.closeTo(1, 6)));
    expect(predictCommMs(fit, runs[3])).toBeCloseTo(runs[3].commMs, 6);
    // Held at β = 1, the other terms absorb the missing 0.2·wire and the fit is no longer exact.
    const held = fitModel(runs);
    expect(held.coefficients.beta).toBe(1);
    expect(held.rmseMs).toBeGreaterThan(1e-3);
  });

  it('holds β at 1 and recovers the rest when the wire runs at the link rate', () => {
    const truth = [2, 0.5, 1, 3e-7, 1e-5];
    const runs = [1, 10].flatMap((rateGbit) =>
      [1, 2, 4].flatMap((workers) =>
        (['float32', 'float16'] as const).map((dtype) => {
          const r = run({ dtype, rateGbit, workers, bytesOut: workers * (dtype === 'float32' ? 6e5 : 3.5e5) * (rateGbit === 1 ? 1 : 1.3), bytesIn: 0 });
          r.commMs = features(r).reduce((s, f, i) => s + f * truth[i], 0);
          return r;
        }),
      ),
    );
    const fit = fitModel(runs);
    expect(fit.rmseMs).toBeLessThan(1e-6);
    expect(Object.values(fit.coefficients).map((c, i) => c / truth[i])).toEqual(truth.map(() => expect.closeTo(1, 6)));
  });

  it('drops a term that would fit negative instead of using it', () => {
    // y = 1 + 2x exactly, with a second regressor that would need a negative weight to help.
    const x = [[1, 0, 5], [1, 1, 3], [1, 2, 4], [1, 3, 1]];
    const y = [1, 3, 5, 7];
    const { coefficients } = fitNonNegative(x, y);
    expect(coefficients[0]).toBeCloseTo(1, 9);
    expect(coefficients[1]).toBeCloseTo(2, 9);
    expect(coefficients[2]).toBe(0);
  });
});

describe('projections', () => {
  // A link bound: 0.4 ms latency, wire at exactly the rate, nothing else.
  const bound: Fit = { coefficients: { alpha0: 0.4, alpha1: 0, beta: 1, gamma: 0, delta: 0 }, rmseMs: 0, runs: 0, withoutOptimizer: true };
  const p: ModelProfile = { model: 'lenet', computeMs: 10, optimizerMs: 1, bytesPerWorker: { float32: 1e5 } };

  it('finds the largest K whose efficiency stays at 90%', () => {
    // At 10 Gbit/s a worker's 100 kB take 0.08 ms: 10 / (10 + 0.4 + 0.08·K) >= 0.9 while 0.4 + 0.08·K <= 1.11, up to K = 8.
    expect(largestK(bound, p, 'float32', 10)).toBe(8);
    expect(efficiencyAt(bound, p, 'float32', 10, 8)).toBeGreaterThanOrEqual(0.9);
    expect(efficiencyAt(bound, p, 'float32', 10, 9)).toBeLessThan(0.9);
    // At 1 Gbit/s one worker's 0.8 ms on the wire plus the latency is already over 10%.
    expect(largestK(bound, p, 'float32', 1)).toBe(0);
  });

  it('puts the ceiling where the coordinator link is full', () => {
    const c = coordinatorCeiling(p, 'float32', 10, 32);
    expect(c.imagesPerSecond).toBeCloseTo(32 / 0.08e-3, 6); // 400,000 img/s
    expect(c.crossoverK).toBeCloseTo(125, 9);
  });
});
