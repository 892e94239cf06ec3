import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../common/backend.ts';
import { WorkerSession } from './session.ts';
import { StepAhead } from './step-ahead.ts';
import { PROTOCOL_VERSION, type SliceTask, type WelcomeMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { AHEAD_SLICE, CTL, StepMemory, writePosition } from '../common/step-memory.ts';
import { bumpCopyVersion } from '../common/step-stripe.ts';
import { IMAGE_BYTES, type ImageSet } from '../common/data/types.ts';

/** A one-thread step memory for `name` holding `weights` in copy 1, a session welcomed to it, and a slice offered with token `token`. */
function setup(session: WorkerSession, token: number, name: 'mlp' | 'cnn-dropout' = 'mlp') {
  const model = buildModel(name);
  const layout = weightLayout(model);
  model.dispose();
  const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w', model: name, preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
  session.welcome(welcome);
  const mem = StepMemory.create({ trainable: layout.trainableSize, stats: 0, slots: 1, slotSamples: 8, threads: 1 });
  const weights = initialWeights(layout, 3);
  mem.weights[1].set(weights);
  const { images, labels } = generateSynthetic(Uint32Array.from({ length: 8 }, (_, i) => i), 'dev', 1);
  mem.aheadImages[token & 1].set(images);
  mem.aheadLabels[token & 1].set(labels);
  const b = mem.threadBase(0);
  mem.ctl[b + CTL.aheadSeq] = token;
  mem.ctl[b + CTL.aheadCount] = 8;
  mem.ctl[b + CTL.aheadParity] = 1;
  return { mem, weights, images, labels, layout, ahead: new StepAhead(mem, 0, session) };
}

describe('the step ahead, on a compute thread (wasm)', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('writes out, when its command names it, the gradient the command would have computed, bit for bit, and frees its tensors', async () => {
    const session = new WorkerSession();
    const { weights, images, labels, layout, ahead } = setup(session, 5);
    // A step has succeeded on the backend (no pass runs before: the backend could still fall back).
    const direct = new Float32Array(layout.trainableSize);
    const stats = new Float32Array(0);
    const reference = await session.trainWithInto(weights, images, labels, () => ({ gradientSum: direct, stats }));
    const before = tf.memory().numTensors;
    const offer = ahead.offer();
    expect(offer).toEqual({ token: 5, count: 8, parity: 1 });
    await ahead.compute(offer!, 1);
    // The pass holds its gradients in the backend until its command.
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    const pass = ahead.take(5);
    expect(pass).toBeDefined();
    const out = new Float32Array(layout.trainableSize);
    const r = await session.finishAhead(pass!.prepared, () => ({ gradientSum: out, stats }));
    expect(r).toEqual(reference);
    expect(Buffer.compare(Buffer.from(out.buffer), Buffer.from(direct.buffer))).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    session.dispose();
  });

  it('runs a slice offered with a sample position at that position: the gradient of the command at it (its Dropout masks), bit for bit', async () => {
    const session = new WorkerSession();
    const { mem, weights, images, labels, layout, ahead } = setup(session, 3, 'cnn-dropout');
    const position = { seed: 0xfffffff0, step: 11, firstSample: 5 };
    writePosition(mem.ctl, mem.threadBase(0), 'ahead', position);
    const stats = new Float32Array(0);
    const gradientAt = async (task: SliceTask) => {
      const g = new Float32Array(layout.trainableSize);
      await session.trainWithInto(weights, images, labels, () => ({ gradientSum: g, stats }), task);
      return g;
    };
    const direct = await gradientAt({ taskId: 1, position });
    const elsewhere = await gradientAt({ taskId: 1, position: { ...position, step: 12 } });
    const offer = ahead.offer()!;
    expect(offer.position).toEqual(position);
    await ahead.compute(offer, 1);
    const out = new Float32Array(layout.trainableSize);
    await session.finishAhead(ahead.take(3)!.prepared, () => ({ gradientSum: out, stats }));
    expect(Buffer.compare(Buffer.from(out.buffer), Buffer.from(direct.buffer))).toBe(0);
    // Another step's masks give another gradient: the position is what made them equal.
    expect(Buffer.compare(Buffer.from(out.buffer), Buffer.from(elsewhere.buffer))).not.toBe(0);
    session.dispose();
  });

  it('drops a pass that its command does not name, or that was offered on another copy, without leaking tensors', async () => {
    const session = new WorkerSession();
    const { weights, images, labels, layout, ahead } = setup(session, 2);
    await session.trainWithInto(weights, images, labels, () => ({ gradientSum: new Float32Array(layout.trainableSize), stats: new Float32Array(0) }));
    const before = tf.memory().numTensors;
    const offer = ahead.offer()!;
    // Offered on copy 1, but the command wrote copy 0: no pass.
    await ahead.compute(offer, 0);
    expect(tf.memory().numTensors).toBe(before);
    expect(ahead.take(2)).toBeUndefined();
    await ahead.compute(offer, 1);
    expect(ahead.take(3)).toBeUndefined();
    expect(tf.memory().numTensors).toBe(before);
    // A newer pass replaces an unused one, freeing it.
    await ahead.compute(offer, 1);
    await ahead.compute(offer, 1);
    ahead.drop();
    expect(tf.memory().numTensors).toBe(before);
    session.dispose();
  });

  it('drops a named pass whose copy was written again after the pass read it, without leaking tensors', async () => {
    const session = new WorkerSession();
    const { mem, weights, images, labels, layout, ahead } = setup(session, 6);
    await session.trainWithInto(weights, images, labels, () => ({ gradientSum: new Float32Array(layout.trainableSize), stats: new Float32Array(0) }));
    const before = tf.memory().numTensors;
    await ahead.compute(ahead.offer()!, 1);
    expect(tf.memory().numTensors).toBeGreaterThan(before);
    // A writer of copy 1 (a stripe, a reload) raises its version before it writes.
    bumpCopyVersion(mem.ctl, 1);
    expect(ahead.take(6)).toBeUndefined();
    expect(tf.memory().numTensors).toBe(before);
    // Copy 0 written instead: the pass on copy 1 stands.
    await ahead.compute(ahead.offer()!, 1);
    bumpCopyVersion(mem.ctl, 0);
    const pass = ahead.take(6);
    expect(pass).toBeDefined();
    session.discardAhead(pass!.prepared);
    expect(tf.memory().numTensors).toBe(before);
    session.dispose();
  });

  it('runs no pass before a step has succeeded on the backend', async () => {
    const session = new WorkerSession();
    const { ahead } = setup(session, 1);
    await ahead.compute(ahead.offer()!, 1);
    expect(ahead.take(1)).toBeUndefined();
    session.dispose();
  });

  it('reads no offer with token 0 or a count the memory cannot hold', () => {
    const session = new WorkerSession();
    const { mem, ahead } = setup(session, 4);
    const b = mem.threadBase(0);
    mem.ctl[b + CTL.aheadCount] = 9;
    expect(ahead.offer()).toBeUndefined();
    mem.ctl[b + CTL.aheadCount] = 8;
    mem.ctl[b + CTL.aheadSeq] = 0;
    expect(ahead.offer()).toBeUndefined();
    expect(mem.aheadImages[0].length).toBe(8 * IMAGE_BYTES);
    session.dispose();
  });
});

