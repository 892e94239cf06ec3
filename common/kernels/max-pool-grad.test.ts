import { describe, expect, it } from 'vitest';
import { tf, tfc, type Tensor } from '../tf.ts';
import { on, TestRandom, worstError } from './testing.ts';

interface PoolCase {
  n: number;
  h: number;
  w: number;
  c: number;
  size: number;
  stride: number;
  pad: 'valid' | 'same';
  /** Quantise x to a few levels and apply ReLU, so that windows have tied maxima (mostly zeros). */
  ties?: boolean;
}

const label = (p: PoolCase) => `x [${p.n},${p.h},${p.w},${p.c}] pool ${p.size} stride ${p.stride} ${p.pad}${p.ties ? ' with ties' : ''}`;

function poolGrad(p: PoolCase, seed: number): () => Tensor[] {
  return () => {
    const rng = new TestRandom(seed);
    let values = rng.array(p.n * p.h * p.w * p.c);
    if (p.ties) values = values.map((v) => Math.max(0, Math.round(v * 2)));
    const x = tf.tensor4d(values, [p.n, p.h, p.w, p.c]);
    const pool = (xs: Tensor) => tf.maxPool(xs as tfc.Tensor4D, p.size, p.stride, p.pad);
    const shape = pool(x).shape;
    const r = tf.tensor(rng.array(shape.reduce((a, b) => a * b, 1)), shape);
    return [tf.grad((xs: Tensor) => tf.sum(tf.mul(pool(xs), r)))(x)];
  };
}

async function expectMatchesCpu(p: PoolCase, seed: number): Promise<void> {
  const cpu = await on('cpu', poolGrad(p, seed));
  const wasm = await on('wasm', poolGrad(p, seed));
  // Routing a gradient is exact: no arithmetic, except adding where windows overlap.
  expect(worstError(wasm, cpu), label(p)).toBeLessThan(p.size > p.stride ? 1e-6 : 1e-12);
}

describe('MaxPoolGrad on wasm matches the cpu backend', () => {
  const rng = new TestRandom(11);
  const cases = Array.from({ length: 10 }, (_, i): PoolCase => ({
    n: rng.pick([1, 2, 5]),
    h: rng.int(2, 19),
    w: rng.int(2, 19),
    c: rng.pick([1, 3, 6, 16]),
    size: 2,
    stride: 2,
    pad: 'valid',
    ties: i % 2 === 1,
  }));

  it.each(cases.map((p, i) => [label(p), p, 200 + i] as const))('2×2 stride 2, as in the models: %s', async (_, p, seed) => {
    await expectMatchesCpu(p, seed);
  });

  it('gives a tied window its whole gradient once, at the first maximum in row-major order', async () => {
    const grad = await on('wasm', () => {
      // One 2×2 window, all four values equal: only the top-left position gets the gradient.
      const x = tf.tensor4d([0, 0, 0, 0], [1, 2, 2, 1]);
      return [tf.grad((xs: Tensor) => tf.sum(tf.mul(tf.maxPool(xs as tfc.Tensor4D, 2, 2, 'valid'), 3)))(x)];
    });
    expect(Array.from(grad.values[0])).toEqual([3, 0, 0, 0]);
  });

  it('drops the last row and column of odd-sized inputs (they get zero gradient)', async () => {
    const grad = await on('wasm', () => {
      const x = tf.tensor4d([1, 2, 9, 3, 4, 9, 9, 9, 9], [1, 3, 3, 1]);
      return [tf.grad((xs: Tensor) => tf.sum(tf.maxPool(xs as tfc.Tensor4D, 2, 2, 'valid')))(x)];
    });
    expect(Array.from(grad.values[0])).toEqual([0, 0, 0, 0, 1, 0, 0, 0, 0]);
  });

  it('matches for overlapping windows, stride 1 and same padding (the generic path)', async () => {
    await expectMatchesCpu({ n: 2, h: 9, w: 8, c: 3, size: 3, stride: 2, pad: 'valid' }, 300);
    await expectMatchesCpu({ n: 2, h: 7, w: 7, c: 4, size: 3, stride: 2, pad: 'same', ties: true }, 301);
    await expectMatchesCpu({ n: 1, h: 6, w: 5, c: 2, size: 2, stride: 1, pad: 'valid' }, 302);
    await expectMatchesCpu({ n: 2, h: 7, w: 9, c: 3, size: 2, stride: 2, pad: 'same', ties: true }, 303);
  });
});
