import { describe, expect, it } from 'vitest';
import { TaskArena } from './task-arena.ts';
import type { TaskMessage } from '../common/protocol.ts';

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
});
