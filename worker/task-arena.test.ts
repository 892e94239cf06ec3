import { describe, expect, it } from 'vitest';
import { TaskArena } from './task-arena.ts';
import type { TaskMessage } from '../common/protocol.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';
import { countCalls, requireNativeOrSkip } from '../common/kernels/native/native-testing.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);

const filled = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const task = (weightBytes: number, images: number, seed: number): TaskMessage => ({
  type: 'task',
  taskId: seed,
  kind: 'train',
  weightsVersion: 1,
  ...(weightBytes > 0 ? { weights: filled(weightBytes, seed) } : {}),
  images: filled(images * 3072, seed + 1),
  labels: filled(images, seed + 2),
});

describe('TaskArena', () => {
  it('copies every array of a large task into one SharedArrayBuffer, at 64-byte offsets, values intact', () => {
    const arena = new TaskArena();
    const t = { ...task(250_001, 32, 7), indices: filled(128, 9) };
    const placed = arena.place(t);
    const arrays = [placed.weights!, placed.images, placed.labels, placed.indices!];
    for (const a of arrays) expect(a.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(new Set(arrays.map((a) => a.buffer)).size).toBe(1);
    for (const a of arrays) expect(a.byteOffset % 64).toBe(0);
    expect(placed.weights).toEqual(t.weights);
    expect(placed.images).toEqual(t.images);
    expect(placed.labels).toEqual(t.labels);
    expect(placed.indices).toEqual(t.indices);
    // The task's other fields pass through; the original's arrays are not touched.
    expect(placed).toMatchObject({ type: 'task', taskId: 7, kind: 'train', weightsVersion: 1 });
    expect(t.images.buffer).not.toBeInstanceOf(SharedArrayBuffer);
  });

  it('keeps its buffer from task to task, grows it for a larger task, and holds only the newest task\'s bytes', () => {
    const arena = new TaskArena();
    const a = arena.place(task(250_000, 32, 1));
    const b = arena.place(task(250_000, 16, 2));
    expect(b.images.buffer).toBe(a.images.buffer);
    expect(b.images).toEqual(task(250_000, 16, 2).images);
    expect(b.weights).toEqual(task(250_000, 16, 2).weights);
    const c = arena.place(task(1_000_000, 64, 3));
    expect(c.images.buffer).not.toBe(a.images.buffer);
    expect(c.images.buffer.byteLength).toBeGreaterThanOrEqual(1_000_000 + 64 * 3073);
    expect(c.weights).toEqual(task(1_000_000, 64, 3).weights);
  });

  it('leaves a small task as it is (a few pages are not worth the copy)', () => {
    const arena = new TaskArena();
    const small = task(0, 4, 5);
    expect(arena.place(small)).toBe(small);
  });

  it.runIf(native)('copies natively where the addon loads (one memmove per array), the same bytes as without it', () => {
    const t = { ...task(250_001, 32, 11), indices: filled(128, 3) };
    const calls = countCalls(load.loaded ? load.kernels : undefined!, ['gatherRows']);
    const withNative = new TaskArena().place(t);
    expect(calls.get('gatherRows')).toBe(4);
    process.env.DTRAIN_NATIVE_KERNELS = '0';
    try {
      const without = new TaskArena().place(t);
      expect(calls.get('gatherRows')).toBe(4);
      for (const k of ['weights', 'images', 'labels', 'indices'] as const) {
        expect(Buffer.from(withNative[k]!).equals(Buffer.from(t[k]!))).toBe(true);
        expect(Buffer.from(without[k]!).equals(Buffer.from(t[k]!))).toBe(true);
      }
    } finally {
      delete process.env.DTRAIN_NATIVE_KERNELS;
    }
  });
});
