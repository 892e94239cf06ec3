import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf, tfc, type Tensor } from '../../tf.ts';
import { on, TestRandom, use, worstError } from '../testing.ts';
import { loadNativeKernels } from './addon.ts';
import { MIN_POOL_CHANNELS } from './onednn-kernels.ts';
import { installTrainingKernels, uninstallNativeKernels } from './install-native.ts';
import { fitStandardization, preprocessBatch } from '../../data/preprocess.ts';
import { countCalls, requireNativeOrSkip } from './native-testing.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);

const calls = load.loaded
  ? countCalls(load.kernels, ['conv2d', 'conv2dBackpropInput', 'conv2dBackpropFilter', 'matMul', 'maxPool', 'maxPoolGrad', 'batchNorm', 'batchNormGrad', 'sumRows', 'standardize', 'biasAdd'])
  : new Map<string, number>();
const called = (name: string) => calls.get(name) ?? 0;

afterAll(async () => {
  if (load.loaded) await use('wasm');
});

/** Runs `f` on cpu and on wasm with the native kernels; returns the worst relative error. */
async function compare(f: () => Tensor[]): Promise<number> {
  const cpu = await on('cpu', f);
  const onednn = await on('onednn', f);
  return worstError(onednn, cpu);
}

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

const convLabel = (c: ConvCase) => `x [${c.n},${c.h},${c.w},${c.cin}] * W [${c.kh},${c.kw},${c.cin},${c.cout}] stride ${c.stride} pad ${c.pad}`;

/** y = relu(conv(x, W) + b) (or plain conv), and dL/dx, dL/dW for L = Σ y ⊙ r. */
function convCase(c: ConvCase, seed: number, fused: boolean): () => Tensor[] {
  return () => {
    const rng = new TestRandom(seed);
    const x = tf.tensor4d(rng.array(c.n * c.h * c.w * c.cin), [c.n, c.h, c.w, c.cin]);
    const w = tf.tensor4d(rng.array(c.kh * c.kw * c.cin * c.cout), [c.kh, c.kw, c.cin, c.cout]);
    const bias = tf.tensor1d(rng.array(c.cout));
    const conv = (xs: Tensor, ws: Tensor) =>
      fused
        ? tf.fused.conv2d({ x: xs as tfc.Tensor4D, filter: ws as tfc.Tensor4D, strides: c.stride, pad: c.pad, bias, activation: 'relu' })
        : tf.conv2d(xs as tfc.Tensor4D, ws as tfc.Tensor4D, c.stride, c.pad);
    const y = conv(x, w);
    const r = tf.tensor(rng.array(y.size), y.shape);
    return [y, ...tf.grads((xs: Tensor, ws: Tensor) => tf.sum(tf.mul(conv(xs, ws), r)))([x, w])];
  };
}

function randomConvCases(count: number, seed: number): ConvCase[] {
  const rng = new TestRandom(seed);
  return Array.from({ length: count }, () => {
    const k = rng.pick([1, 2, 3, 5]);
    return {
      n: rng.pick([1, 2, 3, 8]),
      h: rng.int(k, 17),
      w: rng.int(k, 17),
      cin: rng.pick([1, 3, 6, 16, 32]),
      cout: rng.pick([1, 4, 16, 32, 64]),
      kh: k,
      kw: k,
      stride: rng.pick([1, 1, 2]),
      pad: rng.pick(['valid', 'valid', 'same'] as const),
    };
  });
}

