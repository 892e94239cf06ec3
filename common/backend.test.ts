import { afterEach, describe, expect, it } from 'vitest';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { tf } from './tf.ts';
import { candidateKinds, provideModule, releaseBackend, selectBackend } from './backend.ts';

// tfjs-node(-gpu) cannot be installed here (its libtensorflow download is refused), so these tests
// stand in a module that registers a 'tensorflow' backend, as the real package does on import.
function fakeTfjsNode(): () => Promise<unknown> {
  return async () => {
    tf.registerBackend('tensorflow', () => new MathBackendCPU());
    return {};
  };
}

describe('selectBackend', () => {
  afterEach(() => {
    provideModule('@tensorflow/tfjs-node-gpu', undefined);
    provideModule('@tensorflow/tfjs-node', undefined);
    releaseBackend('tensorflow');
  });

  it('prefers tfjs-node-gpu when it loads', async () => {
    provideModule('@tensorflow/tfjs-node-gpu', fakeTfjsNode());
    provideModule('@tensorflow/tfjs-node', async () => { throw new Error('tfjs-node must not be tried after tfjs-node-gpu loaded'); });
    const s = await selectBackend('auto');
    expect(s).toMatchObject({ name: 'tensorflow', source: '@tensorflow/tfjs-node-gpu', skipped: [] });
  });

  it('falls back to tfjs-node and says why tfjs-node-gpu was skipped', async () => {
    provideModule('@tensorflow/tfjs-node-gpu', async () => { throw new Error('libcudart.so.11.0: cannot open shared object file'); });
    provideModule('@tensorflow/tfjs-node', fakeTfjsNode());
    const s = await selectBackend('auto');
    expect(s.source).toBe('@tensorflow/tfjs-node');
    expect(s.skipped).toEqual([{ backend: 'tensorflow (@tensorflow/tfjs-node-gpu)', reason: 'libcudart.so.11.0: cannot open shared object file' }]);
  });

  it('reports a missing optional package as not installed', async () => {
    provideModule('@tensorflow/tfjs-node-gpu', async () => { throw Object.assign(new Error('Cannot find package'), { code: 'ERR_MODULE_NOT_FOUND' }); });
    provideModule('@tensorflow/tfjs-node', async () => { throw Object.assign(new Error('Cannot find package'), { code: 'ERR_MODULE_NOT_FOUND' }); });
    await expect(selectBackend('tensorflow')).rejects.toThrow(/--backend tensorflow.*tfjs-node-gpu\): package not installed/);
  });
});

describe('candidateKinds', () => {
  it('tries the fastest first under auto, only the named one otherwise', () => {
    expect(candidateKinds('auto')).toEqual(['tensorflow', 'webgpu', 'wasm', 'cpu']);
    expect(candidateKinds('webgpu')).toEqual(['webgpu']);
  });

  it('falls back to the backends after a failed one, whatever was asked for', () => {
    expect(candidateKinds('webgpu', { after: 'webgpu' })).toEqual(['wasm', 'cpu']);
    expect(candidateKinds('auto', { after: 'wasm' })).toEqual(['cpu']);
    expect(candidateKinds('auto', { after: 'cpu' })).toEqual([]);
  });
});
