/**
 * Gradients of `Sum` and `Mean`, reformulated on wasm only. tfjs forms them as
 * dy·ones(x.shape) (÷ n for Mean): the ones tensor is filled element by element in JavaScript and
 * uploaded to the wasm heap, for every BatchNorm moment of every step (8 per cnn-bn step, each the
 * size of a whole activation). Broadcasting dy (÷ n first, on the small tensor) gives bit-identical
 * values: dy·1 is exactly dy. Gradients are registered globally, so on every other backend these
 * call the original gradient functions unchanged.
 */
import { tfc } from '../tf.ts';
import { WASM, type GradientOverride } from './wasm-backend.ts';

type Tensor = tfc.Tensor;

function expandedShape(x: Tensor, axis: number | number[]): number[] {
  const shape = x.shape.slice();
  for (const a of tfc.util.parseAxisParam(axis, x.shape)) shape[a] = 1;
  return shape;
}

function reduceGradConfig(original: tfc.GradConfig, mean: boolean): tfc.GradConfig {
  return {
    kernelName: original.kernelName,
    inputsToSave: ['x'],
    gradFunc: (dy, saved, attrs) => {
      if (tfc.getBackend() !== WASM || Array.isArray(dy)) return original.gradFunc(dy, saved, attrs);
      const [x] = saved;
      const axis = attrs.axis as number | number[];
      return {
        x: () => {
          let d = tfc.reshape(dy, expandedShape(x, axis));
          if (mean) d = tfc.div(d, x.size / d.size);
          return tfc.broadcastTo(d, x.shape);
        },
      };
    },
  };
}

export function reduceGradientOverrides(): GradientOverride[] {
  return (['Sum', 'Mean'] as const).map((name) => {
    const original = tfc.getGradient(name);
    if (original === undefined) throw new Error(`tfjs has no gradient registered for '${name}'.`);
    return { original, ours: reduceGradConfig(original, name === 'Mean') };
  });
}
