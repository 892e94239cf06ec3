import { describe, expect, it } from 'vitest';
import { tf } from './tf.ts';
import { selectBackend } from './backend.ts';
import { hostFloats } from './host-floats.ts';

describe('hostFloats', () => {
  for (const backend of ['cpu', 'wasm'] as const) {
    it(`on ${backend}: the float32 tensor's own values, without a read-back; nothing for int32`, async () => {
      await selectBackend(backend);
      const t = tf.tensor1d([1.5, -2, 3]);
      const i = tf.tensor1d([1, 2, 3], 'int32');
      expect(Array.from(hostFloats(t)!)).toEqual([1.5, -2, 3]);
      expect(hostFloats(i)).toBeUndefined();
      tf.dispose([t, i]);
    });
  }
});
