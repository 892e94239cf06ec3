/**
 * The direct backward pass against tfjs's tape: the same loss, probabilities and gradients for mlp
 * and lenet, on the cpu backend (fixed summation order) and on wasm with the kernels dtrain installs,
 * including rows whose label probability the loss clips; no tensor left behind.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../common/tf.ts';
import { selectBackend } from '../common/backend.ts';
import { StepComputer, type TrainOptions, type TrainResult } from './compute.ts';
import { DirectBackprop } from './direct-backprop.ts';
import { buildModel, type ModelName } from '../common/models.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { fitStandardization, type Preprocessing } from '../common/data/preprocess.ts';

function data(n: number) {
  return generateSynthetic(Uint32Array.from({ length: n }, (_, i) => i), 'dev', 11);
}

/** Worst |a − b| over one weight's gradient, relative to the largest |b| of that weight. */
function worstRelative(a: Float32Array, b: Float32Array, layout: StepComputer['layout']): { error: number; weight: string } {
  let worst = { error: 0, weight: '' };
  for (const e of layout.entries.filter((x) => x.offset < layout.trainableSize)) {
    let diff = 0;
    let scale = 0;
    for (let i = e.offset; i < e.offset + e.size; i++) {
      diff = Math.max(diff, Math.abs(a[i] - b[i]));
      scale = Math.max(scale, Math.abs(b[i]));
    }
    const error = scale === 0 ? diff : diff / scale;
    if (error > worst.error) worst = { error, weight: e.name };
  }
  return worst;
}

/** One step of `model` through the direct path and through the tape, from the same weights and batch. */
async function bothPaths(model: ModelName, weights: (w: Float32Array, c: StepComputer) => void = () => {}, opts: TrainOptions = {}) {
  const set = data(24);
  const prep: Preprocessing = model === 'mlp' ? fitStandardization(set) : { kind: 'scale' };
  const direct = new StepComputer(model, prep);
  const tape = new StepComputer(model, prep, { tape: true });
  const w = initialWeights(direct.layout, 5);
  weights(w, direct);
  direct.setWeights(w);
  tape.setWeights(w);
  const a = await direct.train(set.images, set.labels, opts);
  const b = await tape.train(set.images, set.labels, opts);
  const copy = (r: TrainResult) => ({ ...r, gradientSum: r.gradientSum.slice() });
  const result = { direct: copy(a), tape: copy(b), layout: direct.layout, computer: direct };
  tape.dispose();
  return result;
}

describe('the direct backward pass', () => {
  afterAll(async () => {
    await selectBackend('wasm');
  });

  it('takes all four models', () => {
    const planned = (m: ModelName) => {
      const model = buildModel(m);
      const p = DirectBackprop.plan(model);
      model.dispose();
      return p !== undefined;
    };
    expect(['mlp', 'lenet', 'cnn-dropout', 'cnn-bn'].map((m) => planned(m as ModelName))).toEqual([true, true, true, true]);
  });

  it('leaves to the tape what it cannot compute: Dense on rank-3 input, channels-first Flatten', () => {
    const model = (add: (m: ReturnType<typeof tf.sequential>) => void) => {
      const m = tf.sequential();
      add(m);
      m.add(tf.layers.dense({ units: 10, activation: 'softmax' }));
      const p = DirectBackprop.plan(m);
      m.dispose();
      return p !== undefined;
    };
    expect(model((m) => m.add(tf.layers.dense({ inputShape: [4, 6], units: 8, activation: 'relu' })))).toBe(false);
    expect(model((m) => m.add(tf.layers.flatten({ inputShape: [3, 4, 5], dataFormat: 'channelsFirst' })))).toBe(false);
    expect(model((m) => m.add(tf.layers.flatten({ inputShape: [3, 4, 5] })))).toBe(true);
  });

  for (const backend of ['cpu', 'wasm'] as const) {
    for (const model of ['mlp', 'lenet', 'cnn-dropout', 'cnn-bn'] as const) {
      it(`gives ${model} the tape's loss, predictions and gradients (${backend})`, { timeout: 60_000 }, async () => {
        await selectBackend(backend);
        const { direct, tape, layout, computer } = await bothPaths(model);
        expect(Math.abs(direct.lossSum - tape.lossSum) / tape.lossSum).toBeLessThan(1e-6);
        expect(direct.correct).toBe(tape.correct);
        const worst = worstRelative(direct.gradientSum, tape.gradientSum, layout);
        expect(worst.error, worst.weight).toBeLessThan(1e-5);
        expect(direct.gradientSum.some((g) => g !== 0)).toBe(true);
        // BatchNorm's slice statistics, which the coordinator combines into the moving ones.
        expect(direct.stats.length).toBe(tape.stats.length);
        direct.stats.forEach((v, i) => expect(Math.abs(v - tape.stats[i]), `statistic ${i}`).toBeLessThanOrEqual(1e-6 * Math.max(1, Math.abs(tape.stats[i]))));
        computer.dispose();
      });
    }
  }

  it('drops what the tape drops: cnn-dropout\'s masks come from the slice\'s sample position (cpu)', { timeout: 60_000 }, async () => {
    await selectBackend('cpu');
    const position = { seed: 9, step: 4, firstSample: 40 };
    const { direct, tape, layout, computer } = await bothPaths('cnn-dropout', () => {}, { position });
    const worst = worstRelative(direct.gradientSum, tape.gradientSum, layout);
    expect(worst.error, worst.weight).toBeLessThan(1e-5);
    // Another position draws other masks, so another gradient.
    const other = await bothPaths('cnn-dropout', () => {}, { position: { ...position, step: 5 } });
    expect(worstRelative(other.direct.gradientSum, direct.gradientSum, layout).error).toBeGreaterThan(1e-3);
    computer.dispose();
    other.computer.dispose();
  });

  it('gives no gradient through rows whose label probability the loss clips, as the tape (cpu)', { timeout: 60_000 }, async () => {
    await selectBackend('cpu');
    // A last layer 1000 times too large saturates the softmax: most rows' label probability is
    // below 1e-7 or above 1 − 1e-7, where the clip stops the gradient.
    const { direct, tape, layout, computer } = await bothPaths('mlp', (w, c) => {
      const last = c.layout.entries.find((e) => e.name.includes('dense_2') && e.shape.length === 2)!;
      for (let i = last.offset; i < last.offset + last.size; i++) w[i] *= 1000;
    });
    // Saturated: an average loss over 8 needs most label probabilities far below 1e-3, and with
    // logits 1000 times apart those are far below the clip's 1e-7 (its loss is at most 16.1).
    expect(direct.lossSum / 24).toBeGreaterThan(8);
    const worst = worstRelative(direct.gradientSum, tape.gradientSum, layout);
    expect(worst.error, worst.weight).toBeLessThan(1e-5);
    expect(Math.abs(direct.lossSum - tape.lossSum) / tape.lossSum).toBeLessThan(1e-6);
    computer.dispose();
  });

  it('keeps tf.memory() flat over repeated steps (wasm)', async () => {
    await selectBackend('wasm');
    const set = data(8);
    const c = new StepComputer('lenet', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 2));
    await c.train(set.images, set.labels);
    const before = tf.memory();
    for (let i = 0; i < 5; i++) await c.train(set.images, set.labels);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    c.dispose();
  });
});