describe.skipIf(!native)('oneDNN convolutions match the cpu backend', () => {
  it.each(randomConvCases(14, 11).map((c, i) => [convLabel(c), c, 200 + i] as const))('forward, input and filter gradients: %s', async (_, c, seed) => {
    const before = [called('conv2d'), called('conv2dBackpropInput'), called('conv2dBackpropFilter')];
    expect(await compare(convCase(c, seed, seed % 2 === 0)), convLabel(c)).toBeLessThan(1e-4);
    expect([called('conv2d'), called('conv2dBackpropInput'), called('conv2dBackpropFilter')].map((n, i) => n - before[i])).toEqual([2, 1, 1]);
  });

  it("matches for the models' own layer shapes, fused with bias and relu", async () => {
    const shapes: ConvCase[] = [
      { n: 4, h: 32, w: 32, cin: 3, cout: 6, kh: 5, kw: 5, stride: 1, pad: 'valid' },
      { n: 4, h: 14, w: 14, cin: 6, cout: 16, kh: 5, kw: 5, stride: 1, pad: 'valid' },
      { n: 4, h: 32, w: 32, cin: 3, cout: 32, kh: 3, kw: 3, stride: 1, pad: 'valid' },
      { n: 3, h: 15, w: 15, cin: 32, cout: 64, kh: 3, kw: 3, stride: 1, pad: 'valid' },
      { n: 2, h: 6, w: 6, cin: 64, cout: 64, kh: 3, kw: 3, stride: 1, pad: 'valid' },
    ];
    for (const [i, c] of shapes.entries()) expect(await compare(convCase(c, 300 + i, true)), convLabel(c)).toBeLessThan(1e-4);
  });

  it('matches with numeric padding and non-square filters', async () => {
    expect(await compare(convCase({ n: 2, h: 9, w: 8, cin: 3, cout: 4, kh: 5, kw: 5, stride: 1, pad: 2 }, 310, true))).toBeLessThan(1e-4);
    expect(await compare(convCase({ n: 2, h: 10, w: 9, cin: 3, cout: 4, kh: 3, kw: 5, stride: 1, pad: 'valid' }, 311, false))).toBeLessThan(1e-4);
    expect(await compare(convCase({ n: 2, h: 8, w: 7, cin: 4, cout: 3, kh: 4, kw: 2, stride: 1, pad: 'same' }, 312, false))).toBeLessThan(1e-4);
  });

  it('falls back to the wasm kernels for dilated convolutions, and still matches', async () => {
    const before = called('conv2d');
    const f = () => {
      const rng = new TestRandom(320);
      const x = tf.tensor4d(rng.array(2 * 9 * 9 * 3), [2, 9, 9, 3]);
      const w = tf.tensor4d(rng.array(3 * 3 * 3 * 4), [3, 3, 3, 4]);
      return [tf.conv2d(x, w, 1, 'valid', 'NHWC', 2)];
    };
    expect(await compare(f)).toBeLessThan(1e-4);
    expect(called('conv2d')).toBe(before);
  });
});

