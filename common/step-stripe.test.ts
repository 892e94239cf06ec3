import { describe, expect, it } from 'vitest';
import { Adam } from './adam.ts';
import { CTL, F64, StepMemory, stripes, STRIPE_FLOATS } from './step-memory.ts';
import { StripeWorker, bumpCopyVersion, heldToken } from './step-stripe.ts';
import { simdWideReduceKernel } from './reduce-simd.ts';
import { SeededRandom } from './random.ts';
import { aggregateResults } from '../coordinator/aggregate.ts';
import { floatsToBytes } from './codec.ts';
import type { ResultMessage } from './protocol.ts';

function randomArray(rng: SeededRandom, n: number, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (rng.next() * 2 - 1) * scale);
}

/**
 * Runs `steps` steps both ways: the coordinator's (aggregateResults, then Adam.apply, then the
 * statistics copied in) and the shared memory's (stripes over `threads`, ping-ponged), and returns
 * the largest bitwise disagreement (0 when every float is identical).
 */
function compare(opts: { trainable: number; stats: number; counts: number[]; threads: number; steps: number; simd: boolean }): { mismatches: number; moved: boolean } {
  const { trainable, stats, counts, threads, steps, simd } = opts;
  const rng = new SeededRandom(7);
  const slots = counts.length;
  const mem = StepMemory.create({ trainable, stats, slots, slotSamples: 4, threads });
  const workers = Array.from({ length: threads }, () => new StripeWorker(mem, simd));
  const reference = new Adam(trainable, {}, { simd });
  expect(reference.kind).toBe(workers[0].kind);
  const weights = randomArray(rng, trainable + stats);
  const start = weights.slice();
  mem.weights[0].set(weights);
  const cfg = reference.config;
  Object.assign(mem.f64, { [F64.beta1]: cfg.beta1, [F64.beta2]: cfg.beta2, [F64.epsilon]: cfg.epsilon });
  let parity: 0 | 1 = 0;
  for (let t = 1; t <= steps; t++) {
    const results: ResultMessage[] = counts.map((count, k) => {
      const g = randomArray(rng, trainable, 3);
      const s = randomArray(rng, stats);
      mem.gradients[k].set(g);
      mem.statSums[k].set(s);
      return { type: 'result', taskId: k, count, lossSum: 0, correct: 0, computeMs: 0, gradients: floatsToBytes(g), stats: floatsToBytes(s) };
    });
    const agg = aggregateResults(results, trainable, stats);
    reference.apply(weights.subarray(0, trainable), agg.gradient);
    weights.set(agg.stats, trainable);

    const total = counts.reduce((a, b) => a + b, 0);
    mem.ctl[CTL.slotsUsed] = slots;
    counts.forEach((c, k) => (mem.ctl[CTL.slotCounts + k] = c));
    mem.f64[F64.inv] = 1 / total;
    mem.f64[F64.stepSize] = cfg.learningRate / (1 - Math.pow(cfg.beta1, t));
    mem.f64[F64.sqrtCorrection] = 1 / Math.sqrt(1 - Math.pow(cfg.beta2, t));
    const parts = stripes(mem.adamSpan, threads);
    // Run the stripes in reverse order: the result must not depend on who finishes first.
    for (let i = threads - 1; i >= 0; i--) workers[i].run({ ...parts[i], parity, doStats: i === threads - 1 });
    parity = (1 - parity) as 0 | 1;
  }
  const got = mem.weights[parity].subarray(0, trainable + stats);
  let mismatches = 0;
  const a = new Uint32Array(got.slice().buffer);
  const b = new Uint32Array(weights.buffer);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) mismatches++;
  const moments = reference.snapshot();
  for (let i = 0; i < trainable; i++) if (mem.m[parity][i] !== moments.m[i] || mem.v[parity][i] !== moments.v[i]) mismatches++;
  return { mismatches, moved: weights.some((w, i) => w !== start[i]) };
}

