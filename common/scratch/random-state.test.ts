/**
 * Every expected value here was printed by numpy 2.4.6 (python3 3.11, glibc 2.36, x86_64); the
 * python that produced each one is in the comment above it.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.ts';
import { correctlyRoundedLog, RandomState } from './random-state.ts';

/** sha256 of the values as little-endian float64, like numpy's `a.astype('<f8').tobytes()`. */
function sha256Float64(values: number[]): string {
  return createHash('sha256').update(new Uint8Array(new Float64Array(values).buffer)).digest('hex');
}

/** sha256 of the values as little-endian int64, like numpy's `a.astype('<i8').tobytes()`. */
function sha256Int64(values: number[]): string {
  return createHash('sha256').update(new Uint8Array(new BigInt64Array(values.map(BigInt)).buffer)).digest('hex');
}

/** Distance in units in the last place between two doubles of the same sign. */
function ulps(a: number, b: number): number {
  const view = new DataView(new ArrayBuffer(16));
  view.setFloat64(0, a);
  view.setFloat64(8, b);
  return Number(view.getBigInt64(0) - view.getBigInt64(8));
}

// python3 -c "import hashlib, numpy as np; ..." with, for each hash below:
//   h  = lambda a: hashlib.sha256(np.ascontiguousarray(a, dtype='<f8').tobytes()).hexdigest()
//   hi = lambda a: hashlib.sha256(np.ascontiguousarray(a, dtype='<i8').tobytes()).hexdigest()

describe('RandomState seeding and raw MT19937 output', () => {
  it('reproduces the reference mt19937ar stream for init_genrand(5489)', () => {
    // np.random.RandomState(5489).randint(0, 2**32, 3, dtype=np.uint64).tolist()
    // (a span of exactly 2**32 is returned as raw 32-bit draws)
    const rng = new RandomState(5489);
    expect([rng.nextUint32(), rng.nextUint32(), rng.nextUint32()]).toEqual([3499211612, 581869302, 3890346734]);
  });

  it('seeds an integer the way np.random.seed does', () => {
    // np.random.RandomState(0).randint(0, 2**32, 2, dtype=np.uint64).tolist()
    const rng = new RandomState(0);
    expect([rng.nextUint32(), rng.nextUint32()]).toEqual([2357136044, 2546248239]);
  });

  it('re-seeding restarts the stream', () => {
    const rng = new RandomState(0);
    const first = rng.rand(5);
    rng.seed(0);
    expect(rng.rand(5)).toEqual(first);
  });

  it.each([-1, 2 ** 32, 1.5, Number.NaN])('rejects the seed %s as numpy does', (seed) => {
    expect(() => new RandomState(seed)).toThrow(ConfigError);
    expect(() => new RandomState(seed)).toThrow(/seed must be an integer from 0 to 4294967295/);
  });
});

describe('RandomState.rand', () => {
  it('matches numpy for the first values', () => {
    // np.random.RandomState(0).rand(3).tolist()
    expect(new RandomState(0).rand(3)).toEqual([0.5488135039273248, 0.7151893663724195, 0.6027633760716439]);
  });

  it('matches numpy bit for bit over 100,000 draws', () => {
    // u = np.random.RandomState(0).rand(100000); h(u), repr(u[9999])
    const u = new RandomState(0).rand(100000);
    expect(u[9999]).toBe(0.8135750799512289);
    expect(sha256Float64(u)).toBe('4eab6ef74e08db6c6862e2a8b71d05432cf5fa505622a499b9dcc7dfc6f5440a');
  });

  it('fills a matrix in row-major order', () => {
    const flat = new RandomState(3).rand(6);
    expect(new RandomState(3).rand(2, 3)).toEqual([flat.slice(0, 3), flat.slice(3, 6)]);
  });
});

