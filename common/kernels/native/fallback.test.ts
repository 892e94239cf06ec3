/**
 * The native kernels are optional: `dtrain train` on wasm trains with them where they load, and
 * on our wasm kernels where they are missing or disabled, and its `backend_selected` log line
 * says which set computes and why. Real processes, as a user runs them.
 */
import { describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DtrainProcess } from '../../../test/processes.ts';
import { tempDir } from '../../../test/helpers.ts';
import { loadNativeKernels, nativeKernelsWanted } from './addon.ts';
import { requireNativeOrSkip } from './native-testing.ts';

interface KernelsLog {
  set: string;
  reason: string;
}

/** A short lenet run on wasm; returns the kernel set its backend_selected line reports. */
async function train(env: Record<string, string>): Promise<{ code: number | null; kernels?: KernelsLog; loss: number }> {
  const out = await tempDir();
  const p = new DtrainProcess(['train', '--dataset', 'synthetic', '--limit-train', '128', '--limit-test', '32', '--epochs', '1', '--workers', '1', '--backend', 'wasm', '--no-plots', '--out', out], env);
  const { code } = await p.exited;
  const selected = p.lines.find((l) => l.event === 'backend_selected') as { kernels?: KernelsLog } | undefined;
  const history = code === 0 ? (JSON.parse(await readFile(join(out, 'history.json'), 'utf8')) as { epochs: { loss: number }[] }) : { epochs: [] };
  return { code, kernels: selected?.kernels, loss: history.epochs[0]?.loss ?? NaN };
}

describe('without the native kernels', () => {
  it('trains on the wasm kernels when the addon is missing, and the log says where it looked', async () => {
    const run = await train({ DTRAIN_NATIVE_KERNELS_PATH: '/nonexistent/dtrain-kernels.node' });
    expect(run.code).toBe(0);
    expect(run.kernels?.set).toBe('wasm');
    expect(run.kernels?.reason).toMatch(/no native kernels at \/nonexistent\/dtrain-kernels\.node.*npm run build:native/);
    expect(Number.isFinite(run.loss)).toBe(true);
  }, 120_000);

  it('trains on the wasm kernels when DTRAIN_NATIVE_KERNELS=0, and says so', async () => {
    const run = await train({ DTRAIN_NATIVE_KERNELS: '0' });
    expect(run.code).toBe(0);
    expect(run.kernels).toEqual({ set: 'wasm', reason: 'disabled by DTRAIN_NATIVE_KERNELS=0' });
  }, 120_000);

  it('rejects a malformed DTRAIN_NATIVE_KERNELS instead of guessing', () => {
    expect(() => nativeKernelsWanted({ DTRAIN_NATIVE_KERNELS: 'yes' })).toThrow(/DTRAIN_NATIVE_KERNELS must be 0 or 1, got "yes"/);
    expect(nativeKernelsWanted({})).toBe(true);
  });

  it('reports a file that is not the addon as a reason, without throwing', () => {
    const load = loadNativeKernels({ DTRAIN_NATIVE_KERNELS_PATH: new URL(import.meta.url).pathname });
    expect(load.loaded).toBe(false);
    if (!load.loaded) expect(load.reason).toMatch(/^cannot load /);
  });
});

const native = requireNativeOrSkip(loadNativeKernels());

describe.skipIf(!native)('with the native kernels', () => {
  it('trains with them by default, and the log names oneDNN and the instruction set', async () => {
    const run = await train({});
    expect(run.code).toBe(0);
    expect(run.kernels?.set).toBe('onednn');
    expect(run.kernels?.reason).toMatch(/^oneDNN 2\.\d+\.\d+ \(\w+, 1 thread\) from .*dtrain-kernels\.node$/);
    expect(Number.isFinite(run.loss)).toBe(true);
  }, 120_000);
});
