import { afterEach, describe, expect, it } from 'vitest';
import { Adam } from './adam.ts';
import { CTL, F64, StepMemory, stripes, type StepMemoryShape } from './step-memory.ts';
import { StripeWorker, setNativeStripe, type BackendSegment } from './step-stripe.ts';
import { sumSquares } from './sum-squares-simd.ts';
import { SeededRandom } from './random.ts';
import { loadNativeKernels } from './kernels/native/addon.ts';
import { countCalls, requireNativeOrSkip } from './kernels/native/native-testing.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);
const calls = load.loaded ? countCalls(load.kernels, ['stripeStep']) : new Map<string, number>();
/** The addon (only read inside the tests, which run where it loaded). */
const addon = () => {
  if (!load.loaded) throw new Error(load.reason);
  return load.kernels;
};

afterEach(() => setNativeStripe(undefined));

/** Values that stress the rounding: wide magnitudes, exact zeros of both signs, subnormals. */
function hardArray(rng: SeededRandom, n: number, scale: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => {
    if (i % 97 === 0) return 0;
    if (i % 89 === 0) return -0;
    if (i % 83 === 0) return 1e-41 * (rng.next() - 0.5);
    return (rng.next() * 2 - 1) * scale * 10 ** Math.floor(rng.next() * 6 - 3);
  });
}

interface Run {
  weights: Float32Array;
  m: Float32Array;
  v: Float32Array;
  squares: (number | undefined)[];
  /** Σ g² of slot 0 each step, summed in JavaScript. */
  expectedSquares: number[];
}

type Kernel = 'native' | 'portable' | 'simd';

/** The native kernel, forced onto its portable loop (flag 2) for 'portable'. */
function install(kernel: Kernel): void {
  if (kernel === 'simd') return setNativeStripe(undefined);
  const { stripeStep, stripeStepFrom } = addon();
  if (kernel === 'native') return setNativeStripe({ stripeStep, stripeStepFrom });
  setNativeStripe({
    stripeStepFrom: (...args: Parameters<typeof stripeStepFrom>) => {
      const forced = [...args] as Parameters<typeof stripeStepFrom>;
      forced[18] |= 2;
      return stripeStepFrom(...forced);
    },
    stripeStep: (...args: Parameters<typeof stripeStep>) => {
      const forced = [...args] as Parameters<typeof stripeStep>;
      forced[20] |= 2;
      return stripeStep(...forced);
    },
  });
}

/**
 * `steps` steps of the shared-memory stripes over the same data, on `threads` stripes (run last
 * first), with the native kernel or the SIMD ones: the final copy's weights and moments, and what
 * each step's first stripe returned for Σ g² (asked for when there is one slot).
 */
function run(shape: StepMemoryShape, counts: number[], steps: number, kernel: Kernel): Run {
  install(kernel);
  const rng = new SeededRandom(5);
  const mem = StepMemory.create(shape);
  const workers = Array.from({ length: shape.threads }, () => new StripeWorker(mem, true));
  expect(workers[0].kind).toBe(kernel === 'simd' ? 'simd' : 'native');
  const cfg = new Adam(1).config;
  Object.assign(mem.f64, { [F64.beta1]: cfg.beta1, [F64.beta2]: cfg.beta2, [F64.epsilon]: cfg.epsilon });
  mem.weights[0].set(hardArray(rng, shape.trainable + shape.stats, 1));
  let parity: 0 | 1 = 0;
  const squares: (number | undefined)[] = [];
  const expectedSquares: number[] = [];
  for (let t = 1; t <= steps; t++) {
    counts.forEach((_, k) => {
      const g = hardArray(rng, shape.trainable, 3);
      if (shape.grain) mem.wideGradients[k].set(Float64Array.from(g, (x, i) => x + (i % 3) * 2 ** -40));
      else mem.gradients[k].set(g);
      mem.statSums[k].set(hardArray(rng, shape.stats, 1));
    });
    expectedSquares.push(sumSquares(shape.grain ? mem.wideGradients[0].subarray(0, shape.trainable) : mem.gradients[0].subarray(0, shape.trainable)));
    mem.ctl[CTL.slotsUsed] = counts.length;
    counts.forEach((c, k) => (mem.ctl[CTL.slotCounts + k] = c));
    mem.f64[F64.inv] = 1 / counts.reduce((a, b) => a + b, 0);
    mem.f64[F64.stepSize] = cfg.learningRate / (1 - Math.pow(cfg.beta1, t));
    mem.f64[F64.sqrtCorrection] = 1 / Math.sqrt(1 - Math.pow(cfg.beta2, t));
    const parts = stripes(mem.adamSpan, shape.threads);
    for (let i = shape.threads - 1; i >= 0; i--) {
      const sq = workers[i].run({ ...parts[i], parity, doStats: i === shape.threads - 1 }, shape.threads === 1 && counts.length === 1);
      if (i === 0) squares.push(sq);
    }
    parity = (1 - parity) as 0 | 1;
  }
  const n = shape.trainable;
  return { weights: mem.weights[parity].slice(0, n + shape.stats), m: mem.m[parity].slice(0, n), v: mem.v[parity].slice(0, n), squares, expectedSquares };
}

