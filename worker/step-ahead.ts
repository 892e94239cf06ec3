/**
 * The step ahead, the compute thread's side (the owner's, and why: coordinator/step-ahead.ts).
 * A trainApply command (of one slot, or of a fused round) may come with the next step's slice
 * (CTL.aheadSeq). Once the command is done (in a round: once every stripe is written), the thread
 * runs that slice's forward and backward pass on the weight copy the step wrote, and keeps the
 * gradients in its backend. The next command uses them only if it names that offer (CTL.ahead);
 * any other command drops them.
 */
import { IMAGE_BYTES, type ImageSet } from '../common/data/types.ts';
import { gatherInto } from '../common/data/split.ts';
import { AHEAD_SLICE, CTL, absoluteNow, readPosition, type AheadBuffer, type StepMemory } from '../common/step-memory.ts';
import type { SamplePosition } from '../common/protocol.ts';
import { heldToken, unwritten, type WeightsToken } from '../common/step-stripe.ts';
import type { PreparedStep } from './compute.ts';
import type { WorkerSession } from './session.ts';

export interface PassAhead {
  prepared: PreparedStep;
  /** Milliseconds the pass took (weights in, forward, backward). */
  computeMs: number;
  /** When it ended, on the clock every thread of the process shares (absoluteNow). */
  endedAt: number;
}

/** The slice offered with a command, read with the command's fields. */
export interface Offer {
  token: number;
  count: number;
  parity: 0 | 1;
  /** The slice's sample position (its Dropout masks), if it has one. */
  position?: SamplePosition;
}

export class StepAhead {
  private pending: (PassAhead & { token: number; read: WeightsToken }) | undefined;

  private readonly base: number;
  /** Per ahead buffer: the offer whose images this thread copied into it (0: none). */
  private readonly filled = [0, 0];

  /**
   * `index`: this thread's, whose control block and ahead buffers it reads. `trainSet`: the run's
   * training set in shared memory, which slices offered by index are copied in from.
   */
  constructor(private readonly mem: StepMemory, private readonly index: number, private readonly session: WorkerSession, private readonly trainSet?: ImageSet) {
    this.base = mem.threadBase(index);
  }

  /**
   * The buffer of offer `token`, holding its images: a slice the owner offered by index (AHEAD_SLICE)
   * is copied in from the training set here, once, by this thread (for its pass ahead, or for a
   * command that names the offer and cannot use the pass). Undefined where the memory has no buffers.
   */
  fill(token: number): AheadBuffer | undefined {
    const buffer = this.mem.aheadBuffer(this.index, token);
    if (!buffer || buffer.slice[AHEAD_SLICE.byIndex] !== 1 || this.filled[token & 1] === token) return buffer;
    const count = buffer.slice[AHEAD_SLICE.count];
    if (!this.trainSet) throw new Error(`offer ${token} names its slice by index, but this thread was given no training set`);
    if (!(count >= 1 && count <= this.mem.shape.slotSamples)) throw new Error(`offer ${token} holds ${count} samples, expected 1 to ${this.mem.shape.slotSamples}`);
    gatherInto(this.trainSet, buffer.indices.subarray(0, count), buffer.images, buffer.labels);
    this.filled[token & 1] = token;
    return buffer;
  }

  /** The slice offered with the command being run (undefined: none). */
  offer(): Offer | undefined {
    const { ctl, shape } = this.mem;
    const b = this.base;
    const token = ctl[b + CTL.aheadSeq];
    const count = ctl[b + CTL.aheadCount];
    if (token === 0 || !this.mem.aheadBuffer(this.index, token) || count < 1 || count > shape.slotSamples) return undefined;
    const position = readPosition(ctl, b, 'ahead');
    return { token, count, parity: ctl[b + CTL.aheadParity] === 1 ? 1 : 0, ...(position ? { position } : {}) };
  }

  /**
   * Once the command that came with `offer` is done, having written copy `written`: runs the
   * offered slice's pass on that copy. A pass that fails is dropped: its command then computes
   * the slice itself and reports what fails there.
   */
  async compute(offer: Offer, written: 0 | 1): Promise<void> {
    const { shape } = this.mem;
    this.drop();
    if (offer.parity !== written) return;
    const started = performance.now();
    try {
      const buffer = this.fill(offer.token)!;
      const weights = this.mem.weights[written].subarray(0, shape.trainable + shape.stats);
      // The copy's version as the pass reads it: every writer of the copy adds 1 first (CTL.copyVersions).
      const read = heldToken(this.mem.ctl, written);
      const prepared = await this.session.trainAhead(weights, buffer.images.subarray(0, offer.count * IMAGE_BYTES), buffer.labels.subarray(0, offer.count), read, offer.position);
      if (prepared) this.pending = { token: offer.token, read, prepared, computeMs: performance.now() - started, endedAt: absoluteNow() };
    } catch {
      // Nothing is lost: the command computes the slice.
    }
  }

  /**
   * The pass computed for offer `token` (0: none wanted), if there is one and nothing has written
   * the copy it read since it read it (the owner's claim already checks that the copy is current
   * and the thread had no other command; this holds even for an offer kept over steps); any other
   * pass is dropped.
   */
  take(token: number): PassAhead | undefined {
    const p = this.pending;
    this.pending = undefined;
    if (p && token !== 0 && p.token === token && unwritten(this.mem.ctl, p.read)) return p;
    if (p) this.session.discardAhead(p.prepared);
    return undefined;
  }

  drop(): void {
    this.take(0);
  }
}
