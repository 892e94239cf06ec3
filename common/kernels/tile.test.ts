import { describe, expect, it } from 'vitest';
import { tf } from '../tf.ts';
import { on, TestRandom, worstError } from './testing.ts';

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

describe('Tile on wasm matches the cpu backend', () => {
  const cases: [number[], number[]][] = [
    [[1, 1, 1, 8], [4, 5, 3, 1]], // BatchNorm's gradient: a per-channel vector over N, H, W
    [[2, 3], [3, 2]],
    [[3, 1, 2], [1, 4, 1]],
    [[5], [1]],
    [[2, 3, 4, 5], [2, 1, 3, 1]],
    [[4, 3], [0, 2]],
  ];
  it.each(cases)('tiles %j by %j', async (shape, reps) => {
    const f = () => [tf.tile(tf.tensor(new TestRandom(size(shape)).array(size(shape)), shape), reps)];
    expect(worstError(await on('wasm', f), await on('cpu', f))).toBe(0);
  });

  it('tiles int32 and bool tensors and scalars-as-rank-1 exactly', async () => {
    const f = () => [
      tf.cast(tf.tile(tf.tensor2d([1, -2, 3, 4], [2, 2], 'int32'), [2, 3]), 'float32'),
      tf.cast(tf.tile(tf.tensor1d([true, false], 'bool'), [3]), 'float32'),
      tf.tile(tf.tensor1d([7]), [5]),
    ];
    expect(worstError(await on('wasm', f), await on('cpu', f))).toBe(0);
  });
});