/** How many floats differ in their bits (so −0 against 0 counts, and NaN against NaN does not). */
function bitMismatches(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  expect(x.length).toBe(y.length);
  let n = 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) n++;
  return n;
}

describe.runIf(native)('the native stripe kernel', () => {
  const cases: { name: string; shape: StepMemoryShape; counts: number[] }[] = [
    // 1001 trainable (an Adam span of 1004): a tail of 12 lanes past the last 16, and padding lanes over the statistics.
    { name: 'one slot, one stripe', shape: { trainable: 1001, stats: 37, slots: 1, slotSamples: 4, threads: 1 }, counts: [32] },
    { name: 'three slots over three stripes', shape: { trainable: 1001, stats: 37, slots: 3, slotSamples: 4, threads: 3 }, counts: [5, 3, 4] },
    { name: 'two slots over two stripes, no statistics', shape: { trainable: 4099, stats: 0, slots: 2, slotSamples: 4, threads: 2 }, counts: [11, 10] },
    { name: 'float64 slots of a reduction grain', shape: { trainable: 1001, stats: 5, slots: 3, slotSamples: 4, threads: 2, grain: 4 }, counts: [4, 4, 8] },
    { name: 'one float64 slot', shape: { trainable: 517, stats: 0, slots: 1, slotSamples: 4, threads: 1, grain: 4 }, counts: [12] },
  ];
  const untouched = (c: (typeof cases)[number]) => run(c.shape, c.counts, 0, 'simd').weights;
  for (const kernel of ['native', 'portable'] as const) {
    for (const c of cases) {
      it(`gives the SIMD kernels' weights and moments bit for bit (${kernel === 'native' ? 'AVX-512 where the CPU has it' : 'the portable loop'}): ${c.name}`, () => {
        const before = calls.get('stripeStep') ?? 0;
        const got = run(c.shape, c.counts, 6, kernel);
        expect(calls.get('stripeStep')! - before).toBe(6 * c.shape.threads);
        const want = run(c.shape, c.counts, 6, 'simd');
        expect(bitMismatches(got.weights, want.weights)).toBe(0);
        expect(bitMismatches(got.m, want.m)).toBe(0);
        expect(bitMismatches(got.v, want.v)).toBe(0);
        // The steps moved the weights: the comparison is not of two untouched copies.
        const start = untouched(c);
        expect(got.weights.some((w, i) => w !== start[i])).toBe(true);
        // One slot on one stripe: each step also returned the slot's Σ g², float32 or float64 slots alike.
        if (c.shape.threads === 1 && c.counts.length === 1) got.squares.forEach((sq, t) => expect(sq! / got.expectedSquares[t]).toBeCloseTo(1, 12));
        else expect(got.squares.every((sq) => sq === undefined)).toBe(true);
      });
    }
  }

  it('returns Σ g² of the one slot in the same pass, equal to the sum of squares to rounding', () => {
    const shape: StepMemoryShape = { trainable: 1001, stats: 0, slots: 1, slotSamples: 4, threads: 1 };
    setNativeStripe(addon());
    const mem = StepMemory.create(shape);
    const g = hardArray(new SeededRandom(9), shape.trainable, 3);
    mem.gradients[0].set(g);
    mem.ctl[CTL.slotsUsed] = 1;
    Object.assign(mem.f64, { [F64.inv]: 1, [F64.stepSize]: 0.001, [F64.sqrtCorrection]: 1, [F64.beta1]: 0.9, [F64.beta2]: 0.999, [F64.epsilon]: 1e-7 });
    const worker = new StripeWorker(mem, true);
    expect(worker.fusesSquares).toBe(true);
    const sq = worker.run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false }, true)!;
    expect(sq / sumSquares(g)).toBeCloseTo(1, 12);
    // Without the ask, nothing is returned.
    expect(worker.run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false })).toBeUndefined();
    // A non-finite gradient reads as a non-finite sum, which the result screen refuses.
    mem.gradients[0][500] = Number.POSITIVE_INFINITY;
    expect(worker.run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false }, true)).toBe(Number.POSITIVE_INFINITY);
    mem.gradients[0][3] = Number.NaN;
    expect(worker.run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false }, true)).toBeNaN();
  });

  it('refuses operands outside the memory, naming them, instead of reading past it', () => {
    const mem = StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1 });
    const bytes = new Uint8Array(mem.memory.buffer);
    const k = addon();
    const call = (lanes: number, g: number, w: number, slots = 1, stride = 0) => () => k.stripeStep(bytes, lanes, g, stride, slots, 0, w, 0, 0, 0, 0, 0, 1, 0.9, 0.999, 0.1, 0.001, 0.001, 1, 1e-7, 0);
    expect(call(64, bytes.length - 16, 0)).toThrow(/slots .* lie outside the memory of \d+ bytes/);
    expect(call(64, 0, bytes.length - 16)).toThrow(/operand at argument 6 .* lies outside/);
    expect(call(64, 0, 0, 2, 16)).toThrow(/a stride of whole values past each slot's lanes/);
    expect(call(-1, 0, 0)).toThrow(/lanes ≥ 0/);
    expect(() => (k.stripeStep as (...a: unknown[]) => number)(new Float32Array(4), 0)).toThrow(/expected 21 arguments, got 2/);
  });
});