describe('RandomState.randn', () => {
  it('matches numpy for the first values', () => {
    // np.random.RandomState(0).randn(3).tolist()
    expect(new RandomState(0).randn(3)).toEqual([1.764052345967664, 0.4001572083672233, 0.9787379841057392]);
  });

  it('keeps the cached second normal across other draws, as numpy does', () => {
    // r = np.random.RandomState(2**32 - 1); [r.randn(), r.rand(), r.randn(), r.randn()]
    const rng = new RandomState(2 ** 32 - 1);
    expect([rng.randn(), rng.rand(), rng.randn(), rng.randn()]).toEqual([
      0.6484086742306527, 0.01793967398674523, 0.6693235306338161, 0.0813036681172692,
    ]);
  });

  it('drops the cached normal on re-seeding', () => {
    const rng = new RandomState(0);
    rng.randn(); // leaves 0.4001572083672233 cached
    rng.seed(0);
    expect(rng.randn()).toBe(1.764052345967664);
  });

  // numpy calls glibc's log, which is accurate to about 0.52 ulp but not always correctly rounded;
  // this port rounds correctly. Over the first 100,000 normals for seed 0 that changes 29 values
  // by one or two ulps, all listed here. The list was made by comparing against this port:
  //   g = np.random.RandomState(0).randn(100000); h(g)
  //   mine = <this port's 100,000 values>; [(i, repr(g[i])) for i in np.nonzero(mine != g)[0]]
  // and recomputing the polar method in Python with math.log reproduces numpy exactly, while
  // using float(Decimal(r2).ln()) reproduces this port exactly.
  const NUMPY_DIFFERS_AT: ReadonlyArray<readonly [number, number]> = [
    [662, 0.45248909263964643], [663, 0.0978961454126271], [9008, -0.14711307593695994],
    [9009, -0.3678592222981023], [10276, -0.533279619594086], [10277, 0.8407949521701985],
    [13176, -0.7759872946054266], [13177, 1.342054792081476], [15208, 0.06344594817854268],
    [15209, 0.5071093600223096], [32318, -0.7683633659071349], [32319, 0.33335026211794716],
    [41914, -0.21936706742683657], [41915, 0.6114021397972176], [46267, -1.3048652590380458],
    [50578, -0.44269962364943255], [51384, 0.14546328699430996], [61748, -1.2249165146981846],
    [61749, 1.0522678095667388], [77944, -0.24303272954379906], [82634, -0.24055127923845865],
    [82635, 0.4953965950679166], [85036, -0.7254547446375635], [85037, -0.8507792154841729],
    [89502, -0.2662746618488062], [93441, 0.7288543858603066], [93506, 0.8385151074084912],
    [93507, 0.33615265444856696], [95322, -0.12655032831772342],
  ];

  it('matches numpy bit for bit over 100,000 normals except where glibc misrounds log', () => {
    const g = new RandomState(0).randn(100000);
    expect(g[9999]).toBe(1.2981114320305154); // repr(g[9999])
    const patched = [...g];
    for (const [index, numpyValue] of NUMPY_DIFFERS_AT) {
      expect(g[index]).not.toBe(numpyValue);
      expect(Math.abs(ulps(g[index], numpyValue))).toBeLessThanOrEqual(2);
      patched[index] = numpyValue;
    }
    // Every other of the 100,000 values must be identical for the hash to match numpy's.
    expect(sha256Float64(patched)).toBe('06b8b448ce70018197442cc578383be6c0b1a83f2348f5b5c03176d0865a0d9e');
  });
});

