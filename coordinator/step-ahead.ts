/**
 * The step ahead, the owning thread's side (the thread's: worker/step-ahead.ts).
 *
 * A step whose threads reduce and apply Adam themselves (a step of one slot, or a fused round of
 * several: mlp, lenet and cnn-dropout as `dtrain train` runs them, and `--workers 2
 * --batch-per-worker 32`) leaves each thread idle from the end of its command to the next one:
 * meanwhile the owning thread wakes for the completions, screens the results, makes the next copies
 * current, reports the step, gathers the next slices and publishes their commands. So when the owner
 * hands thread t its slot k of step s, it also offers step s+1's slice k: the images go into one of
 * thread t's ahead buffers in the step memory, with the weight copy step s writes. The thread, done
 * with s (in a round: once every stripe of the round is written, CTL.stripesDone), runs s+1's forward
 * and backward pass on that copy while the owner finishes s, and keeps the gradients in its backend.
 *
 * Step s+1's command names the offer (CTL.ahead) only if nothing that pass read can differ from
 * what the command would read: the same thread and slot, the same slice of the same set at the same
 * sample position (the same Dropout masks), no BatchNorm mode, the copy s wrote is the current one
 * (s was applied, not refused), and no other command went to the thread after s's (no
 * recomputation, no reduction). Otherwise the command names none, and the thread drops the pass and
 * computes as always. Either way the results are bit for bit the same: same weights, same images,
 * same masks.
 */
import { gatherInto } from '../common/data/split.ts';
import type { ImageSet } from '../common/data/types.ts';
import { AHEAD_SLICE, CTL, writePosition, type StepMemory } from '../common/step-memory.ts';
import type { SamplePosition, SliceTask } from '../common/protocol.ts';

interface Slice {
  set: ImageSet;
  indices: Uint32Array;
}

/** A slice of the next step, as the trainer will hand it out: its indices and sample position (Dropout's masks), if it has one. */
export interface NextSlice {
  indices: Uint32Array;
  position?: SamplePosition;
}

interface Offer extends Slice {
  position: SamplePosition | undefined;
  token: number;
  /** The slot whose next slice it is. */
  slot: number;
  /** The weight copy the pass reads: the one the step it was offered with writes. */
  parity: 0 | 1;
  /** The thread's command count when it was offered (that step's command). */
  afterSeq: number;
}

function samePosition(a: SamplePosition | undefined, b: SamplePosition | undefined): boolean {
  if (!a || !b) return a === b;
  return a.seed === b.seed && a.step === b.step && a.firstSample === b.firstSample;
}

function sameSlice(a: Slice, b: Slice): boolean {
  if (a.set !== b.set || a.indices.length !== b.indices.length) return false;
  for (let i = 0; i < a.indices.length; i++) if (a.indices[i] !== b.indices[i]) return false;
  return true;
}

export class AheadOffers {
  /** The next step's slices, by slot. */
  private next: (Slice & { position: SamplePosition | undefined })[] | undefined;
  /** Per thread: the offer made with its last command, until claimed or replaced. */
  private readonly offered: (Offer | undefined)[];
  /** Per thread: its last token (the two buffers alternate by token). */
  private readonly tokens: number[];
  /**
   * The training set the threads were given (SharedStep.shareTrainSet): a slice of it is offered by
   * its indices, and the thread copies the images in itself; a slice of any other set, by its images.
   */
  trainSet: ImageSet | undefined;
  /** Commands that used a pass computed ahead. */
  hits = 0;
  private reported = 0;

  constructor(private readonly mem: StepMemory) {
    this.offered = new Array(mem.shape.threads).fill(undefined);
    this.tokens = new Array(mem.shape.threads).fill(0);
  }

  /** Whether the memory has ahead buffers (float32 slots: a pass ahead runs without a reduction grain). */
  get enabled(): boolean {
    return this.mem.aheadImages.length > 0;
  }

  /**
   * The slices of the step after the one being prepared, by slot, with the sample positions the
   * trainer will give them (the trainer, before this step's tasks go out); undefined when there are
   * none to offer (the epoch ends, or the slices carry a BatchNorm mode, which a pass ahead cannot
   * take part in).
   */
  setNext(set: ImageSet, slices: readonly NextSlice[] | undefined): void {
    const fits = this.enabled && slices !== undefined && slices.every((s) => s.indices.length > 0 && s.indices.length <= this.mem.shape.slotSamples);
    this.next = fits ? slices.map((s) => ({ set, indices: s.indices, position: s.position })) : undefined;
  }

  /**
   * With a trainApply command for slot `slot` to thread `index` (its `seq`th, whose step writes copy
   * `writes`), before it is published: offers the next step's slice for that slot, or no slice
   * (token 0). The thread reads the offer with the command, and the owner writes the next one only
   * with the next command, after this one is done; the thread's two buffers alternate, so the one a
   * pass reads is not rewritten under it.
   */
  offer(index: number, slot: number, seq: number, writes: 0 | 1): void {
    // The slices stay: in a step of one slot, a slice computed again (a rejected result) offers the next one again.
    const next = this.next?.[slot];
    this.offered[index] = undefined;
    const { ctl } = this.mem;
    const b = this.mem.threadBase(index);
    // Wraps while keeping the parity alternating, so the buffers keep alternating.
    const token = next ? (this.tokens[index] % 0x40000000) + 1 : 0;
    const buffer = token ? this.mem.aheadBuffer(index, token) : undefined;
    if (!next || !buffer) {
      ctl[b + CTL.aheadSeq] = 0;
      return;
    }
    this.tokens[index] = token;
    const byIndex = next.set === this.trainSet;
    if (byIndex) buffer.indices.set(next.indices);
    else gatherInto(next.set, next.indices, buffer.images, buffer.labels);
    buffer.slice[AHEAD_SLICE.count] = next.indices.length;
    buffer.slice[AHEAD_SLICE.byIndex] = byIndex ? 1 : 0;
    ctl[b + CTL.aheadSeq] = token;
    ctl[b + CTL.aheadCount] = next.indices.length;
    ctl[b + CTL.aheadParity] = writes;
    writePosition(ctl, b, 'ahead', next.position);
    this.offered[index] = { ...next, token, slot, parity: writes, afterSeq: seq };
  }

  /**
   * The offer a trainApply command for slot `slot` to thread `index` may name (0: none): thread
   * `index` has been sent nothing since it was offered (`seq` is its command count now), the offer
   * was for this slot, the copy it was computed on is `parity`, the current one, and the command's
   * slice is the one offered, at the sample position offered, with no BatchNorm mode. Forgets the
   * offer either way.
   */
  claim(index: number, slot: number, seq: number, parity: 0 | 1, slice: Slice | undefined, task: SliceTask): number {
    const o = this.offered[index];
    this.offered[index] = undefined;
    if (!o || !slice || slot !== o.slot || seq !== o.afterSeq || parity !== o.parity) return 0;
    if (task.batchNorm || !samePosition(o.position, task.position) || !sameSlice(o, slice)) return 0;
    return o.token;
  }

  /** The hits since the last call. */
  newHits(): number {
    const n = this.hits - this.reported;
    this.reported = this.hits;
    return n;
  }

  /** Forgets every offer (new weights were loaded, or a command that computes no pass ahead went out). */
  forget(): void {
    this.offered.fill(undefined);
    this.next = undefined;
  }
}
