/**
 * A small, fast, deterministic PRNG for shuffles, splits and synthetic data.
 *
 * mulberry32 (Tommy Ettinger, public domain): a 32-bit state advanced by a Weyl increment and passed
 * through an integer hash. It passes the gjrand/PractRand tests that matter for shuffling, needs no
 * BigInt and costs a few `Math.imul`s per draw. Its period is 2^32 draws per seed, far more than any
 * single dataset needs. It is not cryptographic, and `Math.random()` is never used, so every run with
 * the same seed sees the same order on every machine.
 */
import { ConfigError } from './errors.ts';

export class SeededRandom {
  private state: number;

  /** `seed` may be any finite number; it is hashed so that nearby seeds give unrelated streams. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new ConfigError(`A random seed must be a finite number, but got ${seed}.`);
    // Without this mixing, seeds s and s + 0x6d2b79f5 would yield the same stream shifted by one.
    this.state = mix32(Math.trunc(seed) | 0);
  }

  /** A float in [0, 1) with 32 random bits. */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). The bias of `floor(next() * n)` is below n / 2^32: irrelevant for n up to millions. */
  nextInt(n: number): number {
    if (!Number.isInteger(n) || n <= 0 || n > 4294967296) {
      throw new ConfigError(`nextInt expects an integer n in [1, 2^32], but got ${n}.`);
    }
    return Math.floor(this.next() * n);
  }

  /** Fisher-Yates shuffle in place: every order is equally likely. */
  shuffle<T>(a: T[] | Uint32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
  }
}

/** 0 .. n-1 in an order fixed by `seed`. */
export function permutation(n: number, seed: number): Uint32Array {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new ConfigError(`permutation expects a non-negative integer length, but got ${n}.`);
  }
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  new SeededRandom(seed).shuffle(p);
  return p;
}

/**
 * The murmur3 finalizer: a bijective 32-bit avalanche. Exposed so that callers can derive
 * independent per-item seeds (`mix32(seed ^ mix32(index))`) without drawing them in sequence.
 */
export function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) | 0;
}
