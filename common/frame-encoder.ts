/**
 * Frames of large messages (a task's weights, a result's gradients) encoded into buffers kept from
 * frame to frame. A fresh buffer per frame is external memory to V8, and for the mlp (1.6 MB each
 * way per step) those buffers alone started a major collection every few steps on each side of a
 * WebSocket connection (docs/shared-step.md, "Frames masked natively"). A buffer goes back to the
 * pool only when its release is called: after ws's send callback, once the socket is done with
 * its bytes.
 */
import { encode, encodeInto } from './codec.ts';
import type { CoordinatorMessage, WorkerMessage } from './protocol.ts';

/** Messages whose arrays come to less than this are encoded as before: a few pages, not worth a pool. */
export const POOLED_MIN_BYTES = 64 * 1024;
/** A free buffer more than this many times a frame's size is dropped, not kept for it. */
const OVERSIZED = 4;
/** Room for everything but the arrays (keys, numbers, headers): far above what any message has. */
const HEADROOM = 4096;

export interface Frame {
  readonly bytes: Uint8Array;
  /** Gives the buffer back; call once, when nothing reads `bytes` any more. */
  release(): void;
}

const NOTHING_TO_RELEASE = () => {};

/** The bytes of a message's top-level binary fields: all its bulk. */
function arrayBytes(message: WorkerMessage | CoordinatorMessage): number {
  let n = 0;
  for (const v of Object.values(message)) if (v instanceof Uint8Array) n += v.byteLength;
  return n;
}

export class FrameEncoder {
  private readonly free: Buffer[] = [];
  /** Buffers allocated for frames so far (a test and a log can see the pool working). */
  allocated = 0;

  /** `keep`: free buffers held at most (one per frame in flight is enough). */
  constructor(private readonly keep = 4) {}

  encode(message: WorkerMessage | CoordinatorMessage): Frame {
    const size = arrayBytes(message);
    if (size < POOLED_MIN_BYTES) return { bytes: encode(message), release: NOTHING_TO_RELEASE };
    const buffer = this.take(size + HEADROOM);
    const bytes = encodeInto(message, buffer);
    // msgpackr moved to a buffer of its own (the message was larger than planned): nothing to keep.
    if (bytes.buffer !== buffer.buffer) return { bytes, release: NOTHING_TO_RELEASE };
    let released = false;
    return {
      bytes,
      release: () => {
        if (released) return;
        released = true;
        if (this.free.length < this.keep) this.free.push(buffer);
      },
    };
  }

  /** Bytes of the free buffers held. */
  get heldBytes(): number {
    return this.free.reduce((n, b) => n + b.byteLength, 0);
  }

  private take(bytes: number): Buffer {
    // Free buffers far larger than frames are now (an evaluation's pixels, a model of the past) are let go.
    for (let j = this.free.length - 1; j >= 0; j--) if (this.free[j].byteLength > OVERSIZED * bytes) this.free.splice(j, 1);
    // The smallest that fits.
    let i = -1;
    for (let j = 0; j < this.free.length; j++) if (this.free[j].byteLength >= bytes && (i < 0 || this.free[j].byteLength < this.free[i].byteLength)) i = j;
    if (i >= 0) return this.free.splice(i, 1)[0];
    // None large enough: drop the smallest (a model changed, or frames grew) and make one.
    if (this.free.length >= this.keep) this.free.sort((a, b) => a.byteLength - b.byteLength).shift();
    this.allocated++;
    return Buffer.allocUnsafe(bytes);
  }
}
