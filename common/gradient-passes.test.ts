import { afterEach, describe, expect, it } from 'vitest';
import { loadNativeKernels } from './kernels/native/addon.ts';
import { countCalls, requireNativeOrSkip } from './kernels/native/native-testing.ts';
import { firstNonFinite, foldInto, scaleBounded, setGradientPasses, squaresOf } from './gradient-passes.ts';
import { Adam } from './adam.ts';
import { SeededRandom } from './random.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);

/** Values over many scales, with both zeros, subnormals and a tail past the last 16 lanes. */
function values(n: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (rng.next() - 0.5) * 10 ** Math.floor(rng.next() * 12 - 6);
  x[0] = -0;
  x[1] = 0;
  x[2] = 1e-42;
  return x;
}

const same = (a: Float32Array, b: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

afterEach(() => setGradientPasses(undefined));

describe('the gradient passes in JavaScript', () => {
  it('fold from zero, add, and scale in float64 rounded to float32, reporting the first value past the limit', () => {
    const a = Float32Array.from([1, -0, 3e38, 0.1]);
    const sum = new Float32Array(4).fill(7);
    foldInto(sum, a, true);
    expect(Object.is(sum[1], 0)).toBe(true);
    foldInto(sum, a, false);
    expect(Array.from(sum)).toEqual([2, 0, Infinity, Math.fround(Math.fround(0.1) + Math.fround(0.1))]);
    expect(scaleBounded(sum, 0.5, 1e19)).toBe(2);
    expect(sum[3]).toBe(Math.fround(Math.fround(Math.fround(0.1) + Math.fround(0.1)) * 0.5));
    expect(scaleBounded(Float32Array.from([1, 2]), 1 / 3, 1e19)).toBe(-1);
    expect(() => foldInto(new Float32Array(2), new Float32Array(3), true)).toThrow(/Expected 2 values/);
  });

  it('find the first value that is not finite, and none in a finite array', () => {
    expect(firstNonFinite(Float32Array.from([1, 2, NaN, Infinity]))).toBe(2);
    expect(firstNonFinite(Float32Array.from([3e38, -3e38, 1]))).toBe(-1);
    expect(squaresOf(Float32Array.from([3, 4]))).toBe(25);
  });
});

describe.runIf(native)('the native gradient passes', () => {
  const kernels = load.loaded ? load.kernels : undefined!;

  it('give the JavaScript loops bit for bit (fold, scale, bound) and Σ x² to rounding, natively', () => {
    const n = 100_003;
    const parts = [values(n, 1), values(n, 2), values(n, 3)];
    parts[2][n - 1] = 4e19; // past the bound once scaled by 1/3 ... and the first such index
    const run = () => {
      const sum = new Float32Array(n);
      parts.forEach((p, k) => foldInto(sum, p, k === 0));
      const bad = scaleBounded(sum, 1 / 3, 1e19);
      return { sum, bad, sq: squaresOf(parts[0]) };
    };
    const js = run();
    setGradientPasses(kernels);
    const calls = countCalls(kernels, ['foldInto', 'scaleBounded', 'sumSquares']);
    const nat = run();
    expect([calls.get('foldInto'), calls.get('scaleBounded'), calls.get('sumSquares')]).toEqual([3, 1, 1]);
    expect(same(nat.sum, js.sum)).toBe(true);
    expect(nat.bad).toBe(js.bad);
    expect(nat.bad).toBe(n - 1);
    expect(Math.abs(nat.sq - js.sq) / js.sq).toBeLessThan(1e-12);
  });

  it('find the first value past the bound after scaling, in a full block or the tail, NaN included, as JavaScript does', () => {
    // 50 values: three full blocks of 16 and a tail of 2 (48, 49).
    for (const [at, bad] of [[17, NaN], [40, 3.5e19], [40, -3.5e19], [0, Infinity], [48, NaN], [49, -Infinity]] as const) {
      const x = values(50, 6);
      x[at] = bad;
      x[45] = 2e19; // within 1e19 once halved: not past it
      const js = x.slice();
      const expected = scaleBounded(js, 0.5, 1e19);
      setGradientPasses(kernels);
      expect(scaleBounded(x, 0.5, 1e19)).toBe(expected);
      setGradientPasses(undefined);
      expect(expected).toBe(at);
      expect(same(x, js)).toBe(true);
    }
  });

  it('say NaN or Infinity wherever a value is not finite, and find it', () => {
    setGradientPasses(kernels);
    for (const bad of [NaN, Infinity, -Infinity]) {
      const x = values(1_000, 4);
      x[997] = bad;
      expect(Number.isFinite(squaresOf(x))).toBe(false);
      expect(firstNonFinite(x)).toBe(997);
    }
    expect(firstNonFinite(Float32Array.from([3e38, -3e38]))).toBe(-1);
    expect(squaresOf(new Float32Array(0))).toBe(0);
  });

  it('refuse operands of the wrong type, of different lengths, or overlapping', () => {
    const a = new Float32Array(8);
    expect(() => kernels.foldInto(a, new Float32Array(7), true)).toThrow(/src of 8 floats/);
    expect(() => kernels.foldInto(a, a.subarray(1), false)).toThrow();
    expect(() => kernels.foldInto(a.subarray(0, 4), a.subarray(2, 6), false)).toThrow(/overlap/);
    expect(() => kernels.sumSquares(new Float64Array(2) as unknown as Float32Array)).toThrow(/Float32Array/);
    expect(() => kernels.adamInPlace(a, a, new Float32Array(8), new Float32Array(8), 0.9, 0.999, 0.1, 0.001, 1e-3, 1, 1e-7)).toThrow(/overlap/);
    expect(() => kernels.adamInPlace(a, new Float32Array(8), new Float32Array(8), new Float32Array(9), 0.9, 0.999, 0.1, 0.001, 1e-3, 1, 1e-7)).toThrow(/one length/);
  });

  it('run Adam natively on the arrays where they lie, bit for bit the WebAssembly SIMD kernel, step after step', () => {
    const n = 50_001;
    const simd = new Adam(n);
    const nat = new Adam(n);
    expect(simd.kind).toBe('simd');
    const wSimd = values(n, 5);
    const wNat = wSimd.slice();
    setGradientPasses(kernels);
    const calls = countCalls(kernels, ['adamInPlace']);
    for (let step = 0; step < 5; step++) {
      const g = values(n, 10 + step);
      setGradientPasses(undefined);
      expect(simd.runsNative).toBe(false);
      simd.apply(wSimd, g);
      setGradientPasses(kernels);
      expect(nat.runsNative).toBe(true);
      nat.apply(wNat, g);
      expect(same(wNat, wSimd)).toBe(true);
    }
    expect(calls.get('adamInPlace')).toBe(5);
    // −0 in the gradient reaches Adam as it is (the SIMD kernel reads it so): with β1 = 0 and a
    // negative m, m becomes −0 rather than +0, and a −0 weight keeps its sign.
    const zeroSimd = new Adam(32, { beta1: 0 });
    const zeroNat = new Adam(32, { beta1: 0 });
    const w0 = Float32Array.from({ length: 32 }, (_, i) => (i % 2 ? -0 : 0.5));
    const w1 = w0.slice();
    const g1 = Float32Array.from({ length: 32 }, () => -0.25);
    const g2 = Float32Array.from({ length: 32 }, () => -0);
    setGradientPasses(undefined);
    zeroSimd.apply(w0, g1);
    zeroSimd.apply(w0, g2);
    setGradientPasses(kernels);
    zeroNat.apply(w1, g1);
    zeroNat.apply(w1, g2);
    expect(same(w1, w0)).toBe(true);
    expect(same(zeroNat.snapshot().m, zeroSimd.snapshot().m)).toBe(true);
    expect(Object.is(zeroSimd.snapshot().m[0], -0)).toBe(true);
    const a = simd.snapshot();
    const b = nat.snapshot();
    expect(same(a.m, b.m) && same(a.v, b.v)).toBe(true);
    expect(new Adam(n, {}, { simd: false }).runsNative).toBe(false);
  });
});
