/**
 * Tests of the native kernels run where the addon is built and are skipped elsewhere, except in
 * CI (CI=1), where a missing addon is a failure: CI builds it (.ci/run), so its absence is a bug.
 */
import { describe, expect, it } from 'vitest';
import type { NativeKernels, NativeLoad } from './addon.ts';

/** True when the addon loaded; otherwise registers a test that fails under CI and reports why locally. */
export function requireNativeOrSkip(load: NativeLoad): boolean {
  if (load.loaded) return true;
  const ci = process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== '0' && process.env.CI !== 'false';
  describe('native kernels', () => {
    it.skipIf(!ci)(`are built and load in CI (${load.reason})`, () => {
      expect.fail(`The native kernels must be available under CI=1, but: ${load.reason}. .ci/run builds them with npm run build:native.`);
    });
  });
  return false;
}

/** Counts calls into the addon's `names`, to prove a case ran natively rather than on a fallback (wraps them in place). */
export function countCalls(addon: NativeKernels, names: readonly (keyof NativeKernels)[]): Map<string, number> {
  const counts = new Map<string, number>();
  const record = addon as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of names) {
    const f = record[name];
    record[name] = (...args: unknown[]) => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      return f(...args);
    };
  }
  return counts;
}
