import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['common/**/*.test.ts', 'coordinator/**/*.test.ts', 'worker/**/*.test.ts', 'test/**/*.test.ts', 'scripts/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 60_000,
    // Two cores here: tests that spawn worker threads or processes must not fight each other.
    fileParallelism: false,
    pool: 'forks',
  },
});
