import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { keepFreedMemory } from './freed-memory.ts';
import { loadNativeKernels } from './kernels/native/addon.ts';
import { requireNativeOrSkip } from './kernels/native/native-testing.ts';

/**
 * A fresh process (glibc's thresholds start at their defaults) that applies the policy as dtrain's
 * commands do, then allocates a 16 MiB ArrayBuffer, writes every page, frees it (a full collection)
 * four times, and prints the page faults each round took. 16 MiB, not less: with glibc's defaults the
 * second round's block comes from the heap, which faults fresh pages in only where it has to grow, and
 * a fresh Node process may already hold a free megabyte there (a 1 MiB block once faulted 3 pages in
 * that round instead of 256); under 32 MiB, so that the kept setting serves it from the heap too.
 * Even 16 MiB once found room in the heap (3 faults): so 64 MiB of 64 KiB blocks, held throughout,
 * take up whatever free space the heap holds before the rounds start.
 */
const CHILD = `
import { keepFreedMemory } from ${JSON.stringify(fileURLToPath(new URL('./freed-memory.ts', import.meta.url)))};
const mode = keepFreedMemory();
const faults = () => process.resourceUsage().minorPageFault;
const rounds = [];
const touchFresh = () => {
  const u = new Uint8Array(new ArrayBuffer(16 << 20));
  const before = faults();
  for (let i = 0; i < u.length; i += 4096) u[i] = 1;
  return faults() - before;
};
// Free space the process already holds in its heap could serve a round without fresh pages (CI once
// saw 3 faults where 4,096 were due): 64 MiB of small blocks, held to the end, use it up first.
const plugs = [];
for (let i = 0; i < 1024; i++) plugs.push(new Uint8Array(64 << 10).fill(1));
for (let round = 0; round < 4; round++) {
  rounds.push(touchFresh());
  globalThis.gc();
  globalThis.gc();
  await new Promise((r) => setImmediate(r));
}
console.log(JSON.stringify({ mode, rounds, plugs: plugs.length }));
`;

function child(env: NodeJS.ProcessEnv): { mode: unknown; rounds: number[] } {
  const run = spawnSync(process.execPath, ['--single-threaded-gc', '--expose-gc', '--import', 'tsx', '--input-type=module', '-e', CHILD], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  if (run.status !== 0) throw new Error(`child failed (${run.status}): ${run.stderr}`);
  return JSON.parse(run.stdout.trim().split('\n').pop()!) as { mode: unknown; rounds: number[] };
}

const native = requireNativeOrSkip(loadNativeKernels());

describe.runIf(native)('glibc told to keep freed memory (keepFreedMemory)', () => {
  it('reuses a freed 16 MiB block without page faults, where glibc\'s defaults give the second allocation fresh pages', () => {
    const kept = child({ DTRAIN_KEEP_FREED_MEMORY: '1' });
    expect(kept.mode).toEqual({ malloc: 'keeps freed memory' });
    const plain = child({ DTRAIN_KEEP_FREED_MEMORY: '0' });
    expect(plain.mode).toEqual({ malloc: 'glibc default', mallocReason: 'DTRAIN_KEEP_FREED_MEMORY=0' });
    // 4,096 pages a round: the first round faults them in either way.
    expect(plain.rounds[1]).toBeGreaterThanOrEqual(1024);
    expect(kept.rounds[1]).toBeLessThan(64);
    expect(kept.rounds[2] + kept.rounds[3]).toBeLessThan(64);
  });
});

describe('DTRAIN_KEEP_FREED_MEMORY', () => {
  it('refuses anything but 0 or 1, naming what it got', () => {
    expect(() => keepFreedMemory({ DTRAIN_KEEP_FREED_MEMORY: 'yes please' })).toThrow(/DTRAIN_KEEP_FREED_MEMORY must be 0 or 1, got "yes please"/);
  });
});
