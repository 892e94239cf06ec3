/**
 * Where a compute thread writes a train task's gradient sums and statistics when its owner reads
 * each result before it hands the thread another task (a WebSocket worker encodes the result into
 * its frame at once). Returning them as a new array per task was a new 1.6 MB for the mlp every
 * step, transferred to the owner and freed there, on top of the read-back's packing: external
 * memory that started major collections (docs/shared-step.md, "Frames masked natively"). One
 * SharedArrayBuffer, kept from task to task, is rewritten instead, and the owner's view of it is
 * the same memory.
 */
import type { GradientTarget } from './compute.ts';

/** A float32 target: no reduction grain over WebSockets. */
export interface Float32Target extends GradientTarget {
  gradientSum: Float32Array;
}

export class SharedResult {
  private buffer: SharedArrayBuffer | undefined;

  /** Views of `gradients` and then `stats` floats, in memory kept for the next call. */
  target(gradients: number, stats: number): Float32Target {
    const bytes = (gradients + stats) * 4;
    if (!this.buffer || this.buffer.byteLength < bytes) this.buffer = new SharedArrayBuffer(bytes);
    return { gradientSum: new Float32Array(this.buffer, 0, gradients), stats: new Float32Array(this.buffer, gradients * 4, stats) };
  }
}
