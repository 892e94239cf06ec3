import { describe, expect, it } from 'vitest';
import { tf } from './tf.ts';
import { selectBackend } from './backend.ts';
import { UploadScratch } from './upload-scratch.ts';

describe('UploadScratch', () => {
  it('on wasm: one array per length, the same each time, and a tensor made from it keeps its values when the array is refilled', async () => {
    await selectBackend('wasm');
    const scratch = new UploadScratch();
    const a = scratch.take(6)!;
    expect(a).toBeInstanceOf(Float32Array);
    expect(a).toHaveLength(6);
    expect(scratch.take(6)).toBe(a);
    expect(scratch.take(7)).not.toBe(a);
    a.set([1, 2, 3, 4, 5, 6]);
    const t = tf.tensor1d(a);
    a.fill(-1);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    t.dispose();
  });

  it('on wasm: keeps at most four lengths, then starts again', async () => {
    await selectBackend('wasm');
    const scratch = new UploadScratch();
    const first = scratch.take(1)!;
    for (const n of [2, 3, 4]) scratch.take(n);
    expect(scratch.take(1)).toBe(first);
    scratch.take(5);
    expect(scratch.take(1)).not.toBe(first);
  });

  it('on cpu, which keeps the array as the tensor\'s storage: nothing, so each caller makes its own', async () => {
    await selectBackend('cpu');
    expect(new UploadScratch().take(6)).toBeUndefined();
  });
});
