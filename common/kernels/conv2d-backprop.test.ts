import { describe, expect, it } from 'vitest';
import { tf, tfc, type Tensor } from '../tf.ts';
import { filterGradOptions } from './conv2d-backprop-filter.ts';
import { inputGradOptions } from './conv2d-backprop-input.ts';
import { on, TestRandom, worstError } from './testing.ts';

interface ConvCase {
  n: number;
  h: number;
  w: number;
  cin: number;
  cout: number;
  kh: number;
  kw: number;
  stride: number;
  pad: 'valid' | 'same' | number;
}

const label = (c: ConvCase) =>
  `x [${c.n},${c.h},${c.w},${c.cin}] * W [${c.kh},${c.kw},${c.cin},${c.cout}] stride ${c.stride} pad ${c.pad}`;

/** dL/dx and dL/dW of L = Σ conv2d(x, W) ⊙ r, with x, W and r drawn from `seed`. */
function convGrads(c: ConvCase, seed: number, fused: boolean): () => Tensor[] {
  return () => {
    const rng = new TestRandom(seed);
    const x = tf.tensor4d(rng.array(c.n * c.h * c.w * c.cin), [c.n, c.h, c.w, c.cin]);
    const w = tf.tensor4d(rng.array(c.kh * c.kw * c.cin * c.cout), [c.kh, c.kw, c.cin, c.cout]);
    const bias = tf.tensor1d(rng.array(c.cout));
    const conv = (xs: Tensor, ws: Tensor) =>
      fused
        ? tf.fused.conv2d({ x: xs as tfc.Tensor4D, filter: ws as tfc.Tensor4D, strides: c.stride, pad: c.pad, bias })
        : tf.conv2d(xs as tfc.Tensor4D, ws as tfc.Tensor4D, c.stride, c.pad);
    const shape = conv(x, w).shape;
    const r = tf.tensor(rng.array(shape.reduce((a, b) => a * b, 1)), shape);
    return tf.grads((xs: Tensor, ws: Tensor) => tf.sum(tf.mul(conv(xs, ws), r)))([x, w]);
  };
}

/** Both formulations of each gradient against cpu. */
async function expectMatchesCpu(c: ConvCase, seed: number, fused = false): Promise<void> {
  const cpu = await on('cpu', convGrads(c, seed, fused));
  const methods = [['im2col', 'col2im'], ['conv', 'conv']] as const;
  try {
    for (const [filterMethod, inputMethod] of methods) {
      filterGradOptions.method = filterMethod;
      inputGradOptions.method = inputMethod;
      const wasm = await on('wasm', convGrads(c, seed, fused));
      expect(worstError(wasm, cpu), `${label(c)}, gradients by ${filterMethod} and ${inputMethod}`).toBeLessThan(1e-4);
    }
  } finally {
    filterGradOptions.method = 'auto';
    inputGradOptions.method = 'auto';
  }
}

function randomCases(count: number, seed: number): ConvCase[] {
  const rng = new TestRandom(seed);
  return Array.from({ length: count }, () => {
    const k = rng.pick([3, 5]);
    return {
      n: rng.pick([1, 2, 3, 8]),
      h: rng.int(k, 17),
      w: rng.int(k, 17),
      cin: rng.pick([1, 3, 6, 16]),
      cout: rng.pick([1, 4, 16, 32]),
      kh: k,
      kw: k,
      stride: 1,
      pad: 'valid' as const,
    };
  });
}

describe('Conv2D gradients on wasm match the cpu backend', () => {
  it.each(randomCases(12, 7).map((c, i) => [label(c), c, 100 + i] as const))('random stride-1 valid case: %s', async (_, c, seed) => {
    await expectMatchesCpu(c, seed);
  });

  it("matches for the models' own layer shapes", async () => {
    // lenet conv2d_1, cnn conv2d_1 and conv2d_2, at a small batch.
    await expectMatchesCpu({ n: 4, h: 14, w: 14, cin: 6, cout: 16, kh: 5, kw: 5, stride: 1, pad: 'valid' }, 1);
    await expectMatchesCpu({ n: 3, h: 15, w: 15, cin: 32, cout: 64, kh: 3, kw: 3, stride: 1, pad: 'valid' }, 2);
    await expectMatchesCpu({ n: 2, h: 6, w: 6, cin: 64, cout: 64, kh: 3, kw: 3, stride: 1, pad: 'valid' }, 3);
  });

  it('matches through the fused conv2d (bias) gradient, which calls the backprop kernels directly', async () => {
    await expectMatchesCpu({ n: 3, h: 11, w: 12, cin: 5, cout: 7, kh: 3, kw: 3, stride: 1, pad: 'valid' }, 4, true);
  });

  it("matches with 'same' and explicit padding, odd and even and non-square filters", async () => {
    await expectMatchesCpu({ n: 2, h: 9, w: 10, cin: 3, cout: 5, kh: 3, kw: 3, stride: 1, pad: 'same' }, 5);
    await expectMatchesCpu({ n: 2, h: 8, w: 7, cin: 4, cout: 3, kh: 4, kw: 2, stride: 1, pad: 'same' }, 6);
    await expectMatchesCpu({ n: 2, h: 10, w: 9, cin: 3, cout: 4, kh: 3, kw: 5, stride: 1, pad: 'valid' }, 7);
    // A numeric pad with a non-square filter hits a tfjs shape bug (the output width uses kh), so square.
    await expectMatchesCpu({ n: 2, h: 9, w: 8, cin: 3, cout: 4, kh: 5, kw: 5, stride: 1, pad: 2 }, 10);
  });

  it('falls back correctly for strides other than 1', async () => {
    await expectMatchesCpu({ n: 2, h: 11, w: 10, cin: 3, cout: 4, kh: 3, kw: 3, stride: 2, pad: 'valid' }, 8);
    await expectMatchesCpu({ n: 2, h: 9, w: 9, cin: 2, cout: 3, kh: 5, kw: 5, stride: 2, pad: 'same' }, 9);
  });
});
