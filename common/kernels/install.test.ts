import { describe, expect, it } from 'vitest';
import { tf, tfc } from '../tf.ts';
import { filterGradOptions } from './conv2d-backprop-filter.ts';
import { inputGradOptions } from './conv2d-backprop-input.ts';
import { installWasmTrainingKernels, useStockWasmKernels } from './install.ts';
import { naiveConv2DBackpropFilterConfig } from './naive-conv2d-backprop-filter.ts';
import { use } from './testing.ts';

const OURS = ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'MaxPoolGrad', 'BatchMatMul', 'Sum', 'Mean', 'Tile', 'FusedBatchNorm', 'Identity', 'Cast'];

describe('installWasmTrainingKernels', () => {
  it('registers a Conv2DBackpropFilter for wasm, which has none of its own', async () => {
    await use('wasm');
    expect(tfc.getKernel('Conv2DBackpropFilter', 'wasm')).toBeDefined();
  });

  it('is idempotent: installing twice keeps the same kernels', () => {
    installWasmTrainingKernels();
    const first = OURS.map((k) => tfc.getKernel(k, 'wasm'));
    installWasmTrainingKernels();
    expect(OURS.map((k) => tfc.getKernel(k, 'wasm'))).toEqual(first);
  });

  it('touches no other backend', async () => {
    await use('cpu');
    const cpuBefore = OURS.map((k) => tfc.getKernel(k, 'cpu'));
    useStockWasmKernels();
    installWasmTrainingKernels();
    expect(OURS.map((k) => tfc.getKernel(k, 'cpu'))).toEqual(cpuBefore);
  });

  it('can be swapped for the stock kernels and gradients plus the naive filter gradient, and back', async () => {
    await use('wasm');
    const ours = OURS.map((k) => tfc.getKernel(k, 'wasm'));
    const ourMeanGradient = tfc.getGradient('Mean');
    useStockWasmKernels();
    expect(tfc.getGradient('Mean')).not.toBe(ourMeanGradient);
    expect(tfc.getKernel('Conv2DBackpropFilter', 'wasm')).toBe(naiveConv2DBackpropFilterConfig);
    expect(tfc.getKernel('MaxPoolGrad', 'wasm')).not.toBe(ours[2]);
    installWasmTrainingKernels();
    expect(OURS.map((k) => tfc.getKernel(k, 'wasm'))).toEqual(ours);
    expect(tfc.getGradient('Mean')).toBe(ourMeanGradient);
  });

  it('frees every intermediate buffer inside its kernels', async () => {
    await use('wasm');
    const x = tf.randomNormal([2, 9, 9, 3]);
    const w = tf.randomNormal([3, 3, 3, 4]);
    const dy = tf.randomNormal([2, 7, 7, 4]);
    const a = tf.randomNormal([6, 5]);
    const b = tf.randomNormal([5, 6]);
    const runs: [string, tfc.NamedTensorMap, tfc.NamedAttrMap][] = [
      ['Conv2DBackpropFilter', { x, dy }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', filterShape: [3, 3, 3, 4] }],
      ['Conv2DBackpropInput', { dy, filter: w }, { strides: 1, pad: 'valid', dataFormat: 'NHWC', inputShape: [2, 9, 9, 3] }],
      ['BatchMatMul', { a, b: a }, { transposeA: true, transposeB: false }],
      ['BatchMatMul', { a, b: a }, { transposeA: false, transposeB: true }],
      ['BatchMatMul', { a: b, b: b }, { transposeA: false, transposeB: true }],
      ['MaxPoolGrad', { dy: x, input: x, output: x }, { filterSize: 1, strides: 1, pad: 'valid' }],
      ['Tile', { x: a }, { reps: [2, 3] }],
      ['Sum', { x }, { axis: [0, 1, 2], keepDims: false }],
      ['BatchMatMul', { a, b }, { transposeA: true, transposeB: true }],
    ];
    const c = tf.randomNormal([4]);
    const variance = tf.abs(c);
    runs.push(['FusedBatchNorm', { x: dy, mean: c, variance, offset: c, scale: c }, { varianceEpsilon: 1e-3 }]);
    runs.push(['Cast', { x }, { dtype: 'bool' }]);
    try {
      for (const [filterMethod, inputMethod] of [['im2col', 'col2im'], ['conv', 'conv']] as const) {
        filterGradOptions.method = filterMethod;
        inputGradOptions.method = inputMethod;
        for (const [name, inputs, attrs] of runs) {
          const before = tf.memory().numDataBuffers;
          const out = tf.engine().runKernel(name, inputs, attrs) as tfc.Tensor;
          expect(tf.memory().numDataBuffers, `${name} (${filterMethod}, ${inputMethod})`).toBe(before + 1);
          out.dispose();
        }
      }
    } finally {
      filterGradOptions.method = 'auto';
      inputGradOptions.method = 'auto';
    }
    tf.dispose([x, w, dy, a, b, c, variance]);
  });
});
