/**
 * The task arena: how a task's large arrays reach a compute thread without a new copy of their own
 * in the thread for every task.
 */
import type { TaskMessage } from '../common/protocol.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';

const WHOLE = Uint32Array.of(0);

/**
 * `src` into `view` (shared memory, of the same length). TypedArray.set into a SharedArrayBuffer
 * copies word by word (V8's relaxed memmove): 0.56 ms of a WebSocket worker's main thread per mlp
 * step for the weights (a CPU profile, docs/shared-step.md). The native kernels' row copy, with
 * the whole array as one row, is one memmove.
 */
function copyIntoShared(view: Uint8Array, src: Uint8Array): void {
  const native = src.byteLength > 0 ? loadNativeKernels() : undefined;
  if (native?.loaded) native.kernels.gatherRows(view, 0, src, WHOLE, src.byteLength);
  else view.set(src);
}

/** Tasks smaller than this are cloned as they are: a few pages, not worth the copy. */
const ARENA_MIN_BYTES = 64 * 1024;

/**
 * A task's arrays (weights, pixels, labels, indices), copied into one SharedArrayBuffer kept from task to task. Posting a
 * message clones its arrays into new memory in the thread every task (a WebSocket worker's lenet
 * task is ~350 KB: new pages, each a page fault of 17-40 us on this VM, 28% of the thread's faults
 * per step); views of a SharedArrayBuffer are shared instead. The thread reads them until it
 * answers, so only a task with no other in flight may use the arena (ComputeThread.run); a task
 * abandoned meanwhile may read bytes of the next, and its answer is dropped anyway.
 */
export class TaskArena {
  private buffer: SharedArrayBuffer | undefined;

  /** `task` with its weights and images in the arena (the same object where they are small). */
  place(task: TaskMessage): TaskMessage {
    const aligned = (n: number) => Math.ceil(n / 64) * 64;
    const bytes = aligned(task.weights?.byteLength ?? 0) + aligned(task.images.byteLength) + aligned(task.labels.byteLength) + (task.indices?.byteLength ?? 0);
    if (bytes < ARENA_MIN_BYTES) return task;
    if (!this.buffer || this.buffer.byteLength < bytes) this.buffer = new SharedArrayBuffer(2 ** Math.ceil(Math.log2(bytes)));
    const buffer = this.buffer;
    let offset = 0;
    // 64-byte offsets: the weights stay float-aligned, so the thread reads them where they lie.
    const put = (a: Uint8Array) => {
      const view = new Uint8Array(buffer, offset, a.byteLength);
      copyIntoShared(view, a);
      offset += aligned(a.byteLength);
      return view;
    };
    // Every array goes in: a clone copies a view's whole buffer, and a decoded frame's arrays are
    // views of one socket chunk.
    const weights = task.weights ? { weights: put(task.weights) } : {};
    const indices = task.indices ? { indices: put(task.indices) } : {};
    return { ...task, ...weights, images: put(task.images), labels: put(task.labels), ...indices };
  }
}
