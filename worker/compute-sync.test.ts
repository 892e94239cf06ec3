/**
 * A whole cnn-bn training step split into slices whose BatchNorm sums are exchanged gives the
 * gradient of the unsplit batch: the property behind "the same result at any K". The three slices
 * run one after the other in this thread, so the exchange is replayed: each pass hands every layer
 * the totals recorded in the pass before, until they no longer change (one more pass per layer).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { selectBackend } from '../common/backend.ts';
import { StepComputer, type LayerExchange } from './compute.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { combineMoments, sumVectors } from '../common/batch-moments.ts';

describe('a cnn-bn step over three slices with synchronized BatchNorm', () => {
  beforeAll(async () => {
    await selectBackend('cpu');
  });

  it('has the gradient and loss of the whole batch, which it does not without the exchange', { timeout: 120_000 }, async () => {
    const c = new StepComputer('cnn-bn', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 42));
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 6 }, (_, i) => i * 7), 'dev', 7);
    const whole = await c.train(images, labels);
    const channels = [32, 64, 64, 64];
    const totals = new Map<string, Float64Array>();
    let slices: Awaited<ReturnType<StepComputer['train']>>[] = [];
    // 4 layers forward and backward: 8 exchanges deep, so 9 passes settle every total.
    for (let pass = 0; pass < 9; pass++) {
      const locals = new Map<string, Float64Array[]>();
      slices = [];
      for (let s = 0; s < 3; s++) {
        const exchange: LayerExchange = (layer, phase, local) => {
          const key = `${layer}:${phase}`;
          if (!locals.has(key)) locals.set(key, []);
          locals.get(key)![s] = local;
          return totals.get(key) ?? local;
        };
        const r = await c.train(images.subarray(s * 2 * 3072, (s + 1) * 2 * 3072), labels.subarray(2 * s, 2 * s + 2), { batchNorm: { kind: 'sync', exchange } });
        slices.push({ ...r, gradientSum: r.gradientSum.slice(), stats: r.stats.slice() });
      }
      for (const [key, parts] of locals) {
        const [layer, phase] = key.split(':');
        totals.set(key, phase === 'forward' ? combineMoments(parts, channels[+layer]) : sumVectors(parts, 2 * channels[+layer]));
      }
    }
    expect(slices.reduce((s, r) => s + r.lossSum, 0)).toBeCloseTo(whole.lossSum, 4);
    // Per weight tensor, relative to its largest gradient: float32 rounding of sums in another order.
    for (const e of c.layout.entries.filter((e) => e.trainable)) {
      let diff = 0;
      let scale = 0;
      for (let i = e.offset; i < e.offset + e.size; i++) {
        const summed = slices.reduce((s, r) => s + r.gradientSum[i], 0);
        diff = Math.max(diff, Math.abs(summed - whole.gradientSum[i]));
        scale = Math.max(scale, Math.abs(whole.gradientSum[i]));
      }
      expect(diff / scale, e.name).toBeLessThan(1e-6);
    }
    // Without the exchange, each slice normalizes with its own moments: the gradient is another.
    const unsynced: Float32Array[] = [];
    for (let s = 0; s < 3; s++) unsynced.push((await c.train(images.subarray(s * 2 * 3072, (s + 1) * 2 * 3072), labels.subarray(2 * s, 2 * s + 2))).gradientSum.slice());
    const e0 = c.layout.entries[0];
    let unsyncedDiff = 0;
    for (let i = e0.offset; i < e0.offset + e0.size; i++) unsyncedDiff = Math.max(unsyncedDiff, Math.abs(unsynced[0][i] + unsynced[1][i] + unsynced[2][i] - whole.gradientSum[i]));
    expect(unsyncedDiff).toBeGreaterThan(1e-2);
    c.dispose();
  });
});