describe('a slice offered by index (fill)', () => {
  function offered(withSet = true) {
    const mem = StepMemory.create({ trainable: 16, stats: 0, slots: 1, slotSamples: 4, threads: 1 });
    const set = generateSynthetic(Uint32Array.from({ length: 10 }, (_, i) => i), 'dev', 2, true);
    const ahead = new StepAhead(mem, 0, new WorkerSession(), withSet ? set : undefined);
    const buffer = mem.aheadBuffer(0, 7)!;
    buffer.indices.set([9, 2, 4]);
    buffer.slice[AHEAD_SLICE.count] = 3;
    buffer.slice[AHEAD_SLICE.byIndex] = 1;
    return { mem, set, ahead, buffer };
  }
  const image = (set: ImageSet, k: number) => Buffer.from(set.images.subarray(k * IMAGE_BYTES, (k + 1) * IMAGE_BYTES));

  it('copies the images and labels at the offered indices of the training set into the buffer, once per offer', () => {
    const { set, ahead, buffer } = offered();
    expect(ahead.fill(7)?.images).toBe(buffer.images);
    for (const [j, k] of [9, 2, 4].entries()) {
      expect(Buffer.from(buffer.images.subarray(j * IMAGE_BYTES, (j + 1) * IMAGE_BYTES)).equals(image(set, k))).toBe(true);
      expect(buffer.labels[j]).toBe(set.labels[k]);
    }
    // Filled once: a second call for the same offer leaves the buffer alone.
    buffer.images.fill(0);
    ahead.fill(7);
    expect(buffer.images.every((x) => x === 0)).toBe(true);
  });

  it('leaves a buffer the owner filled with images as it is', () => {
    const { ahead, buffer } = offered();
    buffer.slice[AHEAD_SLICE.byIndex] = 0;
    buffer.images.fill(5);
    ahead.fill(7);
    expect(buffer.images.every((x) => x === 5)).toBe(true);
  });

  it('refuses an offer by index without a training set, or with a count outside the buffer, naming what it got', () => {
    expect(() => offered(false).ahead.fill(7)).toThrow('offer 7 names its slice by index, but this thread was given no training set');
    const { ahead, buffer } = offered();
    buffer.slice[AHEAD_SLICE.count] = 5;
    expect(() => ahead.fill(7)).toThrow('offer 7 holds 5 samples, expected 1 to 4');
    buffer.slice[AHEAD_SLICE.count] = 3;
    buffer.indices[1] = 10;
    expect(() => ahead.fill(7)).toThrow('Expected indices below 10, but index 1 is 10.');
  });
});
