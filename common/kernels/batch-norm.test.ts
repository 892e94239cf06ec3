import { describe, expect, it } from 'vitest';
import { tf, type Tensor } from '../tf.ts';
import { on, TestRandom, use, worstError } from './testing.ts';

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/**
 * batchNorm forward and, for per-channel [C] statistics with offset and scale (tfjs-core's gradient
 * supports no other case), its gradients with respect to x, mean, variance, offset and scale.
 */
function batchNorm(xShape: number[], paramShape: number[], withAffine: boolean, seed: number): () => Tensor[] {
  return () => {
    const rng = new TestRandom(seed);
    const x = tf.tensor(rng.array(size(xShape)), xShape);
    const mean = tf.tensor(rng.array(size(paramShape)), paramShape);
    const variance = tf.tensor(rng.array(size(paramShape)).map((v) => 0.5 + v * v), paramShape);
    const offset = withAffine ? tf.tensor(rng.array(size(paramShape)), paramShape) : undefined;
    const scale = withAffine ? tf.tensor(rng.array(size(paramShape)), paramShape) : undefined;
    const y = tf.batchNorm(x, mean, variance, offset, scale, 1e-3);
    if (!withAffine || paramShape.length !== 1) return [y];
    const r = tf.tensor(rng.array(size(xShape)), xShape);
    const f = (a: Tensor, m: Tensor, v: Tensor, o: Tensor, s: Tensor) => tf.sum(tf.mul(tf.batchNorm(a, m, v, o, s, 1e-3), r));
    return [y, ...tf.grads(f)([x, mean, variance, offset!, scale!])];
  };
}

describe('FusedBatchNorm on wasm matches the cpu backend', () => {
  const cases: [number[], number[], boolean][] = [
    [[4, 6, 5, 8], [8], true], // a conv activation, per-channel statistics (tfjs-layers training)
    [[7, 16], [16], true], // after a Dense layer
    [[3, 4, 4, 5], [1, 1, 1, 5], true],
    [[3, 4, 4, 5], [5], false], // no offset or scale
    [[3, 4, 2, 5], [4, 2, 5], true], // broadcast statistics: the stock kernel
  ];
  it.each(cases)('x %j, statistics %j, offset and scale %s', async (xShape, paramShape, withAffine) => {
    const seed = size(xShape) + paramShape.length;
    const cpu = await on('cpu', batchNorm(xShape, paramShape, withAffine, seed));
    const wasm = await on('wasm', batchNorm(xShape, paramShape, withAffine, seed));
    expect(worstError(wasm, cpu)).toBeLessThan(1e-5);
  });
});

describe('the FusedBatchNorm gradient on wasm', () => {
  it('leaves no tensors behind when only some inputs need gradients', async () => {
    await use('wasm');
    const x = tf.randomNormal([4, 3, 3, 8]);
    const [mean, variance, offset, scale] = [tf.zeros([8]), tf.ones([8]), tf.zeros([8]), tf.ones([8])];
    const before = tf.memory();
    const dx = tf.grad((a: Tensor) => tf.sum(tf.batchNorm(a, mean, variance, offset, scale, 1e-3)))(x);
    dx.dispose();
    expect(tf.memory().numTensors).toBe(before.numTensors);
    expect(tf.memory().numDataBuffers).toBe(before.numDataBuffers);
    tf.dispose([x, mean, variance, offset, scale]);
  });
});
