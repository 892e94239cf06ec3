import { describe, expect, it } from 'vitest';
import { describeAdapter, softwareAdapterReason, adapterName } from './webgpu.ts';

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