describe.runIf(native)('a step of one slot from the backend (runFromBackend)', () => {
  /** What slot 0 holds before each step from the backend, which must leave it alone. */
  const SLOT_MARK = 7.25;

  /** Splits `g` (and fresh weight tensors of the same sizes) into segments of `sizes` lanes, as a model's tensors lie. */
  function segmentsOf(g: Float32Array, sizes: number[]): BackendSegment[] {
    let from = 0;
    return sizes.map((n) => {
      const s = { from, gradient: g.subarray(from, from + n), weights: new Float32Array(n) };
      from += n;
      return s;
    });
  }

  /** `steps` steps on two memories from the same start: one through slot 0 and run(), one from the segments. */
  function both(shape: StepMemoryShape, sizes: number[], steps: number, kernel: 'native' | 'portable') {
    install(kernel);
    const rng = new SeededRandom(11);
    const viaSlot = StepMemory.create(shape);
    const direct = StepMemory.create(shape);
    const [a, b] = [new StripeWorker(viaSlot, true), new StripeWorker(direct, true)];
    expect(b.runsFromBackend).toBe(true);
    const cfg = new Adam(1).config;
    const start = hardArray(rng, shape.trainable, 1);
    for (const mem of [viaSlot, direct]) {
      Object.assign(mem.f64, { [F64.beta1]: cfg.beta1, [F64.beta2]: cfg.beta2, [F64.epsilon]: cfg.epsilon, [F64.inv]: 1 / 32 });
      mem.weights[0].set(start);
      mem.ctl[CTL.slotsUsed] = 1;
      mem.ctl[CTL.slotCounts] = 32;
    }
    let parity: 0 | 1 = 0;
    for (let t = 1; t <= steps; t++) {
      const g = hardArray(rng, shape.trainable, 3);
      for (const mem of [viaSlot, direct]) {
        mem.f64[F64.stepSize] = cfg.learningRate / (1 - Math.pow(cfg.beta1, t));
        mem.f64[F64.sqrtCorrection] = 1 / Math.sqrt(1 - Math.pow(cfg.beta2, t));
      }
      viaSlot.gradients[0].set(g);
      const task = { from: 0, to: viaSlot.adamSpan, parity, doStats: false };
      const want = a.run(task, true)!;
      const next = (1 - parity) as 0 | 1;
      const before = direct.ctl[CTL.copyVersions + next];
      const segments = segmentsOf(g.slice(), sizes);
      direct.gradients[0].fill(SLOT_MARK);
      const got = b.runFromBackend(task, segments);
      // The copy written is marked as rewritten, and each segment's weights are the next copy's.
      expect(got.token).toEqual({ control: direct.ctl.buffer, copy: next, version: before + 1 });
      expect(direct.ctl[CTL.copyVersions + next]).toBe(got.token.version);
      for (const s of segments) expect(bitMismatches(s.weights!, direct.weights[next].subarray(s.from, s.from + s.gradient.length))).toBe(0);
      // Slot 0 is left as it was: the gradient is written nowhere (SharedStep.apply never reduces that slot).
      expect(direct.gradients[0].every((x) => x === SLOT_MARK)).toBe(true);
      expect(got.squares / want).toBeCloseTo(1, 12);
      expect(got.squares / sumSquares(g)).toBeCloseTo(1, 12);
      parity = next;
    }
    const n = shape.trainable;
    const pick = (mem: StepMemory) => ({ w: mem.weights[parity].slice(0, n), m: mem.m[parity].slice(0, n), v: mem.v[parity].slice(0, n), pad: mem.weights[parity].slice(n, mem.adamSpan) });
    return { viaSlot: pick(viaSlot), direct: pick(direct), start };
  }

  const cases = [
    // 1001 lanes: an Adam span of 1004 (padding lanes after the last segment), tails past the last 16 in each segment.
    { name: 'three segments, padding after them', shape: { trainable: 1001, stats: 0, slots: 1, slotSamples: 4, threads: 1 }, sizes: [400, 1, 600] },
    { name: 'one segment', shape: { trainable: 4096, stats: 0, slots: 1, slotSamples: 4, threads: 1 }, sizes: [4096] },
  ];
  for (const kernel of ['native', 'portable'] as const) {
    for (const c of cases) {
      it(`gives the weights and moments of the step through slot 0, bit for bit (${kernel === 'native' ? 'AVX-512 where the CPU has it' : 'the portable loop'}): ${c.name}`, () => {
        const { viaSlot, direct, start } = both(c.shape, c.sizes, 6, kernel);
        expect(bitMismatches(direct.w, viaSlot.w)).toBe(0);
        expect(bitMismatches(direct.m, viaSlot.m)).toBe(0);
        expect(bitMismatches(direct.v, viaSlot.v)).toBe(0);
        expect(bitMismatches(direct.pad, viaSlot.pad)).toBe(0);
        expect(direct.w.some((w, i) => w !== start[i])).toBe(true);
      });
    }
  }

  it('counts every write of a copy: run() marks the copy it writes as rewritten too', () => {
    setNativeStripe(addon());
    const mem = StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1 });
    mem.ctl[CTL.slotsUsed] = 1;
    const w = new StripeWorker(mem, true);
    w.run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false });
    w.run({ from: 0, to: mem.adamSpan, parity: 0, doStats: false });
    w.run({ from: 0, to: mem.adamSpan, parity: 1, doStats: false });
    expect([mem.ctl[CTL.copyVersions], mem.ctl[CTL.copyVersions + 1]]).toEqual([1, 2]);
  });

  it('refuses segments that do not cover the trainable lanes in order, a step of several slots, and weights over the gradient', () => {
    setNativeStripe(addon());
    const mem = StepMemory.create({ trainable: 100, stats: 0, slots: 2, slotSamples: 1, threads: 1 });
    mem.ctl[CTL.slotsUsed] = 1;
    const w = new StripeWorker(mem, true);
    const task = { from: 0, to: mem.adamSpan, parity: 0 as const, doStats: false };
    const g = new Float32Array(100);
    expect(() => w.runFromBackend(task, segmentsOf(g, [50, 40]))).toThrow(/cover 100 trainable lanes, but they cover 90/);
    expect(() => w.runFromBackend(task, [{ from: 10, gradient: g.subarray(0, 100) }])).toThrow(/one starts at 10 where 0 was next/);
    expect(() => w.runFromBackend({ ...task, to: 50 }, segmentsOf(g, [100]))).toThrow(/over the whole span \[0, 100\)/);
    mem.ctl[CTL.slotsUsed] = 2;
    expect(() => w.runFromBackend(task, segmentsOf(g, [100]))).toThrow(/over 2 slots/);
    mem.ctl[CTL.slotsUsed] = 1;
    const shared = new Float32Array(250);
    expect(() => w.runFromBackend(task, [{ from: 0, gradient: shared.subarray(0, 100), weights: shared.subarray(50, 150) }])).toThrow(/tensors to lie apart, but two overlap/);
    // Across segments too: one's weights over the next one's gradient.
    expect(() => w.runFromBackend(task, [{ from: 0, gradient: shared.subarray(0, 60), weights: shared.subarray(100, 160) }, { from: 60, gradient: shared.subarray(150, 190) }])).toThrow(/two overlap/);
    // Nothing was written: the refusals come before the copy is marked.
    expect(mem.ctl[CTL.copyVersions + 1]).toBe(0);
    // The kernel itself refuses a gradient or weights inside the step memory, or over each other.
    const bytes = new Uint8Array(mem.memory.buffer);
    const k = addon();
    const call = (gradient: Float32Array, copy: Float32Array | null) => () => k.stripeStepFrom(bytes, 100, gradient, 0, 0, 0, 0, 0, 0, 0, 1, 0.9, 0.999, 0.1, 0.001, 0.001, 1, 1e-7, 0, copy);
    expect(call(new Float32Array(mem.memory.buffer, 0, 100), null)).toThrow(/the gradient overlaps the memory/);
    expect(call(shared.subarray(0, 100), shared.subarray(99, 199))).toThrow(/weightsCopy overlaps the memory or the gradient/);
    expect(call(shared.subarray(0, 99), null)).toThrow(/holds 99 values, expected 100/);
    expect(call(shared.subarray(0, 100), new Float32Array(mem.memory.buffer, 4, 100))).toThrow(/weightsCopy overlaps/);
  });

  it('writes the gradient into the slot only where gOut is an offset (−1: nowhere)', () => {
    const mem = StepMemory.create({ trainable: 100, stats: 0, slots: 1, slotSamples: 1, threads: 1 });
    const bytes = new Uint8Array(mem.memory.buffer);
    const k = addon();
    const g = Float32Array.from({ length: 100 }, (_, i) => i - 50.5);
    const o = mem.offsets;
    const step = (gOut: number) => k.stripeStepFrom(bytes, 100, g, gOut, o.weights[0], o.m[0], o.v[0], o.weights[1], o.m[1], o.v[1], 1, 0.9, 0.999, 0.1, 0.001, 0.001, 1, 1e-7, 1, null);
    mem.gradients[0].fill(SLOT_MARK);
    const none = step(-1);
    expect(mem.gradients[0].every((x) => x === SLOT_MARK)).toBe(true);
    const written = step(o.gradients);
    expect(bitMismatches(mem.gradients[0], g)).toBe(0);
    // Σ g² either way.
    expect(none).toBe(written);
    expect(none / sumSquares(g)).toBeCloseTo(1, 12);
  });

  it('is not offered with float64 slots or BatchNorm statistics', () => {
    setNativeStripe(addon());
    expect(new StripeWorker(StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1, grain: 4 }), true).runsFromBackend).toBe(false);
    expect(new StripeWorker(StepMemory.create({ trainable: 64, stats: 8, slots: 1, slotSamples: 1, threads: 1 }), true).runsFromBackend).toBe(false);
    setNativeStripe(undefined);
    expect(new StripeWorker(StepMemory.create({ trainable: 64, stats: 0, slots: 1, slotSamples: 1, threads: 1 }), true).runsFromBackend).toBe(false);
  });
});