describe('the direct backward pass with a reduction grain', () => {
  afterAll(async () => {
    await selectBackend('wasm');
  });

  /** trainInto a float64 target with `grain`, for samples [from, to) of `set` at their sample position. */
  async function wide(c: StepComputer, set: ReturnType<typeof data>, from: number, to: number, grain: number): Promise<Float64Array> {
    const out = new Float64Array(c.layout.trainableSize);
    const stats = new Float32Array(c.layout.totalSize - c.layout.trainableSize);
    const images = set.images.subarray(from * 3072, to * 3072);
    await c.trainInto(images, set.labels.subarray(from, to), () => ({ gradientSum: out, stats }), { grain, position: { seed: 3, step: 1, firstSample: from } });
    return out;
  }

  for (const backend of ['cpu', 'wasm'] as const) {
    it(`gives cnn-dropout slices whose float64 sums add up to the whole batch's bit for bit (${backend})`, { timeout: 120_000 }, async () => {
      await selectBackend(backend);
      const set = data(12);
      const c = new StepComputer('cnn-dropout', { kind: 'scale' });
      c.setWeights(initialWeights(c.layout, 4));
      const whole = await wide(c, set, 0, 12, 4);
      // Slices 0-3, 4-7 and 8-11 (K = 3), added as the reduction adds slots: 0 + s_0 + s_1 + s_2.
      const parts = [await wide(c, set, 0, 4, 4), await wide(c, set, 4, 8, 4), await wide(c, set, 8, 12, 4)];
      const summed = whole.map((_, i) => 0 + parts[0][i] + parts[1][i] + parts[2][i]);
      expect(whole.some((g) => g !== 0)).toBe(true);
      let mismatches = 0;
      for (let i = 0; i < whole.length; i++) if (whole[i] !== summed[i]) mismatches++;
      expect(mismatches).toBe(0);
      // Float32 sums of the same slices, as without a grain, do not all agree with the whole batch's.
      const plain = await c.train(set.images, set.labels, { position: { seed: 3, step: 1, firstSample: 0 } });
      const f32 = plain.gradientSum.slice();
      const f32Parts: Float32Array[] = [];
      for (const [from, to] of [[0, 4], [4, 8], [8, 12]]) f32Parts.push((await c.train(set.images.subarray(from * 3072, to * 3072), set.labels.subarray(from, to), { position: { seed: 3, step: 1, firstSample: from } })).gradientSum.slice());
      expect(f32.some((g, i) => g !== Math.fround(Math.fround(f32Parts[0][i] + f32Parts[1][i]) + f32Parts[2][i]))).toBe(true);
      // And the grain's sums are the plain gradient to float32 rounding (relative to each weight's largest).
      const worst = worstRelative(Float32Array.from(whole), f32, c.layout);
      expect(worst.error, worst.weight).toBeLessThan(1e-5);
      c.dispose();
    });
  }

  it('leaves no tensor behind (cnn-bn, cpu)', { timeout: 60_000 }, async () => {
    await selectBackend('cpu');
    const set = data(8);
    const c = new StepComputer('cnn-bn', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 2));
    await wide(c, set, 0, 8, 3);
    const before = tf.memory();
    for (let i = 0; i < 3; i++) await wide(c, set, 0, 8, 3);
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numBytes).toBe(before.numBytes);
    c.dispose();
  });

  it('refuses a grain where the step is recorded on the tape, or read back packed', async () => {
    await selectBackend('cpu');
    const set = data(4);
    const tape = new StepComputer('lenet', { kind: 'scale' }, { tape: true });
    tape.setWeights(initialWeights(tape.layout, 2));
    const target = () => ({ gradientSum: new Float64Array(tape.layout.trainableSize), stats: new Float32Array(0) });
    await expect(tape.trainInto(set.images, set.labels, target, { grain: 2 })).rejects.toMatchObject({ code: 'DTRAIN_ERR_REDUCE_GRAIN', message: expect.stringMatching(/needs the direct backward pass/) });
    await expect(tape.train(set.images, set.labels, { grain: 2 })).rejects.toMatchObject({ code: 'DTRAIN_ERR_REDUCE_GRAIN' });
    tape.dispose();
  });
});
