import { describe, expect, it } from 'vitest';
import { adapterName, describeAdapter, findLibrary, prepareWebGpu, probeFromEnv, softwareAdapterReason, type AdapterProbe } from './webgpu.ts';

// What Dawn reports for real adapters (lavapipe as seen on this project's CI machine; the others
// in the shape Dawn gives them).
const LAVAPIPE = { info: { vendor: 'mesa', architecture: 'software', device: 'llvmpipe-llvm-15-0-6-256-bits-', description: 'llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)', isFallbackAdapter: true } };
const NVIDIA = { info: { vendor: 'nvidia', architecture: 'hopper', device: '', description: 'NVIDIA H200', isFallbackAdapter: false } };

describe('softwareAdapterReason', () => {
  it('flags lavapipe, which Dawn marks as a fallback adapter', () => {
    expect(softwareAdapterReason(describeAdapter(LAVAPIPE))).toMatch(/mesa llvmpipe.*fallback \(CPU\)/);
  });

  it('accepts an NVIDIA GPU', () => {
    expect(softwareAdapterReason(describeAdapter(NVIDIA))).toBeUndefined();
  });

  it.each([
    ['SwiftShader by name', { info: { vendor: 'google', architecture: '', device: 'SwiftShader Device (Subzero)', description: '' } }],
    ['llvmpipe by name, without the fallback flag', { info: { vendor: 'mesa', architecture: '', device: 'llvmpipe (LLVM 19)', description: '' } }],
    ['the fallback flag on the adapter (older Dawn)', { info: { vendor: 'x', device: 'y' }, isFallbackAdapter: true }],
    ['a CPU architecture', { info: { vendor: 'x', architecture: 'cpu', device: 'y' } }],
  ])('flags %s', (_name, adapter) => {
    expect(softwareAdapterReason(describeAdapter(adapter))).toMatch(/CPU/);
  });
});

describe('describeAdapter', () => {
  it('reads what is there and leaves the rest empty', () => {
    expect(describeAdapter({ info: { vendor: 'amd', architecture: 7 } })).toEqual({ vendor: 'amd', architecture: '', device: '', description: '', isFallbackAdapter: false });
    expect(describeAdapter({})).toEqual({ vendor: '', architecture: '', device: '', description: '', isFallbackAdapter: false });
  });

  it('names an adapter by vendor and description', () => {
    expect(adapterName(describeAdapter(NVIDIA))).toBe('nvidia NVIDIA H200');
    expect(adapterName(describeAdapter({}))).toBe('unnamed adapter');
  });
});

describe('probeFromEnv', () => {
  it('reads a verdict another process wrote, and nothing else', () => {
    expect(probeFromEnv(JSON.stringify({ adapter: LAVAPIPE.info }))).toEqual({ adapter: describeAdapter(LAVAPIPE) });
    expect(probeFromEnv(JSON.stringify({ adapter: null, reason: 'no WebGPU adapter' }))).toEqual({ adapter: null, reason: 'no WebGPU adapter' });
    for (const raw of [undefined, '', 'garbage', '{}', '{"adapter":null}', '{"adapter":5}', 'null']) expect(probeFromEnv(raw)).toBeUndefined();
  });
});

describe('prepareWebGpu, auto-selection', () => {
  // Dawn is loaded into this process only after the probe found an adapter worth using.
  const attempt = async (probe: AdapterProbe) => {
    const imported: string[] = [];
    const importModule = async (name: string) => {
      imported.push(name);
      throw new Error(`stop at ${name}`);
    };
    const error = await prepareWebGpu({ allowSoftware: false, importModule, probe: async () => probe }).catch((e: Error) => e.message);
    return { error, imported };
  };

  it.skipIf(process.platform === 'linux' && !findLibrary('libvulkan.so.1'))('skips a software adapter without loading Dawn here', async () => {
    const r = await attempt({ adapter: describeAdapter(LAVAPIPE) });
    expect(r.error).toMatch(/mesa llvmpipe.*fallback \(CPU\) adapter, slower than wasm here; --backend webgpu forces it/);
    expect(r.imported).toEqual([]);
    const none = await attempt({ adapter: null, reason: 'no WebGPU adapter (needs a GPU driver)' });
    expect(none).toEqual({ error: 'no WebGPU adapter (needs a GPU driver)', imported: [] });
  });

  it.skipIf(process.platform === 'linux' && !findLibrary('libvulkan.so.1'))('loads Dawn here for a GPU the probe found', async () => {
    expect(await attempt({ adapter: describeAdapter(NVIDIA) })).toEqual({ error: 'stop at webgpu', imported: ['webgpu'] });
  });
});
