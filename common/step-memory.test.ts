import { describe, expect, it } from 'vitest';
import { readSliceFields, writeSliceFields } from './step-memory.ts';
import type { SliceTask } from './protocol.ts';

describe('a train command\'s slice fields', () => {
  const cases: SliceTask[] = [
    { taskId: 7 },
    // A seed above 2^31 survives the Int32 word.
    { taskId: 8, position: { seed: 0xfffffff0, step: 1234, firstSample: 21 }, batchNorm: { mode: 'sync', round: 99, timeoutMs: 60_000 } },
    { taskId: 9, position: { seed: 42, step: 0, firstSample: 0 }, batchNorm: { mode: 'local' } },
  ];
  for (const task of cases) {
    it(`read back what was written (${task.batchNorm?.mode ?? 'no BatchNorm'})`, () => {
      const ctl = new Int32Array(64).fill(-1);
      writeSliceFields(ctl, 32, task);
      expect(readSliceFields(ctl, 32)).toEqual({ position: undefined, batchNorm: undefined, ...task });
    });
  }
});
