/**
 * The step ahead, the owning thread's side (the thread's: worker/step-ahead.ts).
 *
 * With one compute thread, a step of one slot (mlp and lenet at batch 32, as `dtrain train` runs
 * them) leaves the thread idle from the end of its command to the next one: meanwhile the owning
 * thread wakes for the completion, screens the result, makes the next copies current, reports the
 * step, gathers the next slice and publishes its command. So when the owner hands out step s, it
 * also offers step s+1's slice: the images go into an ahead buffer of the step memory, with the
 * weight copy step s writes. The thread, done with s, runs s+1's forward and backward pass on that
 * copy while the owner finishes s, and keeps the gradients in its backend.
 *
 * Step s+1's command names the offer (CTL.ahead) only if nothing that pass read can differ from
 * what the command would read: the same slice of the same set, the copy s wrote is the current one
 * (s was applied, not refused), and no other command went to the thread after s's (no
 * recomputation, no reduction). Otherwise the command names none, and the thread drops the pass and
 * computes as always. Either way the results are bit for bit the same: same weights, same images.
 */
import { gatherInto } from '../common/data/split.ts';
import type { ImageSet } from '../common/data/types.ts';
import { CTL, type StepMemory } from '../common/step-memory.ts';
import type { SliceTask } from '../common/protocol.ts';

interface Slice {
  set: ImageSet;
  indices: Uint32Array;
}

interface Offer extends Slice {
  token: number;
  /** The weight copy the pass reads: the one the step it was offered with writes. */
  parity: 0 | 1;
  /** The thread's command count when it was offered (that step's command). */
  afterSeq: number;
}

function sameSlice(a: Slice, b: Slice): boolean {
  if (a.set !== b.set || a.indices.length !== b.indices.length) return false;
  for (let i = 0; i < a.indices.length; i++) if (a.indices[i] !== b.indices[i]) return false;
  return true;
}

export class AheadOffers {
  private next: Slice | undefined;
  private offered: Offer | undefined;
  private token = 0;
  /** Commands that used a pass computed ahead. */
  hits = 0;
  private reported = 0;

  constructor(private readonly mem: StepMemory) {}

  /** Whether the memory has ahead buffers (one compute thread) and float32 slots (a pass ahead runs without a reduction grain). */
  get enabled(): boolean {
    return this.mem.aheadImages.length > 0 && !(this.mem.shape.grain ?? 0);
  }

  /**
   * The slice of the step after the one being prepared (the trainer, before this step's tasks go
   * out); undefined when there is none to offer (the epoch ends, or the next step has several slices).
   */
  setNext(set: ImageSet, indices: Uint32Array | undefined): void {
    this.next = this.enabled && indices && indices.length > 0 && indices.length <= this.mem.shape.slotSamples ? { set, indices } : undefined;
  }

  /**
   * With the command of a one-slot step to thread `index` (its `seq`th, writing copy `writes`), before
   * it is published: offers the next slice, or no slice (token 0). The thread reads the offer with
   * the command, and the owner writes the next one only with the next command, after this one is
   * done; the two image buffers alternate, so the one a pass reads is not rewritten under it.
   */
  offer(index: number, seq: number, writes: 0 | 1): void {
    // The slice stays: a step's slice computed again (a rejected result) offers it again.
    const next = this.next;
    this.offered = undefined;
    const { ctl } = this.mem;
    const b = this.mem.threadBase(index);
    if (!next) {
      ctl[b + CTL.aheadSeq] = 0;
      return;
    }
    const token = ++this.token;
    const buffer = token & 1;
    gatherInto(next.set, next.indices, this.mem.aheadImages[buffer], this.mem.aheadLabels[buffer]);
    ctl[b + CTL.aheadSeq] = token;
    ctl[b + CTL.aheadCount] = next.indices.length;
    ctl[b + CTL.aheadParity] = writes;
    this.offered = { ...next, token, parity: writes, afterSeq: seq };
  }

  /**
   * The offer a one-slot command to thread `index` may name (0: none): thread `index` has sent
   * nothing since it was offered (`seq` is its command count now), the copy it was computed on is
   * `parity`, the current one, and the command's slice is the one offered, with no sample position
   * or BatchNorm mode. Forgets the offer either way.
   */
  claim(index: number, seq: number, parity: 0 | 1, slice: Slice | undefined, task: SliceTask): number {
    const o = this.offered;
    this.offered = undefined;
    if (!o || !slice || index !== 0 || seq !== o.afterSeq || parity !== o.parity) return 0;
    if (task.position || task.batchNorm || !sameSlice(o, slice)) return 0;
    return o.token;
  }

  /** The hits since the last call. */
  newHits(): number {
    const n = this.hits - this.reported;
    this.reported = this.hits;
    return n;
  }

  /** Forgets any offer (new weights were loaded). */
  forget(): void {
    this.offered = undefined;
    this.next = undefined;
  }
}
