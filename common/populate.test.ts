import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { populatePages } from './populate.ts';
import { loadNativeKernels } from './kernels/native/addon.ts';
import { requireNativeOrSkip } from './kernels/native/native-testing.ts';

const PAGE = 4096;
const PAGES = 2048;

/** A fresh shared wasm memory of `pages` 4 KiB pages (no page of it touched yet). */
const fresh = (pages: number) => new WebAssembly.Memory({ initial: (pages * PAGE) / 65536, maximum: (pages * PAGE) / 65536, shared: true });

/** Minor page faults the process takes while every page of `buffer` is written once. */
function faultsWritingEveryPage(buffer: ArrayBuffer | SharedArrayBuffer): number {
  const bytes = new Uint8Array(buffer);
  const before = process.resourceUsage().minorPageFault;
  for (let i = 0; i < bytes.length; i += PAGE) bytes[i] = 1;
  return process.resourceUsage().minorPageFault - before;
}

const native = requireNativeOrSkip(loadNativeKernels());
/** With transparent huge pages always on, a fresh memory faults in 2 MiB at a time: no fault per page to compare against. */
const hugePagesAlways = (() => {
  try {
    return readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8').includes('[always]');
  } catch {
    return false;
  }
})();
const ways = [...(native ? [{ how: 'madvise', env: {} }] : []), { how: 'touch', env: { DTRAIN_NATIVE_KERNELS: '0' } }] as const;

describe.each(ways)('populatePages ($how)', ({ how, env }) => {
  it('maps every page, so writing them afterwards takes (almost) no page faults, where a fresh memory faults once per page', () => {
    if (!hugePagesAlways) expect(faultsWritingEveryPage(fresh(PAGES).buffer)).toBeGreaterThanOrEqual(PAGES / 2);
    const mem = fresh(PAGES);
    expect(populatePages(mem.buffer, env)).toEqual({ how, bytes: PAGES * PAGE });
    expect(faultsWritingEveryPage(mem.buffer)).toBeLessThan(PAGES / 16);
  });

  it('leaves every value as it was', () => {
    const mem = fresh(64);
    const words = new Int32Array(mem.buffer);
    for (let i = 0; i < words.length; i++) words[i] = (i * 2654435761) | 0;
    const copy = words.slice();
    populatePages(mem.buffer, env);
    expect(words).toEqual(copy);
  });
});

describe.runIf(native)('the native populatePages', () => {
  const addon = () => {
    const load = loadNativeKernels();
    if (!load.loaded) throw new Error(load.reason);
    return load.kernels;
  };

  it('touches only the whole pages inside the view', () => {
    const mem = fresh(16);
    expect(addon().populatePages(new Uint8Array(mem.buffer, 100, 3 * PAGE))).toBe(2 * PAGE);
    expect(addon().populatePages(new Uint8Array(mem.buffer, 100, PAGE))).toBe(0);
    expect(addon().populatePages(new Uint8Array(mem.buffer, 0, 0))).toBe(0);
  });

  it('refuses anything but a Uint8Array, naming what it expected', () => {
    expect(() => addon().populatePages(new Float32Array(1024) as unknown as Uint8Array)).toThrow(/populatePages: argument 0 must be a Uint8Array/);
    expect(() => (addon().populatePages as unknown as () => number)()).toThrow(/populatePages/);
  });
});
