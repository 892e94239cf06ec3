import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from '../tf.ts';
import { on, TestRandom, worstError } from './testing.ts';

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

describe('Sum and Mean on wasm match the cpu backend', () => {
  const cases: [number[], number | number[], boolean][] = [
    [[4, 5, 6, 8], [0, 1, 2], false], // per-channel statistics of an NHWC tensor
    [[4, 5, 6, 8], [2, 1, 0], true],
    [[7, 13], 0, false],
    [[7, 13], [-2], true],
    [[3, 4, 5], [0, 1], false],
    [[3, 4, 5], [1, 2], false], // trailing axes: the stock kernel
    [[3, 4, 5], [0, 2], true], // not contiguous: the stock kernel
    [[6, 5], [0, 1], false], // everything: the stock kernel
  ];
  it.each(cases)('reduces %j over axes %j (keepDims %s)', async (shape, axis, keepDims) => {
    const f = (): Tensor[] => {
      const x = tf.tensor(new TestRandom(size(shape)).array(size(shape)), shape);
      return [tf.sum(x, axis, keepDims), tf.mean(x, axis, keepDims)];
    };
    expect(worstError(await on('wasm', f), await on('cpu', f))).toBeLessThan(1e-6);
  });

  it('leaves int32 sums exact', async () => {
    const f = () => [tf.cast(tf.sum(tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32'), 0), 'float32')];
    expect(Array.from((await on('wasm', f)).values[0])).toEqual([9, 12]);
  });
});

describe('Sum and Mean gradients on wasm match the cpu backend', () => {
  const cases: [number[], number | number[]][] = [
    [[4, 5, 6, 8], [0, 1, 2]],
    [[4, 5, 6, 8], [1, 3]],
    [[7, 13], -1],
    [[7, 13], [0, 1]],
  ];
  it.each(cases)('x %j over axes %j', async (shape, axis) => {
    const f = (): Tensor[] => {
      const rng = new TestRandom(shape.length * 7);
      const n = shape.reduce((a, b) => a * b, 1);
      const x = tf.tensor(rng.array(n), shape);
      const r = tf.tensor(rng.array(tf.sum(x, axis).size), tf.sum(x, axis).shape);
      return [tf.grad((a: Tensor) => tf.sum(tf.mul(tf.sum(a, axis), r)))(x), tf.grad((a: Tensor) => tf.sum(tf.mul(tf.mean(a, axis), r)))(x)];
    };
    // Bit-identical: broadcasting dy equals dy·ones exactly.
    expect(worstError(await on('wasm', f), await on('cpu', f))).toBe(0);
  });
});
