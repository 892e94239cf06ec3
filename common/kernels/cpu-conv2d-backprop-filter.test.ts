import { describe, expect, it } from 'vitest';
import { tfc } from '../tf.ts';
import { SeededRandom } from '../random.ts';
import { cpuConv2DBackpropFilterConfig } from './cpu-conv2d-backprop-filter.ts';

function random(n: number, seed: number): Float32Array {
  const r = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => r.next() * 2 - 1);
}

describe('the cpu Conv2DBackpropFilter', () => {
  const stock = tfc.getKernel('Conv2DBackpropFilter', 'cpu')!;
  const ours = cpuConv2DBackpropFilterConfig(stock);

  const cases: [string, [number, number, number, number], [number, number, number, number], [number, number], 'valid' | 'same'][] = [
    ['cnn first layer (valid, stride 1)', [2, 8, 8, 3], [3, 3, 3, 5], [1, 1], 'valid'],
    ['same padding, stride 2', [3, 7, 9, 4], [3, 3, 4, 2], [2, 2], 'same'],
    ['lenet 5x5', [2, 12, 12, 6], [5, 5, 6, 16], [1, 1], 'valid'],
  ];
  for (const [what, xShape, filterShape, strides, pad] of cases) {
    it(`matches the stock kernel: ${what}`, () => {
      tfc.setBackend('cpu');
      const x = tfc.tensor4d(random(xShape.reduce((a, b) => a * b, 1), 1), xShape);
      const y = tfc.conv2d(x, tfc.zeros(filterShape) as tfc.Tensor4D, strides, pad);
      const dy = tfc.tensor4d(random(y.size, 2), y.shape as [number, number, number, number]);
      const attrs = { strides, pad, dataFormat: 'NHWC', dimRoundingMode: undefined, filterShape } as unknown as tfc.NamedAttrMap;
      const backend = tfc.backend() as unknown as tfc.KernelBackend;
      const expected = stock.kernelFunc({ inputs: { x, dy }, attrs, backend }) as tfc.TensorInfo;
      const got = ours.kernelFunc({ inputs: { x, dy }, attrs, backend }) as tfc.TensorInfo;
      const e = tfc.engine().makeTensorFromTensorInfo(expected).dataSync();
      const g = tfc.engine().makeTensorFromTensorInfo(got).dataSync();
      expect(g.length).toBe(e.length);
      for (let i = 0; i < e.length; i++) expect(g[i]).toBeCloseTo(e[i], 4);
    });
  }
});
