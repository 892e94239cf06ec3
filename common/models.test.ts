import { describe, expect, it } from 'vitest';
import { buildModel, countParameters, MODEL_SPECS, modelSummary, MODEL_NAMES, parseModelName } from './models.ts';
import { initialWeights, weightLayout } from './weights.ts';

describe('the four assignment models', () => {
  // Keras's model.summary() totals for the assignment's models.
  const keras = {
    mlp: { total: 402_250, trainable: 402_250, nonTrainable: 0 },
    lenet: { total: 62_006, trainable: 62_006, nonTrainable: 0 },
    'cnn-dropout': { total: 122_570, trainable: 122_570, nonTrainable: 0 },
    'cnn-bn': { total: 123_466, trainable: 123_018, nonTrainable: 448 },
  };

  for (const name of MODEL_NAMES) {
    it(`${name} has exactly Keras's parameter counts`, () => {
      expect(countParameters(buildModel(name))).toEqual(keras[name]);
    });
  }

  // The trainer decides from MODEL_SPECS alone whether runs of steps may go (step-runs.ts): a model
  // whose spec missed its BatchNorm would run steps without the exchange its statistics need.
  it('says which models have BatchNorm, as their layers do', () => {
    for (const name of MODEL_NAMES) {
      const model = buildModel(name);
      const layers = model.layers.map((l) => l.getClassName());
      model.dispose();
      expect([name, MODEL_SPECS[name].batchNorm]).toEqual([name, layers.includes('BatchNormalization')]);
    }
    expect(MODEL_NAMES.filter((n) => MODEL_SPECS[n].batchNorm)).toEqual(['cnn-bn']);
  });

  it('mlp is 393,344 + 8,256 + 650 parameters, layer by layer', () => {
    expect(buildModel('mlp').layers.map((l) => l.countParams())).toEqual([393_344, 8_256, 650]);
  });

  it('prints a Keras-style summary with output shapes and comma-grouped totals', () => {
    const text = modelSummary(buildModel('lenet'));
    expect(text).toContain('conv2d (Conv2D)');
    expect(text).toContain('(None, 28, 28, 6)');
    expect(text).toContain('Total params: 62,006');
    expect(text).toContain('Non-trainable params: 0');
  });

  it('only cnn-dropout has a dropout layer, and only cnn-bn has batch normalization', () => {
    const classes = (n: (typeof MODEL_NAMES)[number]) => buildModel(n).layers.map((l) => l.getClassName());
    expect(classes('cnn-dropout')).toContain('Dropout');
    expect(classes('cnn-bn')).not.toContain('Dropout');
    expect(classes('cnn-bn').filter((c) => c === 'BatchNormalization')).toHaveLength(4);
  });

  it('rejects an unknown model name, listing the valid ones', () => {
    expect(() => parseModelName('resnet')).toThrow(/resnet.*mlp, lenet, cnn-dropout, cnn-bn/);
  });
});

describe('the flat weight layout', () => {
  it('puts trainable weights first and covers every parameter once', () => {
    const layout = weightLayout(buildModel('cnn-bn'));
    expect(layout.totalSize).toBe(123_466);
    expect(layout.trainableSize).toBe(123_018);
    const firstFrozen = layout.entries.findIndex((e) => !e.trainable);
    expect(layout.entries.slice(firstFrozen).every((e) => !e.trainable)).toBe(true);
    expect(layout.entries.at(-1)!.offset + layout.entries.at(-1)!.size).toBe(layout.totalSize);
  });

  it('initialises like Keras: glorot-uniform kernels within their limit, zero biases, BatchNorm gamma 1 and variance 1', () => {
    const layout = weightLayout(buildModel('cnn-bn'));
    const w = initialWeights(layout, 42);
    for (const e of layout.entries) {
      const v = w.subarray(e.offset, e.offset + e.size);
      if (e.role === 'kernel') {
        const receptive = e.shape.slice(0, -2).reduce((a, b) => a * b, 1);
        const limit = Math.sqrt(6 / ((e.shape.at(-2)! + e.shape.at(-1)!) * receptive));
        expect(Math.max(...v.map(Math.abs))).toBeLessThanOrEqual(limit);
        expect(Math.max(...v.map(Math.abs))).toBeGreaterThan(limit * 0.9);
      } else if (e.role === 'gamma' || e.role === 'moving_variance') {
        expect(v.every((x) => x === 1)).toBe(true);
      } else {
        expect(v.every((x) => x === 0)).toBe(true);
      }
    }
  });

  it('gives the same initial weights for the same seed, and different ones for another', () => {
    const layout = weightLayout(buildModel('lenet'));
    expect(initialWeights(layout, 7)).toEqual(initialWeights(layout, 7));
    expect(initialWeights(layout, 7)).not.toEqual(initialWeights(layout, 8));
  });
});
