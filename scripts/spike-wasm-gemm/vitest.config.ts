// The spike's own test run (run.sh): *.spike.ts is outside `npm test`, which needs no clang.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: new URL('.', import.meta.url).pathname,
    include: ['*.spike.ts'],
    testTimeout: 60_000,
    pool: 'forks',
    // Relaxed SIMD is behind a flag in Node 20's V8 (11.3).
    poolOptions: { forks: { execArgv: ['--experimental-wasm-relaxed-simd'] } },
  },
});
