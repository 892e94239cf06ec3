import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from '../tf.ts';
import { on, TestRandom, worstError } from './testing.ts';

interface MatMulCase {
  batch: number[];
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

const label = (c: MatMulCase) => `[${c.batch}] ${c.m}×${c.k} · ${c.k}×${c.n}${c.transposeA ? ' Aᵀ' : ''}${c.transposeB ? ' Bᵀ' : ''}`;

/** The product and both of its gradients, which are themselves transposed products. */
function product(c: MatMulCase, seed: number): () => Tensor[] {
  return () => {
    const rng = new TestRandom(seed);
    const aShape = [...c.batch, ...(c.transposeA ? [c.k, c.m] : [c.m, c.k])];
    const bShape = [...c.batch, ...(c.transposeB ? [c.n, c.k] : [c.k, c.n])];
    const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
    const a = tf.tensor(rng.array(size(aShape)), aShape);
    const b = tf.tensor(rng.array(size(bShape)), bShape);
    const r = tf.tensor(rng.array(size([...c.batch, c.m, c.n])), [...c.batch, c.m, c.n]);
    const f = (x: Tensor, y: Tensor) => tf.matMul(x, y, c.transposeA, c.transposeB);
    return [f(a, b), ...tf.grads((x: Tensor, y: Tensor) => tf.sum(tf.mul(f(x, y), r)))([a, b])];
  };
}

describe('BatchMatMul on wasm matches the cpu backend', () => {
  const rng = new TestRandom(21);
  const cases: MatMulCase[] = [];
  for (const batch of [[], [1], [3]]) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        cases.push({ batch, m: rng.int(1, 40), k: rng.int(1, 70), n: rng.int(1, 40), transposeA, transposeB });
      }
    }
  }
  // The shapes of the models' Dense layers: a weight gradient xᵀ·dy, an input gradient dy·Wᵀ.
  cases.push({ batch: [], m: 3072, k: 32, n: 128, transposeA: true, transposeB: false });
  cases.push({ batch: [], m: 32, k: 64, n: 128, transposeA: false, transposeB: true });
  cases.push({ batch: [], m: 5, k: 7, n: 300, transposeA: false, transposeB: true });

  it.each(cases.map((c, i) => [label(c), c, 400 + i] as const))('%s', async (_, c, seed) => {
    const cpu = await on('cpu', product(c, seed));
    const wasm = await on('wasm', product(c, seed));
    expect(worstError(wasm, cpu)).toBeLessThan(1e-5);
  });
});