interface MatMulCase {
  batchA: number[];
  batchB: number[];
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

const mmLabel = (c: MatMulCase) => `[${c.batchA}]·[${c.batchB}] ${c.m}×${c.k} · ${c.k}×${c.n}${c.transposeA ? ' Aᵀ' : ''}${c.transposeB ? ' Bᵀ' : ''}`;

function matMulCase(c: MatMulCase, seed: number, fused: boolean): () => Tensor[] {
  return () => {
    const rng = new TestRandom(seed);
    const aShape = [...c.batchA, ...(c.transposeA ? [c.k, c.m] : [c.m, c.k])];
    const bShape = [...c.batchB, ...(c.transposeB ? [c.n, c.k] : [c.k, c.n])];
    const size = (s: number[]) => s.reduce((x, y) => x * y, 1);
    const a = tf.tensor(rng.array(size(aShape)), aShape);
    const b = tf.tensor(rng.array(size(bShape)), bShape);
    const bias = tf.tensor1d(rng.array(c.n));
    const f = (x: Tensor, y: Tensor) =>
      fused ? tf.fused.matMul({ a: x, b: y, transposeA: c.transposeA, transposeB: c.transposeB, bias, activation: 'relu' }) : tf.matMul(x, y, c.transposeA, c.transposeB);
    const y = f(a, b);
    const r = tf.tensor(rng.array(y.size), y.shape);
    return [y, ...tf.grads((x: Tensor, z: Tensor) => tf.sum(tf.mul(f(x, z), r)))([a, b])];
  };
}

describe.skipIf(!native)('oneDNN matrix products match the cpu backend', () => {
  const cases: MatMulCase[] = [];
  const rng = new TestRandom(12);
  for (const transposeA of [false, true]) {
    for (const transposeB of [false, true]) {
      for (const batch of [[], [3]]) cases.push({ batchA: batch, batchB: batch, m: rng.int(1, 40), k: rng.int(1, 70), n: rng.int(1, 40), transposeA, transposeB });
    }
  }
  cases.push({ batchA: [], batchB: [], m: 3072, k: 32, n: 128, transposeA: true, transposeB: false }); // the mlp's first weight gradient

  it.each(cases.map((c, i) => [mmLabel(c), c, 400 + i] as const))('product and both gradients: %s', async (_, c, seed) => {
    const before = called('matMul');
    expect(await compare(matMulCase(c, seed, false)), mmLabel(c)).toBeLessThan(1e-4);
    // The product twice (once for its value, once under the gradient), then one per gradient.
    expect(called('matMul') - before).toBe(4);
  });

  it('broadcasts a single matrix against a batch (forward: tfjs cannot take this gradient)', async () => {
    const f = () => {
      const rng = new TestRandom(430);
      return [tf.matMul(tf.tensor(rng.array(2 * 3 * 5 * 7), [2, 3, 5, 7]), tf.tensor(rng.array(7 * 4), [7, 4]))];
    };
    const before = called('matMul');
    expect(await compare(f)).toBeLessThan(1e-4);
    expect(called('matMul') - before).toBe(1);
  });

  it("the Dense layers' fused product with bias and relu (the mlp's first layer)", async () => {
    expect(await compare(matMulCase({ batchA: [], batchB: [], m: 32, k: 3072, n: 128, transposeA: false, transposeB: false }, 420, true))).toBeLessThan(1e-4);
    expect(await compare(matMulCase({ batchA: [], batchB: [], m: 7, k: 5, n: 3, transposeA: true, transposeB: false }, 421, true))).toBeLessThan(1e-4);
  });
});

describe.skipIf(!native)('oneDNN-addon pooling and BatchNorm match the cpu backend', () => {
  /** Max pooling and its gradient; `ties` rounds x so that windows hold equal maxima. */
  function pool(shape: [number, number, number, number], size: number, stride: number, pad: 'valid' | 'same', ties: boolean, seed: number): () => Tensor[] {
    return () => {
      const rng = new TestRandom(seed);
      const values = rng.array(shape.reduce((a, b) => a * b, 1)).map((v) => (ties ? Math.max(0, Math.round(v * 2)) : v));
      const x = tf.tensor4d(values, shape);
      const f = (xs: Tensor) => tf.maxPool(xs as tfc.Tensor4D, size, stride, pad);
      const y = f(x);
      const r = tf.tensor(rng.array(y.size), y.shape);
      return [y, tf.grad((xs: Tensor) => tf.sum(tf.mul(f(xs), r)))(x)];
    };
  }

  it('max pooling forward and gradient: 2×2/2 windows, odd sizes, ties, overlapping and padded windows', async () => {
    const before = [called('maxPool'), called('maxPoolGrad')];
    const cases: [[number, number, number, number], number, number, 'valid' | 'same', boolean][] = [
      [[4, 30, 30, 32], 2, 2, 'valid', false],
      [[4, 13, 13, 64], 2, 2, 'valid', true],
      [[3, 9, 7, 5], 3, 1, 'valid', true],
      [[2, 9, 8, 3], 3, 2, 'same', false],
      [[2, 7, 7, 6], 2, 2, 'same', true],
    ];
    cases.push([[3, 9, 7, 16], 3, 1, 'valid', true], [[2, 9, 8, 16], 3, 2, 'same', false], [[3, 7, 9, 6], 2, 2, 'valid', true]);
    // lenet's two poolings, whose channel counts (6 and 16) the addon's 2×2 loops know at compile time.
    cases.push([[2, 28, 28, 6], 2, 2, 'valid', true], [[2, 10, 10, 16], 2, 2, 'valid', false]);
    for (const [i, [shape, size, stride, pad, ties]] of cases.entries()) {
      // Pooling moves values: exact, except where overlapping windows add gradients in another order.
      const error = await compare(pool(shape, size, stride, pad, ties, 500 + i));
      expect(error, `${shape} ${size}/${stride} ${pad}${ties ? ' ties' : ''}`).toBeLessThan(size > stride ? 1e-6 : Number.MIN_VALUE);
    }
    // Fewer channels than MIN_POOL_CHANNELS take the wasm kernels (and must match all the same),
    // except 2×2/stride-2 windows with no padding before, forward and gradient, which the addon
    // takes at any width.
    const wide = cases.filter(([shape]) => shape[3] >= MIN_POOL_CHANNELS).length;
    // ('same' padding of 2×2/2 windows pads only after, so it is plain 2×2 as well.)
    const plain = cases.filter(([shape, size, stride]) => shape[3] < MIN_POOL_CHANNELS && size === 2 && stride === 2).length;
    expect([wide, plain]).toEqual([5, 3]);
    expect([called('maxPool') - before[0], called('maxPoolGrad') - before[1]]).toEqual([2 * (wide + plain), wide + plain]);
  });

  /** Batch normalisation with its statistics from the batch (as in training) and all its gradients. */
  function batchNorm(shape: number[], seed: number): () => Tensor[] {
    return () => {
      const rng = new TestRandom(seed);
      const c = shape[shape.length - 1];
      const x = tf.tensor(rng.array(shape.reduce((a, b) => a * b, 1)).map((v) => 3 * v + 0.5), shape);
      const gamma = tf.tensor1d(rng.array(c).map((v) => 1 + 0.3 * v));
      const beta = tf.tensor1d(rng.array(c));
      const axes = shape.slice(0, -1).map((_, i) => i);
      const f = (xs: Tensor, g: Tensor, b: Tensor) => {
        const { mean, variance } = tf.moments(xs, axes);
        return tf.batchNorm(xs, mean, variance, b, g, 1e-3);
      };
      const y = f(x, gamma, beta);
      const r = tf.tensor(rng.array(y.size), y.shape);
      return [y, ...tf.grads((xs: Tensor, g: Tensor, b: Tensor) => tf.sum(tf.mul(f(xs, g, b), r)))([x, gamma, beta])];
    };
  }

  it('BatchNorm forward and gradient, 4-D and 2-D', async () => {
    const before = [called('batchNorm'), called('batchNormGrad')];
    for (const [i, shape] of [[4, 30, 30, 32], [3, 5, 7, 5], [32, 64], [6, 3]].entries()) {
      expect(await compare(batchNorm(shape, 600 + i)), `[${shape}]`).toBeLessThan(1e-4);
    }
    expect([called('batchNorm') - before[0], called('batchNormGrad') - before[1]]).toEqual([8, 4]);
  });
});

describe.skipIf(!native)('oneDNN-addon sums over leading axes match the cpu backend', () => {
  it('Sum and Mean over [N,H,W] and [N] (bias gradients, statistics), with and without keepDims', async () => {
    const before = called('sumRows');
    const f = () => {
      const rng = new TestRandom(700);
      const x = tf.tensor4d(rng.array(4 * 30 * 30 * 32), [4, 30, 30, 32]);
      const y = tf.tensor2d(rng.array(32 * 64), [32, 64]);
      return [tf.sum(x, [0, 1, 2]), tf.mean(x, [0, 1, 2], true), tf.sum(y, 0), tf.mean(y, 0), tf.sum(x, [0, 1])];
    };
    expect(await compare(f)).toBeLessThan(1e-6);
    expect(called('sumRows') - before).toBe(5);
  });

  it('falls back for other axes, and still matches', async () => {
    const before = called('sumRows');
    const f = () => {
      const rng = new TestRandom(701);
      const x = tf.tensor3d(rng.array(5 * 6 * 7), [5, 6, 7]);
      return [tf.sum(x, [1, 2]), tf.mean(x, -1), tf.sum(x)];
    };
    expect(await compare(f)).toBeLessThan(1e-6);
    expect(called('sumRows')).toBe(before);
  });
});

describe.skipIf(!native)('the native bias add matches the cpu backend', () => {
  it('adds a [C] or [1,…,1,C] bias over the leading axes exactly, for any channel count, and falls back otherwise', async () => {
    const before = called('biasAdd');
    const f = () => {
      const rng = new TestRandom(710);
      const t = (shape: number[]) => tf.tensor(rng.array(shape.reduce((a, b) => a * b, 1)), shape);
      return [
        tf.add(t([16, 28, 28, 6]), t([6])),
        tf.add(t([4, 30, 30, 32]), t([32])),
        tf.add(t([3, 5, 5, 37]), t([1, 1, 1, 37])),
        tf.add(t([16, 64]), t([64])),
        tf.add(t([7, 1]), t([1])),
        tf.add(t([5]), t([5])),
      ];
    };
    expect(await compare(f)).toBe(0);
    expect(called('biasAdd') - before).toBe(6);
    const fallbacks = () => {
      const rng = new TestRandom(711);
      const t = (shape: number[]) => tf.tensor(rng.array(shape.reduce((a, b) => a * b, 1)), shape);
      return [tf.add(t([4, 5]), t([4, 5])), tf.add(t([5]), t([3, 5])), tf.add(t([4, 5]), t([4, 1])), tf.add(t([2, 3]), tf.scalar(2)), tf.add(tf.tensor1d([1, 2], 'int32'), tf.tensor1d([3, 4], 'int32'))];
    };
    expect(await compare(fallbacks)).toBe(0);
    expect(called('biasAdd') - before).toBe(6);
  });
});

describe.skipIf(!native)('native standardization of the mlp input', () => {
  const count = 40;
  const rng = new TestRandom(800);
  const images = Uint8Array.from({ length: count * 3072 }, () => Math.floor(rng.next() * 256));
  const prep = fitStandardization({ images, labels: new Uint8Array(count), count });

  it('is bit-identical to the JavaScript loop, and preprocessBatch uses it while the native kernels are installed', () => {
    if (!load.loaded) throw new Error('unreachable');
    uninstallNativeKernels();
    const before = called('standardize');
    const js = preprocessBatch(images, prep);
    expect(called('standardize')).toBe(before);
    installTrainingKernels();
    const viaNative = preprocessBatch(images, prep);
    expect(called('standardize')).toBe(before + 1);
    expect(Buffer.from(viaNative.buffer).equals(Buffer.from(js.buffer))).toBe(true);
    expect(js.some((v) => v !== 0)).toBe(true);
  });

  it('scales the CNNs\' input natively too, to the bits of the JavaScript table, for every byte value', () => {
    if (!load.loaded) throw new Error('unreachable');
    const every = Uint8Array.from({ length: 2 * 3072 }, (_, i) => (i * 131) & 255);
    uninstallNativeKernels();
    const before = called('standardize');
    const js = preprocessBatch(every, { kind: 'scale' });
    expect(called('standardize')).toBe(before);
    installTrainingKernels();
    const viaNative = preprocessBatch(every, { kind: 'scale' });
    expect(called('standardize')).toBe(before + 1);
    expect(new Set(every).size).toBe(256);
    expect(Buffer.from(viaNative.buffer).equals(Buffer.from(js.buffer))).toBe(true);
  });

  it('rejects mismatched arrays instead of reading past them', () => {
    if (!load.loaded) throw new Error('unreachable');
    expect(() => load.kernels.standardize(images, prep.mean, prep.std, new Float32Array(5))).toThrow(/output of the same length/);
    expect(() => load.kernels.standardize(images, prep.mean, prep.std.subarray(1), new Float32Array(images.length))).toThrow(/whole rows/);
    expect(() => load.kernels.standardize(images, prep.mean as unknown as Float32Array, new Uint8Array(3072) as unknown as Float32Array, new Float32Array(images.length))).toThrow(/std \(Float32Array\) has the wrong type/);
  });
});

describe.skipIf(!native)('the native kernels manage memory like the wasm ones', () => {
  it('each kernel allocates exactly its outputs', async () => {
    await use('onednn');
    const x = tf.randomNormal([2, 9, 9, 3]);
    const w = tf.randomNormal([3, 3, 3, 4]);
    const dy = tf.randomNormal([2, 7, 7, 4]);
    const a = tf.randomNormal([6, 5]);
    const dy16 = tf.randomNormal([2, 6, 6, 16]);
    const c = tf.randomNormal([4]);
    const variance = tf.abs(c);
    const runs: [string, tfc.NamedTensorMap, tfc.NamedAttrMap, number][] = [
      ['Conv2D', { x, filter: w }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1 }, 1],
      ['FusedConv2D', { x, filter: w, bias: c }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', dilations: 1, activation: 'relu' }, 1],
      ['Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] }, 1],
      ['Conv2DBackpropInput', { dy, filter: w }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', inputShape: [2, 9, 9, 3] }, 1],
      ['BatchMatMul', { a, b: a }, { transposeA: true, transposeB: false }, 1],
      ['_FusedMatMul', { a, b: a, bias: tf.zeros([5]) }, { transposeA: true, transposeB: false, activation: 'relu' }, 1],
      ['MaxPool', { x: dy16 }, { filterSize: 2, strides: 2, pad: 'valid' }, 1],
      ['MaxPoolGrad', { dy: dy16, input: dy16, output: dy16 }, { filterSize: 1, strides: 1, pad: 'valid' }, 1],
      ['FusedBatchNorm', { x: dy, mean: c, variance, offset: c, scale: c }, { varianceEpsilon: 1e-3 }, 1],
      ['DtrainFusedBatchNormGrad', { dy, x: dy, mean: c, variance, scale: c }, { varianceEpsilon: 1e-3 }, 5],
      ['Sum', { x: dy }, { axis: [0, 1, 2], keepDims: false }, 1],
      ['Mean', { x: dy }, { axis: [0, 1, 2], keepDims: true }, 1],
    ];
    for (const [name, inputs, attrs, outputs] of runs) {
      const before = tf.memory().numDataBuffers;
      const out = tf.engine().runKernel(name, inputs, attrs) as tfc.Tensor | tfc.Tensor[];
      expect(tf.memory().numDataBuffers, name).toBe(before + outputs);
      tf.dispose(out);
    }
    tf.dispose([x, w, dy, a, c, variance, dy16]);
  });

  it('rejects an operand outside the wasm heap with a typed error instead of touching memory', () => {
    if (!load.loaded) throw new Error('unreachable');
    const heap = new ArrayBuffer(64);
    expect(() => load.kernels.matMul(heap, 0, 16, 4096, -1, 0, 1, 1, 2, 2, 2, 0, 0)).toThrow(/outside the wasm heap/);
    expect(() => (load.kernels.maxPool as (...args: unknown[]) => void)(heap, 0)).toThrow(/expected 15 arguments/);
    expect(() => load.kernels.conv2d(new Float32Array(4) as unknown as ArrayBuffer, 0, 0, -1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0)).toThrow(/ArrayBuffer/);
  });
});

describe.skipIf(!native)('the native kernels under signals', () => {
  it('survive a process being sampled by the CPU profiler (SIGPROF every millisecond)', () => {
    // dnnl_sgemm's JIT kernels corrupted the heap when a signal landed mid-call ("corrupted size vs.
    // prev_size" within seconds under --cpu-prof); products now use the matmul primitive.
    if (!load.loaded) throw new Error('unreachable');
    const script = `
      const a = require(${JSON.stringify(load.path)});
      const heap = new WebAssembly.Memory({ initial: 1024 }).buffer;
      new Float32Array(heap).fill(0.5, 0, 4e6);
      const shape = [8, 15, 15, 32, 13, 13, 64, 3, 3, 1, 1, 0, 0, 0, 0];
      for (const t0 = Date.now(); Date.now() - t0 < 3000; ) {
        a.matMul(heap, 0, 4 * 3072 * 128, 8 * 3072 * 128, -1, 0, 1, 1, 3072, 128, 128, 1, 0);
        a.matMul(heap, 0, 4 * 3072 * 128, 8 * 3072 * 128, 0, 1, 1, 1, 128, 128, 3072, 0, 0);
        a.conv2d(heap, 0, 4e6, -1, 6e6, 1, ...shape);
        a.conv2dBackpropFilter(heap, 0, 6e6, 4e6, ...shape);
        Array.from({ length: 100 }, (_, i) => new Array(100).fill(i));
      }
      console.log('survived');`;
    const dir = mkdtempSync(join(tmpdir(), 'dtrain-cpuprof-'));
    try {
      const run = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '-e', script], { encoding: 'utf8', timeout: 60_000 });
      expect(run.stderr.trim() + run.stdout.trim()).toBe('survived');
      expect(run.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 70_000);
});