describe('stripes', () => {
  it('cover the span in whole lines, in order, without overlap', () => {
    // 1000 floats = 62.5 lines -> 63 lines over 4 threads: 15, 16, 16, 16 lines; the last ends at 1000.
    const parts = stripes(1000, 4);
    expect(parts).toEqual([{ from: 0, to: 240 }, { from: 240, to: 496 }, { from: 496, to: 752 }, { from: 752, to: 1000 }]);
    for (const p of parts.slice(0, -1)) expect(p.to % STRIPE_FLOATS).toBe(0);
  });

  it('leave no thread without the last stripe when there are more threads than lines', () => {
    const parts = stripes(20, 3);
    expect(parts.at(-1)).toEqual({ from: 16, to: 20 });
    expect(parts.reduce((n, p) => n + p.to - p.from, 0)).toBe(20);
  });
});

describe('StripeWorker', () => {
  for (const simd of [true, false]) {
    it(`gives bit for bit the weights and moments of aggregateResults + Adam.apply (${simd ? 'SIMD' : 'scalar'})`, () => {
      // 1001 trainable weights: not a multiple of 4, so Adam's padding lanes overlap the statistics.
      // Counts 5, 3 and 4: 1/12 is not a power of two, so the division's rounding is exercised.
      const r = compare({ trainable: 1001, stats: 37, counts: [5, 3, 4], threads: 3, steps: 5, simd });
      expect(r.moved).toBe(true);
      expect(r.mismatches).toBe(0);
    });
  }

  it('gives the same bits for 1, 2 and 4 threads, with one or two slots', () => {
    for (const threads of [1, 2, 4]) {
      for (const counts of [[32], [16, 16], [11, 10]]) {
        expect(compare({ trainable: 4099, stats: 0, counts, threads, steps: 3, simd: true }).mismatches).toBe(0);
      }
    }
  });

  it('leaves the current copy untouched, so a failed reduction can be redone', () => {
    const mem = StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1 });
    const w = new StripeWorker(mem);
    mem.weights[0].fill(1);
    mem.gradients[0].fill(2);
    mem.ctl[CTL.slotsUsed] = 1;
    mem.ctl[CTL.slotCounts] = 1;
    Object.assign(mem.f64, { [F64.inv]: 1, [F64.stepSize]: 0.01, [F64.sqrtCorrection]: 1, [F64.beta1]: 0.9, [F64.beta2]: 0.999, [F64.epsilon]: 1e-7 });
    w.run({ from: 0, to: 64, parity: 0, doStats: false });
    const first = mem.weights[1].slice();
    expect(Array.from(mem.weights[0])).toEqual(new Array(64).fill(1));
    expect(first[0]).toBeLessThan(1);
    w.run({ from: 0, to: 64, parity: 0, doStats: false });
    expect(mem.weights[1]).toEqual(first);
  });
});

