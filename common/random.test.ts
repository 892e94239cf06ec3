import { describe, expect, it } from 'vitest';
import { ConfigError } from './errors.ts';
import { mix32, permutation, SeededRandom } from './random.ts';

const PINNED_SEED_42 = [0.4869888692628592, 0.5050487946718931, 0.07134048454463482];

describe('SeededRandom', () => {
  it('repeats the same sequence for the same seed', () => {
    const a = new SeededRandom(42);
    const b = new SeededRandom(42);
    for (let i = 0; i < 100; i++) expect(a.next()).toBe(b.next());
  });

  it('pins the first draws for seed 42, so that a change of generator (and of every split) is deliberate', () => {
    const rng = new SeededRandom(42);
    expect([rng.next(), rng.next(), rng.next()]).toEqual(PINNED_SEED_42);
  });

  it('gives unrelated sequences for neighbouring seeds', () => {
    const a = new SeededRandom(1);
    const b = new SeededRandom(2);
    let same = 0;
    for (let i = 0; i < 1000; i++) if (Math.floor(a.next() * 256) === Math.floor(b.next() * 256)) same++;
    // Independent draws agree on a byte about 1000/256 ≈ 4 times.
    expect(same).toBeLessThan(20);
  });

  it('draws floats in [0, 1) with mean near 1/2', () => {
    const rng = new SeededRandom(7);
    let sum = 0;
    let outside = 0;
    for (let i = 0; i < 100_000; i++) {
      const x = rng.next();
      if (!(x >= 0 && x < 1)) outside++;
      sum += x;
    }
    expect(outside).toBe(0);
    // Standard error of the mean is sqrt(1/12 / 1e5) ≈ 0.0009.
    expect(Math.abs(sum / 100_000 - 0.5)).toBeLessThan(0.005);
  });

  it('draws integers in [0, n) with every value about equally often', () => {
    const rng = new SeededRandom(3);
    const counts = new Array(10).fill(0);
    for (let i = 0; i < 100_000; i++) counts[rng.nextInt(10)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(500);
  });

  it.each([0, -1, 2.5, Number.NaN])('rejects nextInt(%s)', (n) => {
    expect(() => new SeededRandom(1).nextInt(n)).toThrow(ConfigError);
  });

  it('rejects a seed that is not a finite number', () => {
    expect(() => new SeededRandom(Number.NaN)).toThrow(ConfigError);
  });

  it('shuffles arrays and Uint32Arrays into a permutation of their elements, the same way for the same seed', () => {
    const a = ['a', 'b', 'c', 'd', 'e', 'f'];
    const u = Uint32Array.from([0, 1, 2, 3, 4, 5]);
    new SeededRandom(9).shuffle(a);
    new SeededRandom(9).shuffle(u);
    expect([...a].sort()).toEqual(['a', 'b', 'c', 'd', 'e', 'f']);
    expect(a).toEqual([...u].map((i) => 'abcdef'[i]));
  });
});

describe('permutation', () => {
  it('contains every index exactly once', () => {
    const p = permutation(1000, 5);
    expect([...p].sort((x, y) => x - y)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });

  it('depends only on the seed', () => {
    expect(permutation(50, 1)).toEqual(permutation(50, 1));
    expect(permutation(50, 1)).not.toEqual(permutation(50, 2));
  });

  it('handles the empty and the single-element case', () => {
    expect(permutation(0, 1)).toEqual(new Uint32Array(0));
    expect(permutation(1, 1)).toEqual(Uint32Array.from([0]));
  });
});

describe('mix32', () => {
  it('spreads consecutive inputs over all 32 bits', () => {
    expect(mix32(1)).not.toBe(mix32(2));
    expect(mix32(0)).toBe(0);
    expect(Math.abs(mix32(1))).toBeGreaterThan(1 << 20);
  });
});
