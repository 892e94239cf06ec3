import { describe, expect, it } from 'vitest';
import { AheadOffers } from './step-ahead.ts';
import { CTL, readPosition, StepMemory } from '../common/step-memory.ts';
import { IMAGE_BYTES, type ImageSet } from '../common/data/types.ts';

function imageSet(count: number): ImageSet {
  const images = new Uint8Array(count * IMAGE_BYTES);
  for (let i = 0; i < count; i++) images.fill(i + 1, i * IMAGE_BYTES, (i + 1) * IMAGE_BYTES);
  return { images, labels: Uint8Array.from({ length: count }, (_, i) => i % 10), count };
}

const shape = { trainable: 20, stats: 0, slots: 1, slotSamples: 4 };

describe('AheadOffers (the owner\'s side of the step ahead)', () => {
  it('writes each offer into the other buffer, with its count and copy, and names it only for the same slice after the same command', () => {
    const mem = StepMemory.create({ ...shape, threads: 1 });
    const offers = new AheadOffers(mem);
    const set = imageSet(10);
    const b = mem.threadBase(0);
    offers.setNext(set, [{ indices: Uint32Array.of(7, 2, 5) }]);
    offers.offer(0, 0, 1, 1);
    const first = mem.ctl[b + CTL.aheadSeq];
    expect(first).toBeGreaterThan(0);
    expect(mem.ctl[b + CTL.aheadCount]).toBe(3);
    expect(mem.ctl[b + CTL.aheadParity]).toBe(1);
    expect([...mem.aheadLabels[first & 1].subarray(0, 3)]).toEqual([7, 2, 5]);
    expect(mem.aheadImages[first & 1][IMAGE_BYTES]).toBe(3);
    // The step's own slice, gathered from another view of the same indices, after command 1, on copy 1: named.
    expect(offers.claim(0, 0, 1, 1, { set, indices: Uint32Array.of(7, 2, 5) }, { taskId: 1 })).toBe(first);
    // An offer is named once.
    expect(offers.claim(0, 0, 1, 1, { set, indices: Uint32Array.of(7, 2, 5) }, { taskId: 1 })).toBe(0);

    offers.setNext(set, [{ indices: Uint32Array.of(1, 2, 3) }]);
    offers.offer(0, 0, 2, 0);
    const second = mem.ctl[b + CTL.aheadSeq];
    expect(second & 1).not.toBe(first & 1);
    expect([...mem.aheadLabels[first & 1].subarray(0, 3)]).toEqual([7, 2, 5]);
    const slice = { set, indices: Uint32Array.of(1, 2, 3) };
    const refuse = (seq: number, parity: 0 | 1, s: typeof slice, task: Parameters<AheadOffers['claim']>[5]) => {
      offers.offer(0, 0, 2, 0);
      return offers.claim(0, 0, seq, parity, s, task);
    };
    expect(refuse(3, 0, slice, { taskId: 2 })).toBe(0); // another command went to the thread since
    expect(refuse(2, 1, slice, { taskId: 2 })).toBe(0); // the step was not applied: copy 1 is still current
    expect(refuse(2, 0, { set, indices: Uint32Array.of(1, 2, 4) }, { taskId: 2 })).toBe(0);
    expect(refuse(2, 0, { set: imageSet(10), indices: slice.indices }, { taskId: 2 })).toBe(0);
    // Offered without a sample position: a command with one does not name it.
    expect(refuse(2, 0, slice, { taskId: 2, position: { seed: 1, step: 1, firstSample: 0 } })).toBe(0);
    expect(refuse(2, 0, slice, { taskId: 2, batchNorm: { mode: 'local' } })).toBe(0);
    offers.offer(0, 0, 2, 0);
    expect(offers.claim(0, 0, 2, 0, slice, { taskId: 2 })).toBe(mem.ctl[b + CTL.aheadSeq]);
    // Nothing offered since the last claim, or a command to another thread: none.
    expect(offers.claim(0, 0, 2, 0, slice, { taskId: 2 })).toBe(0);
    offers.offer(0, 0, 2, 0);
    expect(offers.claim(1, 0, 2, 0, slice, { taskId: 2 })).toBe(0);
  });

  it('offers nothing (token 0) with no next slice, after new weights are loaded, or a slice larger than a slot', () => {
    const mem = StepMemory.create({ ...shape, threads: 1 });
    const offers = new AheadOffers(mem);
    const set = imageSet(10);
    const b = mem.threadBase(0);
    offers.offer(0, 0, 1, 1);
    expect(mem.ctl[b + CTL.aheadSeq]).toBe(0);
    offers.setNext(set, [{ indices: Uint32Array.of(1, 2, 3, 4, 5) }]);
    offers.offer(0, 0, 2, 0);
    expect(mem.ctl[b + CTL.aheadSeq]).toBe(0);
    offers.setNext(set, [{ indices: Uint32Array.of(1) }]);
    offers.forget();
    offers.offer(0, 0, 3, 1);
    expect(mem.ctl[b + CTL.aheadSeq]).toBe(0);
    // No slice for the command's slot: none.
    offers.setNext(set, [{ indices: Uint32Array.of(1) }]);
    offers.offer(0, 1, 4, 0);
    expect(mem.ctl[b + CTL.aheadSeq]).toBe(0);
  });

  it('offers each thread its slot\'s next slice in buffers of its own, alternating by its own offers, and names it only for that slot', () => {
    const mem = StepMemory.create({ ...shape, slots: 2, threads: 2 });
    const offers = new AheadOffers(mem);
    const set = imageSet(10);
    const [b0, b1] = [mem.threadBase(0), mem.threadBase(1)];
    const slices = [Uint32Array.of(0, 1), Uint32Array.of(2, 3, 4)];
    offers.setNext(set, slices.map((indices) => ({ indices })));
    offers.offer(0, 0, 1, 1);
    offers.offer(1, 1, 1, 1);
    const [t0, t1] = [mem.ctl[b0 + CTL.aheadSeq], mem.ctl[b1 + CTL.aheadSeq]];
    expect(t0).toBeGreaterThan(0);
    expect(t1).toBeGreaterThan(0);
    expect(mem.ctl[b1 + CTL.aheadCount]).toBe(3);
    expect([...mem.aheadBuffer(0, t0)!.labels.subarray(0, 2)]).toEqual([0, 1]);
    expect([...mem.aheadBuffer(1, t1)!.labels.subarray(0, 3)]).toEqual([2, 3, 4]);
    // Each thread's slice: named for its own slot only.
    expect(offers.claim(1, 0, 1, 1, { set, indices: slices[0] }, { taskId: 3 })).toBe(0);
    offers.offer(1, 1, 1, 1);
    const again = mem.ctl[b1 + CTL.aheadSeq];
    expect(again & 1).not.toBe(t1 & 1);
    // Thread 1's second offer went into its other buffer: its first, and thread 0's, are untouched.
    expect([...mem.aheadBuffer(1, t1)!.labels.subarray(0, 3)]).toEqual([2, 3, 4]);
    expect(offers.claim(1, 1, 1, 1, { set, indices: slices[1] }, { taskId: 3 })).toBe(again);
    expect(offers.claim(0, 0, 1, 1, { set, indices: slices[0] }, { taskId: 2 })).toBe(t0);
    // forget() drops every thread's offer.
    offers.offer(0, 0, 2, 0);
    offers.offer(1, 1, 2, 0);
    offers.forget();
    expect(offers.claim(0, 0, 2, 0, { set, indices: slices[0] }, { taskId: 4 })).toBe(0);
    expect(offers.claim(1, 1, 2, 0, { set, indices: slices[1] }, { taskId: 5 })).toBe(0);
  });

  it('offers a slice\'s sample position with it, and names it only for a command at that position', () => {
    const mem = StepMemory.create({ ...shape, threads: 1 });
    const offers = new AheadOffers(mem);
    const set = imageSet(10);
    const b = mem.threadBase(0);
    const indices = Uint32Array.of(4, 5);
    const position = { seed: 0xfffffff0, step: 7, firstSample: 0 };
    offers.setNext(set, [{ indices, position }]);
    const named = (task: Parameters<AheadOffers['claim']>[5]) => {
      offers.offer(0, 0, 1, 1);
      return offers.claim(0, 0, 1, 1, { set, indices }, task);
    };
    expect(named({ taskId: 1, position: { ...position } })).toBe(mem.ctl[b + CTL.aheadSeq]);
    expect(readPosition(mem.ctl, b, 'ahead')).toEqual(position);
    expect(named({ taskId: 1, position: { ...position, step: 8 } })).toBe(0);
    expect(named({ taskId: 1, position: { ...position, firstSample: 2 } })).toBe(0);
    expect(named({ taskId: 1, position: { ...position, seed: 1 } })).toBe(0);
    expect(named({ taskId: 1 })).toBe(0);
    expect(named({ taskId: 1, position, batchNorm: { mode: 'local' } })).toBe(0);
    // Then a slice without one: its words say so.
    offers.setNext(set, [{ indices }]);
    offers.offer(0, 0, 2, 0);
    expect(readPosition(mem.ctl, b, 'ahead')).toBeUndefined();
  });

  it('is on for any thread count, off with a reduction grain', () => {
    expect(new AheadOffers(StepMemory.create({ ...shape, threads: 1 })).enabled).toBe(true);
    const two = StepMemory.create({ ...shape, slots: 2, threads: 2 });
    expect(two.aheadImages).toHaveLength(4);
    expect(new AheadOffers(two).enabled).toBe(true);
    const grained = StepMemory.create({ ...shape, threads: 2, slots: 2, grain: 2 });
    expect(grained.aheadImages).toEqual([]);
    expect(grained.aheadBuffer(0, 1)).toBeUndefined();
    expect(new AheadOffers(grained).enabled).toBe(false);
  });
});
