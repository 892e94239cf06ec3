import { beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../common/tf.ts';
import { selectBackend } from '../common/backend.ts';
import { EVAL_CACHE_BYTES, StepComputer, evalSubBatch } from './compute.ts';
import type { BackendSegment } from '../common/step-stripe.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import type { ModelName } from '../common/models.ts';

function batch(n: number) {
  const idx = Uint32Array.from({ length: n }, (_, i) => i);
  return generateSynthetic(idx, 'dev', 7);
}

describe('StepComputer', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  for (const model of ['mlp', 'lenet', 'cnn-dropout', 'cnn-bn'] as ModelName[]) {
    it(`does not leak tensors across a ${model} training step`, async () => {
      const c = new StepComputer(model, { kind: 'scale' });
      c.setWeights(initialWeights(c.layout, 1));
      const { images, labels } = batch(8);
      await c.train(images, labels); // warm-up: lazily created kernels and constants
      const before = tf.memory().numTensors;
      const r = await c.train(images, labels);
      await c.evaluate(images, labels);
      expect(tf.memory().numTensors).toBe(before);
      expect(r.gradientSum.length).toBe(c.layout.trainableSize);
      expect(r.gradientSum.some((g) => g !== 0)).toBe(true);
      c.dispose();
    });
  }

  it('evaluates in cache-sized sub-batches: sizes from the largest activation, the result of one pass, no leak', async () => {
    const mlp = new StepComputer('mlp', { kind: 'scale' });
    const cnn = new StepComputer('cnn-dropout', { kind: 'scale' });
    // The mlp's largest tensor is its input (3,072 floats); the CNN's, a convolution output.
    expect(mlp.evalSubBatch).toBe(Math.floor(EVAL_CACHE_BYTES / (4 * 3072)));
    const convFloats = Math.max(...cnn.model.layers.map((l) => (l.outputShape as number[]).slice(1).reduce((a, d) => a * d, 1)));
    expect(convFloats).toBeGreaterThan(3072);
    expect(cnn.evalSubBatch).toBe(Math.floor(EVAL_CACHE_BYTES / (4 * convFloats)));
    expect(evalSubBatch(cnn.model, 1)).toBe(1);
    expect(() => (cnn.evalSubBatch = 0)).toThrow(/at least 1, but got 0/);
    cnn.setWeights(initialWeights(cnn.layout, 5));
    const { images, labels } = batch(23);
    cnn.evalSubBatch = 23;
    const whole = await cnn.evaluate(images, labels);
    for (const sub of [5, 1]) {
      cnn.evalSubBatch = sub;
      const before = tf.memory().numTensors;
      const parts = await cnn.evaluate(images, labels);
      expect(tf.memory().numTensors).toBe(before);
      expect(Buffer.from(parts.predictions).equals(Buffer.from(whole.predictions))).toBe(true);
      expect(parts.correct).toBe(whole.correct);
      expect(parts.count).toBe(23);
      expect(parts.lossSum / whole.lossSum).toBeCloseTo(1, 5);
    }
    mlp.dispose();
    cnn.dispose();
  });

  it('returns gradient sums: twice the batch gives twice the gradient', async () => {
    const c = new StepComputer('mlp', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 3));
    const { images, labels } = batch(4);
    const single = await c.train(images, labels);
    const doubledImages = new Uint8Array(images.length * 2);
    doubledImages.set(images, 0);
    doubledImages.set(images, images.length);
    const doubled = await c.train(doubledImages, Uint8Array.from([...labels, ...labels]));
    expect(doubled.lossSum).toBeCloseTo(2 * single.lossSum, 4);
    for (let i = 0; i < single.gradientSum.length; i += 997) expect(doubled.gradientSum[i]).toBeCloseTo(2 * single.gradientSum[i], 4);
    c.dispose();
  });

  it('reads back exactly the weights it was given', async () => {
    const c = new StepComputer('cnn-bn', { kind: 'scale' });
    const w = initialWeights(c.layout, 5);
    c.setWeights(w);
    expect(await c.readWeights()).toEqual(w);
    c.dispose();
  });

  it("reports each BatchNorm layer's slice mean and variance, and leaves its moving statistics alone", async () => {
    const c = new StepComputer('cnn-bn', { kind: 'scale' });
    const w = initialWeights(c.layout, 5);
    c.setWeights(w);
    const { images, labels } = batch(8);
    const r = await c.train(images, labels);
    expect(r.stats.length).toBe(448);
    // Layer 0 (32 channels, after a relu): means >= 0, variances >= 0 and not all zero.
    expect(r.stats.subarray(0, 32).every((m) => m >= 0)).toBe(true);
    expect(r.stats.subarray(32, 64).every((v) => v >= 0)).toBe(true);
    expect(r.stats.subarray(32, 64).some((v) => v > 0)).toBe(true);
    // The coordinator moves the moving statistics; the worker's copy is untouched.
    expect(await c.readWeights()).toEqual(w);
    c.dispose();
  });

  it("gives the same cnn-bn step with tfjs's local BatchNorm as with the synchronized one on one slice", async () => {
    const c = new StepComputer('cnn-bn', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 6));
    const { images, labels } = batch(6);
    const sync = await c.train(images, labels, { batchNorm: { kind: 'sync' } });
    const local = await c.train(images, labels, { batchNorm: { kind: 'local' } });
    expect(local.lossSum).toBeCloseTo(sync.lossSum, 4);
    let diff = 0;
    let scale = 0;
    for (let i = 0; i < sync.gradientSum.length; i++) {
      diff = Math.max(diff, Math.abs(sync.gradientSum[i] - local.gradientSum[i]));
      scale = Math.max(scale, Math.abs(local.gradientSum[i]));
    }
    expect(diff / scale).toBeLessThan(1e-4);
    for (let i = 0; i < sync.stats.length; i++) expect(local.stats[i]).toBeCloseTo(sync.stats[i], 4);
    c.dispose();
  });

  for (const model of ['mlp', 'cnn-dropout'] as ModelName[]) {
    it(`gives each ${model} step of a run the gradient a fresh computer gives it, though the input and mask arrays are reused`, async () => {
      const run = new StepComputer(model, { kind: 'scale' });
      run.setWeights(initialWeights(run.layout, 5));
      const batches = [0, 1, 2].map((k) => generateSynthetic(Uint32Array.from({ length: 6 }, (_, i) => 6 * k + i), 'dev', 7));
      const inRun = [];
      for (const [k, b] of batches.entries()) inRun.push(await run.train(b.images, b.labels, { position: { seed: 1, step: k, firstSample: 0 } }));
      for (const [k, b] of batches.entries()) {
        const fresh = new StepComputer(model, { kind: 'scale' });
        fresh.setWeights(initialWeights(fresh.layout, 5));
        const alone = await fresh.train(b.images, b.labels, { position: { seed: 1, step: k, firstSample: 0 } });
        expect(Buffer.from(inRun[k].gradientSum.slice().buffer).equals(Buffer.from(alone.gradientSum.slice().buffer)), `step ${k}`).toBe(true);
        fresh.dispose();
      }
      // Different batches, different gradients: a stale array would repeat the first.
      expect(inRun[1].gradientSum).not.toEqual(inRun[0].gradientSum);
      run.dispose();
    });
  }

  it("draws cnn-dropout's masks from the samples' positions: same position, same result; another step, another", async () => {
    const c = new StepComputer('cnn-dropout', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 2));
    const { images, labels } = batch(4);
    const at = { seed: 42, step: 3, firstSample: 8 };
    const a = await c.train(images, labels, { position: at });
    const again = await c.train(images, labels, { position: { ...at } });
    const next = await c.train(images, labels, { position: { ...at, step: 4 } });
    expect(again.gradientSum).toEqual(a.gradientSum);
    expect(next.gradientSum).not.toEqual(a.gradientSum);
    c.dispose();
  });

  for (const model of ['mlp', 'cnn-bn'] as ModelName[]) {
    it(`trainInto writes the same ${model} gradient sums and statistics as train, and leaks no tensors`, async () => {
      const c = new StepComputer(model, { kind: 'scale' });
      c.setWeights(initialWeights(c.layout, 9));
      const { images, labels } = batch(8);
      const packed = await c.train(images, labels);
      const into = { gradientSum: new Float32Array(c.layout.trainableSize).fill(NaN), stats: new Float32Array(packed.stats.length).fill(NaN) };
      await c.trainInto(images, labels, () => into); // warm-up
      const before = tf.memory().numTensors;
      const r = await c.trainInto(images, labels, () => into);
      expect(tf.memory().numTensors).toBe(before);
      expect({ lossSum: r.lossSum, correct: r.correct, count: r.count }).toEqual({ lossSum: packed.lossSum, correct: packed.correct, count: 8 });
      // Copies of the same tensors: equal to the bit, not merely close.
      expect(Buffer.from(into.gradientSum.buffer).equals(Buffer.from(packed.gradientSum.slice().buffer))).toBe(true);
      expect(Array.from(into.stats)).toEqual(Array.from(packed.stats));
      c.dispose();
    });
  }

  it('trainInto writes nothing when the target answers undefined, and refuses a target of the wrong length', async () => {
    const c = new StepComputer('mlp', { kind: 'scale' });
    c.setWeights(initialWeights(c.layout, 9));
    const { images, labels } = batch(4);
    const r = await c.trainInto(images, labels, () => undefined);
    expect(r.count).toBe(4);
    expect(Number.isFinite(r.lossSum)).toBe(true);
    const before = tf.memory().numTensors;
    await expect(c.trainInto(images, labels, () => ({ gradientSum: new Float32Array(3), stats: new Float32Array(0) }))).rejects.toThrow(`${c.layout.trainableSize}`);
    expect(tf.memory().numTensors).toBe(before);
    c.dispose();
  });

  for (const model of ['mlp', 'lenet'] as ModelName[]) {
    it(`hands a ${model} step's gradient where the backend holds it to a BackendGradientUse, whose weights become the model's in new tensors, and leaks no tensors`, async () => {
      const c = new StepComputer(model, { kind: 'scale' });
      c.setWeights(initialWeights(c.layout, 4));
      const { images, labels } = batch(8);
      const copied = await c.train(images, labels);
      const control = new SharedArrayBuffer(8);
      const token = { control, copy: 1 as const, version: 7 };
      const next = initialWeights(c.layout, 5);
      const variables = (c as unknown as { trainable: { dataId: object }[] }).trainable;
      const ids = variables.map((v) => v.dataId);
      let seen: Float32Array | undefined;
      const before = tf.memory().numTensors;
      const r = await c.finishInto(await c.prepareInto(images, labels), () => ({
        gradientSum: new Float32Array(c.layout.trainableSize),
        stats: new Float32Array(0),
        use: (segments) => {
          // The segments are the trainable tensors in layout order, their gradient the one train() copies out.
          seen = new Float32Array(c.layout.trainableSize);
          for (const s of segments!) {
            seen.set(s.gradient, s.from);
            s.weights!.set(next.subarray(s.from, s.from + s.gradient.length));
          }
          return token;
        },
      }));
      expect(tf.memory().numTensors).toBe(before);
      expect(r.lossSum).toBe(copied.lossSum);
      expect(seen).toEqual(copied.gradientSum);
      // What use wrote is the model's weights now, in tensors of their own (kernels may cache by tensor id).
      expect(await c.readWeights()).toEqual(next);
      variables.forEach((v, i) => expect(v.dataId).not.toBe(ids[i]));
      expect(c.holds(token)).toBe(true);
      expect(c.holds({ ...token, version: 8 })).toBe(false);
      expect(c.holds({ ...token, copy: 0 })).toBe(false);
      expect(c.holds({ ...token, control: new SharedArrayBuffer(8) })).toBe(false);
      // Weights set by anyone else are no copy it was told of.
      c.setWeights(next);
      expect(c.holds(token)).toBe(false);
      c.dispose();
    });
  }

  it('keeps its weights and holds no copy when a BackendGradientUse fails or answers none, and refuses one with a reduction grain', async () => {
    const c = new StepComputer('mlp', { kind: 'scale' });
    const w = initialWeights(c.layout, 4);
    c.setWeights(w);
    const { images, labels } = batch(4);
    const token = { control: new SharedArrayBuffer(8), copy: 0 as const, version: 1 };
    const scribble = (segments: BackendSegment[] | undefined) => segments!.forEach((s) => s.weights!.fill(3));
    const target = (use: (segments: BackendSegment[] | undefined) => typeof token | undefined) => () => ({ gradientSum: new Float32Array(c.layout.trainableSize), stats: new Float32Array(0), use });
    await c.finishInto(await c.prepareInto(images, labels), target(() => token));
    expect(c.holds(token)).toBe(true);
    c.setWeights(w);
    const before = tf.memory().numTensors;
    await expect(c.finishInto(await c.prepareInto(images, labels), target((s) => { scribble(s); throw new Error('stripe failed'); }))).rejects.toThrow('stripe failed');
    expect(c.holds(token)).toBe(false);
    await c.finishInto(await c.prepareInto(images, labels), target((s) => { scribble(s); return undefined; }));
    // What it wrote into the new tensors did not become the model's.
    expect(await c.readWeights()).toEqual(w);
    await expect(c.finishInto(await c.prepareInto(images, labels, { grain: 2 }), target(() => token))).rejects.toThrow(/only without a reduction grain/);
    expect(tf.memory().numTensors).toBe(before);
    c.dispose();
  });

  it('copies the gradient into the BackendGradientUse\'s gradientSum and hands it none where the backend cannot lend its tensors (cpu)', async () => {
    await selectBackend('cpu');
    try {
      const c = new StepComputer('mlp', { kind: 'scale' });
      c.setWeights(initialWeights(c.layout, 4));
      const { images, labels } = batch(4);
      const copied = await c.train(images, labels);
      const gradientSum = new Float32Array(c.layout.trainableSize);
      const lent: unknown[] = [];
      await c.finishInto(await c.prepareInto(images, labels), () => ({ gradientSum, stats: new Float32Array(0), use: (segments) => (lent.push(segments), { control: new SharedArrayBuffer(8), copy: 0, version: 1 }) }));
      expect(lent).toEqual([undefined]);
      expect(gradientSum).toEqual(copied.gradientSum);
      // It wrote no weights, so it holds no copy whatever use answered.
      expect(c.holds({ control: new SharedArrayBuffer(8), copy: 0, version: 1 })).toBe(false);
      c.dispose();
    } finally {
      await selectBackend('wasm');
    }
  });

  // A BatchNorm round aborted mid-pass (a partner left: bn-sync-errors.ts) throws out of variableGrads;
  // the step is recomputed, so whatever the aborted pass kept must not outlive it (was ~25-30 MB a time at batch 32).
  for (const phase of ['forward', 'backward'] as const) {
    it(`frees what a cnn-bn step aborted in its second BatchNorm's ${phase} exchange had kept (train and trainInto)`, async () => {
      const c = new StepComputer('cnn-bn', { kind: 'scale' });
      c.setWeights(initialWeights(c.layout, 3));
      const { images, labels } = batch(8);
      const first = await c.train(images, labels); // also the warm-up
      const aborting = () => {
        let calls = 0;
        return {
          kind: 'sync' as const,
          exchange: (_layer: number, p: string, local: Float64Array) => {
            if (p === phase && ++calls === 2) throw new Error('round aborted');
            return local;
          },
        };
      };
      const before = tf.memory().numTensors;
      await expect(c.train(images, labels, { batchNorm: aborting() })).rejects.toThrow('round aborted');
      await expect(c.trainInto(images, labels, () => undefined, { batchNorm: aborting() })).rejects.toThrow('round aborted');
      expect(tf.memory().numTensors).toBe(before);
      // And the next step is unaffected: the same bits as the one before the aborted ones.
      const again = await c.train(images, labels);
      expect(tf.memory().numTensors).toBe(before);
      expect(again.lossSum).toBe(first.lossSum);
      expect(Buffer.from(again.gradientSum.slice().buffer).equals(Buffer.from(first.gradientSum.slice().buffer))).toBe(true);
      c.dispose();
    });
  }

  it('rejects weights of the wrong length, naming both sizes', () => {
    const c = new StepComputer('lenet', { kind: 'scale' });
    expect(() => c.setWeights(new Float32Array(10))).toThrow(/62006.*10/);
    c.dispose();
  });
});

describe('countCorrect', () => {
  it('counts rows whose largest probability is at the label, the first maximum winning ties', async () => {
    const { countCorrect } = await import('./compute.ts');
    const probs = new Float32Array(30);
    probs[3] = 0.9; // row 0 -> 3
    probs[10 + 7] = 0.5; probs[10 + 2] = 0.5; // row 1 -> tie: 2 wins
    probs[20 + 0] = 0.1; // row 2 -> 0
    expect(countCorrect(probs, Uint8Array.from([3, 2, 0]))).toBe(3);
    expect(countCorrect(probs, Uint8Array.from([3, 7, 1]))).toBe(1);
  });
});
