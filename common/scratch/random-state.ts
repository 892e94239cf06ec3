/**
 * A small port of numpy's legacy `np.random.RandomState` (MT19937), so that exercises written
 * against `np.random.seed(n)` can be reproduced number for number in TypeScript.
 *
 * Only what the exercises use is covered, and each piece is checked against numpy 2.4 in
 * random-state.test.ts:
 * - seeding from one integer in [0, 2**32 - 1] (numpy's `_legacy_seeding` calls `mt19937_seed`,
 *   i.e. Matsumoto and Nishimura's `init_genrand`; array seeds and `init_by_array` are NOT ported);
 * - `rand` / `randomSample` (the 53-bit legacy double): bit for bit;
 * - `randint(low, high, size)` for the default int64 dtype and spans of at most 2**32 values
 *   (numpy's masked rejection on 32-bit draws): bit for bit. Wider spans, which numpy serves
 *   from 64-bit draws, are refused;
 * - `randn` (the legacy polar Box-Muller with its cached second value): bit for bit except in
 *   rare last-bit cases, see below.
 * Every other RandomState method (choice, shuffle, uniform, get_state, ...) is absent.
 *
 * The polar method takes a natural log, and numpy's C code calls the platform libm for it.
 * V8's `Math.log` differs from glibc's in the last bit for about 7% of the inputs randn sees,
 * so this port uses its own correctly rounded log instead. glibc's log is itself off by an ulp
 * for about 0.1% of those inputs, which leaves 29 of the first 100,000 normals for seed 0 one or
 * two ulps from Linux numpy (the test lists them). numpy on another libm may differ again.
 */
import { ConfigError } from '../errors.ts';

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;
const MAX_SEED = 0xffffffff;
/** numpy switches from 32-bit to 64-bit draws above this span (high - low - 1). */
const MAX_UINT32 = 0xffffffff;

