import { describe, expect, it } from 'vitest';
import { FrameEncoder, POOLED_MIN_BYTES } from './frame-encoder.ts';
import { decodeWorkerMessage, encode } from './codec.ts';
import type { ResultMessage } from './protocol.ts';

const COUNT = 100_000;
function result(taskId: number, fill: number): ResultMessage {
  return { type: 'result', taskId, count: 32, lossSum: 1.5, correct: 3, computeMs: 2, gradients: new Uint8Array(new Float32Array(COUNT).fill(fill).buffer) };
}
const expect32 = { gradientCount: COUNT, statsCount: 0 };

describe('FrameEncoder', () => {
  it('encodes what encode() does, and reuses a buffer once its frame is released', () => {
    const frames = new FrameEncoder();
    const a = frames.encode(result(1, 0.25));
    expect(Buffer.from(a.bytes).equals(Buffer.from(encode(result(1, 0.25))))).toBe(true);
    a.release();
    const b = frames.encode(result(2, 0.5));
    expect(b.bytes.buffer).toBe(a.bytes.buffer);
    expect(frames.allocated).toBe(1);
    const decoded = decodeWorkerMessage(Buffer.from(b.bytes), expect32) as ResultMessage;
    expect(decoded.taskId).toBe(2);
    expect(new Float32Array(decoded.gradients!.buffer, decoded.gradients!.byteOffset, COUNT).every((v) => v === 0.5)).toBe(true);
  });

  it('never writes over a frame that is not released: the next one gets a buffer of its own', () => {
    const frames = new FrameEncoder();
    const a = frames.encode(result(1, 0.25));
    const before = Buffer.from(a.bytes);
    const b = frames.encode(result(2, 0.75));
    expect(b.bytes.buffer).not.toBe(a.bytes.buffer);
    expect(Buffer.from(a.bytes).equals(before)).toBe(true);
    expect(frames.allocated).toBe(2);
  });

  it('leaves msgpackr off its buffer: small messages encoded afterwards land elsewhere', () => {
    const frames = new FrameEncoder();
    const a = frames.encode(result(1, 0.25));
    const before = Buffer.from(a.bytes);
    for (let i = 0; i < 50; i++) expect(encode({ type: 'ready', backend: 'wasm' }).buffer).not.toBe(a.bytes.buffer);
    expect(Buffer.from(a.bytes).equals(before)).toBe(true);
  });

  it('encodes small messages as before, outside the pool', () => {
    const frames = new FrameEncoder();
    const small: ResultMessage = { ...result(1, 1), gradients: new Uint8Array(POOLED_MIN_BYTES - 4) };
    const f = frames.encode(small);
    f.release();
    expect(frames.allocated).toBe(0);
    expect(Buffer.from(f.bytes).equals(Buffer.from(encode(small)))).toBe(true);
  });

  it('keeps at most `keep` free buffers, and a released frame counts once', () => {
    const frames = new FrameEncoder(1);
    const a = frames.encode(result(1, 0));
    const b = frames.encode(result(2, 0));
    a.release();
    a.release();
    b.release();
    frames.encode(result(3, 0));
    const d = frames.encode(result(4, 0));
    expect(d.bytes.buffer).not.toBe(a.bytes.buffer);
    expect(frames.allocated).toBe(3);
  });

  it('lets go of free buffers far larger than the frames now sent, and reuses the smallest that fits', () => {
    const frames = new FrameEncoder(8);
    const big: ResultMessage = { ...result(1, 0), gradients: new Uint8Array(40 * COUNT) };
    const huge = frames.encode(big);
    const normal = frames.encode(result(2, 0));
    huge.release();
    normal.release();
    expect(frames.heldBytes).toBeGreaterThan(40 * COUNT);
    // A frame of the usual size: the usual buffer, and the one ten times its size is dropped.
    const next = frames.encode(result(3, 0));
    expect(next.bytes.buffer).toBe(normal.bytes.buffer);
    expect(frames.heldBytes).toBe(0);
    next.release();
    expect(frames.heldBytes).toBeLessThan(5 * COUNT);
    expect(frames.allocated).toBe(2);
  });
});
