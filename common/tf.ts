/**
 * The one import point for TensorFlow.js. tfjs-core and tfjs-layers are imported as separate
 * packages (not the `@tensorflow/tfjs` umbrella) so that only the backends we choose are loaded.
 */
import * as tfc from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
// Always registered: building models and saving checkpoints need a backend, and cpu needs no setup.
import '@tensorflow/tfjs-backend-cpu';

// PROD silences tfjs's console banners ("install our node backend") that would break JSON logs.
tfc.env().set('PROD', true);

export const tf = { ...tfc, ...tfl, layers: tfl.layers };
export type Tensor = tfc.Tensor;
export type LayersModel = tfl.LayersModel;
export { tfc, tfl };