describe('StripeWorker with a reduction grain (float64 slots)', () => {
  it('reduces in float64 in slot order and rounds once, so the slots\' split does not show', () => {
    // Three groups' float32 gradients; float32 sums would depend on how they were grouped.
    const rng = new SeededRandom(11);
    const trainable = 1001;
    const groups = [randomArray(rng, trainable, 1e4), randomArray(rng, trainable, 1), randomArray(rng, trainable, 1e-3)];
    const run = (slotGroups: number[][], simd = false) => {
      const mem = StepMemory.create({ trainable, stats: 0, slots: slotGroups.length, slotSamples: 4, threads: 1, grain: 4 });
      expect(mem.gradients).toEqual([]);
      slotGroups.forEach((gs, k) => {
        for (let i = 0; i < trainable; i++) mem.wideGradients[k][i] = gs.reduce((s, g) => s + groups[g][i], 0);
      });
      mem.ctl[CTL.slotsUsed] = slotGroups.length;
      Object.assign(mem.f64, { [F64.inv]: 1 / 12, [F64.stepSize]: 0.001, [F64.sqrtCorrection]: 1, [F64.beta1]: 0.9, [F64.beta2]: 0.999, [F64.epsilon]: 1e-7 });
      const worker = new StripeWorker(mem, simd);
      expect(worker.kind).toBe(simd ? 'simd' : 'scalar');
      // The float64 kernel validates and instantiates here (else the SIMD runs below test the scalar loop).
      expect(simdWideReduceKernel(mem.memory, true)).toBeTypeOf('function');
      // Two stripes, the second first: whole lines, as stripes() cuts them.
      for (const part of stripes(mem.adamSpan, 2).reverse()) worker.run({ ...part, parity: 0, doStats: false });
      return mem.reduced.slice(0, trainable);
    };
    const whole = run([[0, 1, 2]]);
    expect(run([[0], [1], [2]])).toEqual(whole);
    expect(run([[0, 1], [2]])).toEqual(whole);
    // The SIMD kernel gives the scalar loop's bits.
    expect(run([[0], [1], [2]], true)).toEqual(whole);
    expect(run([[0, 1], [2]], true)).toEqual(whole);
    expect(whole[5]).toBe(Math.fround((groups[0][5] + groups[1][5] + groups[2][5]) / 12));
    // The float32 path, slot by slot, does not give these bits everywhere.
    const f32 = Float32Array.from({ length: trainable }, (_, i) => Math.fround(Math.fround(Math.fround(groups[0][i]) + groups[1][i]) + groups[2][i]) / 12);
    expect(f32.some((v, i) => v !== whole[i])).toBe(true);
  });

  it('lays out a float64 slot per slice, shared with a thread that attaches', () => {
    const mem = StepMemory.create({ trainable: 10, stats: 2, slots: 2, slotSamples: 3, threads: 2, grain: 2 });
    const other = StepMemory.attach(structuredClone(mem.init));
    other.wideGradients[1][9] = 1 + 2 ** -40;
    expect(mem.wideGradients[1][9]).toBe(1 + 2 ** -40);
    expect(mem.wideGradients[0][9]).toBe(0);
  });
});

describe('StepMemory', () => {
  it('refuses a shape that is not made of non-negative integers', () => {
    expect(() => StepMemory.create({ trainable: 10, stats: -1, slots: 1, slotSamples: 1, threads: 1 })).toThrow(/stats to be a non-negative integer, but got -1/);
    expect(() => StepMemory.create({ trainable: 10, stats: 0, slots: 0, slotSamples: 1, threads: 1 })).toThrow(/at least one slot/);
  });

  it('maps the same bytes from a posted init, as a compute thread does', () => {
    const mem = StepMemory.create({ trainable: 10, stats: 2, slots: 2, slotSamples: 3, threads: 2 });
    const other = StepMemory.attach(structuredClone(mem.init));
    other.gradients[1][9] = 42;
    other.writeError(1, 'out of memory', 'DTRAIN_ERR_OOM');
    expect(mem.gradients[1][9]).toBe(42);
    expect(mem.readError(1)).toEqual({ code: 'DTRAIN_ERR_OOM', message: 'out of memory' });
  });
});

describe('weight copy versions (CTL.copyVersions)', () => {
  it('names the copy as it stands now: a write of the copy, by any stripe, gives a token that differs', () => {
    const mem = StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1 });
    mem.ctl[CTL.slotsUsed] = 1;
    const before = heldToken(mem.ctl, 1);
    expect(before).toEqual({ control: mem.ctl.buffer, copy: 1, version: 0 });
    new StripeWorker(mem, false).run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false });
    expect(heldToken(mem.ctl, 1).version).toBe(1);
    expect(heldToken(mem.ctl, 0).version).toBe(0);
    expect(bumpCopyVersion(mem.ctl, 0)).toBe(1);
    // Another run's memory is another control block, whatever its versions say.
    expect(heldToken(StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1 }).ctl, 1).control).not.toBe(before.control);
  });
});