describe('correctlyRoundedLog', () => {
  // from decimal import Decimal, getcontext; getcontext().prec = 50
  // [(repr(v), repr(float(Decimal(v).ln())), repr(math.log(v))) for v in ...]
  it.each([
    [0.8983774131025271, -0.10716501712225035], // glibc: -0.10716501712225036
    [0.628366954746784, -0.4646309603188614], // glibc: -0.4646309603188615
    [0.9245193184468341, -0.07848133227069923], // glibc: -0.07848133227069921
    [5e-324, -744.4400719213812],
    [2.2250738585072014e-308, -708.3964185322641],
    [0.5, -0.6931471805599453],
    [1, 0],
    [0.9999999999999999, -1.1102230246251565e-16],
    [1.0000000000000002, 2.2204460492503128e-16],
    [10, 2.302585092994046],
    [1e300, 690.7755278982137],
  ])('ln(%s) rounds to %s', (x, expected) => {
    expect(correctlyRoundedLog(x)).toBe(expected);
  });

  it('rounds correctly over 25,000 inputs spread across the exponent range', () => {
    // r = np.random.RandomState(1); u = r.rand(20000)
    // x = np.ldexp(r.rand(5000) + 0.5, r.randint(-1000, 1000, 5000)); xs = np.concatenate([u, x])
    // h(np.array([float(Decimal(float(v)).ln()) for v in xs]))   (math.log differs on 11 of these)
    const rng = new RandomState(1);
    const u = rng.rand(20000);
    const mantissas = rng.rand(5000);
    const exponents = rng.randint(-1000, 1000, 5000);
    const xs = [...u, ...mantissas.map((m, i) => (m + 0.5) * 2 ** exponents[i])];
    expect(sha256Float64(xs.map(correctlyRoundedLog))).toBe(
      '36f0f21417b894fbf50691aa3f579179c1457408bbc2bf9a1575804395880bdb',
    );
  });

  it('passes non-positive and non-finite inputs through like Math.log', () => {
    expect(correctlyRoundedLog(0)).toBe(-Infinity);
    expect(correctlyRoundedLog(-1)).toBeNaN();
    expect(correctlyRoundedLog(Infinity)).toBe(Infinity);
  });
});

describe('RandomState.randint', () => {
  it('matches numpy for the first values', () => {
    // np.random.RandomState(0).randint(0, 2, size=10).tolist()
    expect(new RandomState(0).randint(0, 2, 10)).toEqual([0, 1, 1, 0, 1, 1, 1, 1, 1, 1]);
  });

  it.each([
    // hi(np.random.RandomState(0).randint(0, 2, 100000))
    [0, 0, 2, 100000, 'edf34661cd430f1056fdcafdc967c90970638f495cf349f73ece21f816d86945'],
    // hi(np.random.RandomState(123).randint(-7, 1000, 100000)): a span that is not a power of two
    [123, -7, 1000, 100000, '6a931b8e54557fd1343fe659ed24e0d3ea25da08281933a53b563fd3046513cb'],
    // hi(np.random.RandomState(5).randint(0, 2**32, 1000)): the raw 32-bit path
    [5, 0, 2 ** 32, 1000, 'fe9165725c845ce9b25a1262121eb00f6cb05a0e833be888c9020d5e3a1bc5a4'],
    // hi(np.random.RandomState(5).randint(3, 2**32 + 2, 1000)): the widest masked span
    [5, 3, 2 ** 32 + 2, 1000, 'd4d06e5e106ab4e1cb93bc24109621b9247a17f1f0ac43add52790ade0fbf04f'],
  ])('seed %s, randint(%s, %s, %s) matches numpy bit for bit', (seed, low, high, size, hash) => {
    expect(sha256Int64(new RandomState(seed).randint(low, high, size))).toBe(hash);
  });

  it('draws nothing for a one-value range', () => {
    // r = np.random.RandomState(9); [r.randint(5, 6, 3).tolist(), r.rand()]
    const rng = new RandomState(9);
    expect(rng.randint(5, 6, 3)).toEqual([5, 5, 5]);
    expect(rng.rand()).toBe(0.010374153885699955);
  });

  it('refuses empty ranges and spans wider than 2**32', () => {
    const rng = new RandomState(0);
    expect(() => rng.randint(2, 2, 1)).toThrow(ConfigError);
    expect(() => rng.randint(0, 2 ** 32 + 1, 1)).toThrow(/at most 2\*\*32 values/);
  });
});