export class RandomState {
  private readonly key = new Uint32Array(N);
  private pos = N;
  // The polar method makes two normals per accepted pair; numpy keeps the second for the next call.
  private hasGauss = false;
  private gauss = 0;

  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Same as `np.random.seed(seed)` for an integer seed: also drops any cached normal. */
  seed(seed: number): void {
    if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) {
      throw new ConfigError(`seed must be an integer from 0 to ${MAX_SEED}, got ${String(seed)}`);
    }
    // init_genrand: Math.imul keeps the multiplication in uint32 arithmetic, as C does.
    this.key[0] = seed >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = this.key[i - 1];
      this.key[i] = (Math.imul(1812433253, prev ^ (prev >>> 30)) + i) >>> 0;
    }
    this.pos = N;
    this.hasGauss = false;
    this.gauss = 0;
  }

  /** One tempered 32-bit output of MT19937, as an unsigned number. */
  nextUint32(): number {
    if (this.pos >= N) this.regenerate();
    let y = this.key[this.pos++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `np.random.random_sample()`: 27 + 26 bits from two draws, so every double in [0, 1) is k / 2**53. */
  randomSample(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** `np.random.standard_normal()` with numpy's legacy polar method (not the ziggurat of `Generator`). */
  standardNormal(): number {
    if (this.hasGauss) {
      this.hasGauss = false;
      const cached = this.gauss;
      this.gauss = 0;
      return cached;
    }
    let x1: number;
    let x2: number;
    let r2: number;
    do {
      x1 = 2 * this.randomSample() - 1;
      x2 = 2 * this.randomSample() - 1;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1 || r2 === 0);
    const f = Math.sqrt((-2 * correctlyRoundedLog(r2)) / r2);
    this.gauss = f * x1;
    this.hasGauss = true;
    return f * x2;
  }

  /** `np.random.rand(...)`: a scalar, a vector, or a row-major matrix of uniform doubles. */
  rand(): number;
  rand(length: number): number[];
  rand(rows: number, cols: number): number[][];
  rand(rows?: number, cols?: number): number | number[] | number[][] {
    return this.shaped(() => this.randomSample(), rows, cols);
  }

  /** `np.random.randn(...)`: draws fill the result in row-major order, like numpy's C-order arrays. */
  randn(): number;
  randn(length: number): number[];
  randn(rows: number, cols: number): number[][];
  randn(rows?: number, cols?: number): number | number[] | number[][] {
    return this.shaped(() => this.standardNormal(), rows, cols);
  }

  /**
   * `np.random.randint(low, high, size)` with the default int64 dtype: integers in [low, high).
   * numpy masks each 32-bit draw down to the smallest all-ones mask covering the span and rejects
   * values past it, so the number of draws consumed depends on the values; that is reproduced here.
   */
  randint(low: number, high: number): number;
  randint(low: number, high: number, size: number): number[];
  randint(low: number, high: number, size?: number): number | number[] {
    if (!Number.isSafeInteger(low) || !Number.isSafeInteger(high) || low >= high) {
      throw new ConfigError(`randint expects safe integers with low < high, got low=${low}, high=${high}`);
    }
    const span = high - low - 1; // numpy's closed-interval "rng"
    if (span > MAX_UINT32) {
      throw new ConfigError(`randint covers ranges of at most 2**32 values, got high - low = ${high - low}`);
    }
    const draw = (): number => low + this.boundedUint32(span);
    if (size === undefined) return draw();
    return Array.from({ length: checkedLength(size, 'size') }, draw);
  }

  private boundedUint32(span: number): number {
    if (span === 0) return 0; // numpy draws nothing for a one-value range
    if (span === MAX_UINT32) return this.nextUint32();
    let mask = span;
    mask |= mask >>> 1;
    mask |= mask >>> 2;
    mask |= mask >>> 4;
    mask |= mask >>> 8;
    mask |= mask >>> 16;
    let value: number;
    do {
      value = (this.nextUint32() & mask) >>> 0;
    } while (value > span);
    return value;
  }

  private shaped(draw: () => number, rows?: number, cols?: number): number | number[] | number[][] {
    if (rows === undefined) return draw();
    const r = checkedLength(rows, 'first dimension');
    if (cols === undefined) return Array.from({ length: r }, draw);
    const c = checkedLength(cols, 'second dimension');
    return Array.from({ length: r }, () => Array.from({ length: c }, draw));
  }

  private regenerate(): void {
    const key = this.key;
    let y: number;
    let i = 0;
    // (y & 1) ? MATRIX_A : 0 is numpy's branch-free `-(y & 1) & MATRIX_A`.
    for (; i < N - M; i++) {
      y = (key[i] & UPPER_MASK) | (key[i + 1] & LOWER_MASK);
      key[i] = key[i + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; i < N - 1; i++) {
      y = (key[i] & UPPER_MASK) | (key[i + 1] & LOWER_MASK);
      key[i] = key[i + (M - N)] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    y = (key[N - 1] & UPPER_MASK) | (key[0] & LOWER_MASK);
    key[N - 1] = key[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.pos = 0;
  }
}

// Double-double helpers (Dekker / Knuth): a value is hi + lo with |lo| <= ulp(hi) / 2.
// There is no fused multiply-add in JavaScript, so products are split with Veltkamp's constant.
const SPLITTER = 134217729; // 2**27 + 1
const LN2_HI = Math.LN2;
const LN2_LO = 2.3190468138462996e-17; // ln 2 - Math.LN2, from Python's decimal at 60 digits
const SQRT2 = Math.SQRT2;
const TWO_POW_54 = 18014398509481984;
const BITS = new DataView(new ArrayBuffer(8)); // shared scratch space for reading the exponent
/** 1 / (2j + 1) for the atanh series as double-doubles; 22 terms reach 2**-106 for |s| <= 3 - 2*sqrt(2). */
const ATANH_COEFFICIENTS: ReadonlyArray<readonly [number, number]> = Array.from({ length: 22 }, (_, j) => {
  const d = 2 * j + 1;
  const hi = 1 / d;
  const [p, pe] = twoProd(hi, d);
  return [hi, (1 - p - pe) / d] as const;
});

function twoSum(a: number, b: number): [number, number] {
  const s = a + b;
  const bb = s - a;
  return [s, a - (s - bb) + (b - bb)];
}

function twoProd(a: number, b: number): [number, number] {
  const p = a * b;
  let t = SPLITTER * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLITTER * b;
  const bh = t - (t - b);
  const bl = b - bh;
  return [p, ah * bh - p + ah * bl + al * bh + al * bl];
}

function ddMul(ah: number, al: number, bh: number, bl: number): [number, number] {
  const [p, e] = twoProd(ah, bh);
  return twoSum(p, e + (ah * bl + al * bh));
}

function ddAdd(ah: number, al: number, bh: number, bl: number): [number, number] {
  const [s, e] = twoSum(ah, bh);
  return twoSum(s, e + al + bl);
}

/**
 * ln(x) for positive finite x, rounded to nearest: the log is computed to about 2**-100 in
 * double-double and rounded once, so it matches any correctly rounded libm (glibc's log is one in
 * practice). ln x = k ln 2 + 2 atanh((m - 1) / (m + 1)) with m in [sqrt(1/2), sqrt(2)).
 */
export function correctlyRoundedLog(x: number): number {
  if (!(x > 0) || x === Infinity) return Math.log(x); // NaN, 0, negatives and Infinity as usual
  let k = 0;
  if (x < 2.2250738585072014e-308) {
    x *= TWO_POW_54; // lift subnormals so the exponent read below is exact
    k = -54;
  }
  BITS.setFloat64(0, x);
  const exponent = ((BITS.getUint32(0) >>> 20) & 0x7ff) - 1023;
  let m = x / 2 ** exponent; // exact: a power-of-two scaling of a normal number
  k += exponent;
  if (m > SQRT2) {
    m /= 2;
    k += 1;
  }
  // s = (m - 1) / (m + 1) as a double-double; m - 1 is exact (Sterbenz) and m + 1 is kept as a pair.
  const f = m - 1;
  const [dh, dl] = twoSum(m, 1);
  const sh = f / dh;
  const [p, pe] = twoProd(sh, dh);
  const sl = (f - p - pe - sh * dl) / dh;
  const [th, tl] = ddMul(sh, sl, sh, sl);
  // Horner over t = s**2: sum_j t**j / (2j + 1).
  let [ph, pl] = ATANH_COEFFICIENTS[ATANH_COEFFICIENTS.length - 1];
  for (let j = ATANH_COEFFICIENTS.length - 2; j >= 0; j--) {
    [ph, pl] = ddMul(ph, pl, th, tl);
    [ph, pl] = ddAdd(ph, pl, ATANH_COEFFICIENTS[j][0], ATANH_COEFFICIENTS[j][1]);
  }
  const [lh, ll] = ddMul(2 * sh, 2 * sl, ph, pl);
  const [kh, kl] = twoProd(k, LN2_HI);
  const [rh, rl] = ddAdd(kh, kl + k * LN2_LO, lh, ll);
  return rh + rl;
}

function checkedLength(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new ConfigError(`${what} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}
