/**
 * One thread's share of a step's optimizer work in shared memory: for a stripe of the parameters,
 * sum the slots' gradient sums, divide by the sample count, and apply Adam, reading the current
 * weights and moments and writing the next ones (StepMemory's ping-pong). Every operation is the
 * one coordinator/aggregate.ts and common/adam.ts do, element by element and in the same order
 * (slot order = task order), so any split into stripes gives the same bits as the whole.
 */
import { simdAdamKernel, type AdamKernel } from './adam-simd.ts';
import { simdReduceKernel, simdWideReduceKernel, type ReduceKernel } from './reduce-simd.ts';
import { CTL, F64, type StepMemory } from './step-memory.ts';
import { ShapeError } from './errors.ts';
import type { NativeKernels } from './kernels/native/addon.ts';

/** The native stripe kernel (common/kernels/native), installed with the native kernels. */
type NativeStripe = Pick<NativeKernels, 'stripeStep' | 'stripeStepFrom'>;
let nativeStripe: NativeStripe | undefined;

/** Installs (or, with undefined, removes) the native one-pass stripe; StripeWorkers made after it use it. */
export function setNativeStripe(kernels: NativeStripe | undefined): void {
  nativeStripe = kernels;
}

export interface StripeTask {
  from: number;
  to: number;
  /** Which copy holds the current weights and moments; the result goes to the other. */
  parity: 0 | 1;
  /** This stripe's thread also averages the BatchNorm statistics (after its Adam). */
  doStats: boolean;
}

/** stripeStepFrom's gOut for "write the gradient nowhere" (runFromBackend). */
const NO_SLOT = -1;

/** One trainable tensor of a step of one slot, where the compute backend holds it (runFromBackend). */
export interface BackendSegment {
  /** The tensor's first lane in the layout. */
  from: number;
  /** Its gradient sums (exactly its lanes), in the backend's memory. */
  gradient: Float32Array;
  /** Its weight tensor's storage, which also receives the next weights (absent: not written). */
  weights?: Float32Array;
}

/**
 * Which weight copy a backend holds: the step memory's control block (one per run: versions restart
 * with it), the copy, and its version when it was written (CTL.copyVersions).
 */
export interface WeightsToken {
  control: ArrayBufferLike;
  copy: 0 | 1;
  version: number;
}

/** Refuses views of one buffer that overlap (the backend's tensors handed to runFromBackend are read and written in one pass). */
function assertDisjoint(views: readonly Float32Array[]): void {
  for (let i = 0; i < views.length; i++) {
    const a = views[i];
    for (let j = 0; j < i; j++) {
      const b = views[j];
      if (a.buffer === b.buffer && a.length > 0 && b.length > 0 && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength) {
        throw new ShapeError(`Expected the backend's gradient and weight tensors to lie apart, but two overlap (bytes ${a.byteOffset} and ${b.byteOffset} of one buffer).`);
      }
    }
  }
}

/** Marks weight copy `copy` as being rewritten; returns its new version. */
export function bumpCopyVersion(ctl: Int32Array, copy: 0 | 1): number {
  return (Atomics.add(ctl, CTL.copyVersions + copy, 1) + 1) | 0;
}

/** Weight copy `copy` as it stands now: a backend that holds this token need not upload the copy. */
export function heldToken(ctl: Int32Array, copy: 0 | 1): WeightsToken {
  return { control: ctl.buffer, copy, version: Atomics.load(ctl, CTL.copyVersions + copy) };
}

/** Whether nothing has written `token`'s copy since the token was taken (its version is still the copy's). */
export function unwritten(ctl: Int32Array, token: WeightsToken): boolean {
  return Atomics.load(ctl, CTL.copyVersions + token.copy) === token.version;
}

/**
 * The kernels one thread uses on one StepMemory (the SIMD ones instantiated on its memory). With the
 * native kernels installed and SIMD Adam, one native pass replaces the SIMD reduction and Adam (and
 * the slot's Σ g², see run): the same bits, in about half the time.
 */
export class StripeWorker {
  private readonly kernel: AdamKernel | undefined;
  private readonly reduceKernel: ReduceKernel | undefined;
  private readonly native: { kernels: NativeStripe; bytes: Uint8Array } | undefined;

  constructor(private readonly mem: StepMemory, simd = true) {
    this.kernel = simd ? simdAdamKernel(mem.memory, true) : undefined;
    // Float64 slots with a reduction grain (common/reduce-grain.ts), float32 without.
    this.reduceKernel = !simd ? undefined : mem.gradientValueBytes === 8 ? simdWideReduceKernel(mem.memory, true) : simdReduceKernel(mem.memory, true);
    this.native = this.kernel && nativeStripe ? { kernels: nativeStripe, bytes: new Uint8Array(mem.memory.buffer) } : undefined;
  }

  get kind(): 'native' | 'simd' | 'scalar' {
    return this.native ? 'native' : this.kernel ? 'simd' : 'scalar';
  }

  /** Whether run() can also return slot 0's Σ g² in the same pass (the native kernel). */
  get fusesSquares(): boolean {
    return this.native !== undefined;
  }

  /**
   * Reduce, Adam, and the statistics when asked. With `squares` (a step of one slot, whose stripe is
   * the whole span) and fusesSquares, returns Σ g² over slot 0's gradient sums in [from, to), in
   * float64; otherwise undefined.
   */
  run(task: StripeTask, squares = false): number | undefined {
    bumpCopyVersion(this.mem.ctl, (1 - task.parity) as 0 | 1);
    let sq: number | undefined;
    if (this.native) sq = this.nativeStep(task, squares);
    else {
      this.reduce(task.from, task.to);
      this.adam(task);
    }
    if (task.doStats) this.averageStats(task.parity);
    return squares ? sq : undefined;
  }

  /** Whether runFromBackend can run here: the native kernel, float32 slots (no reduction grain) and no BatchNorm statistics. */
  get runsFromBackend(): boolean {
    return this.native !== undefined && this.mem.gradientValueBytes === 4 && this.mem.shape.stats === 0;
  }

  /**
   * A step of one slot whose gradient sums are still in the compute backend: `segments`, in layout
   * order, cover the trainable lanes [0, trainable) exactly. The same reduction and Adam over the
   * whole span as run() after the gradient was copied into slot 0, with the same bits, in one pass;
   * each segment's next weights also go into its `weights` where given. The gradient is not written
   * into slot 0 (1.6 MB a step for the mlp, ~10% of its step): nothing reads it there after a
   * step whose own command wrote the next copies (SharedStep.apply). Returns Σ g² of the gradient
   * (its summation order differs from run()'s: they agree to rounding) and the token of the copy
   * written.
   */
  runFromBackend(task: StripeTask, segments: readonly BackendSegment[]): { squares: number; token: WeightsToken } {
    const { ctl, f64, offsets: o, shape, adamSpan } = this.mem;
    if (!this.runsFromBackend) throw new ShapeError('A step from the backend needs the native stripe kernel, float32 slots and no BatchNorm statistics.');
    if (task.from !== 0 || task.to !== adamSpan || ctl[CTL.slotsUsed] !== 1) {
      throw new ShapeError(`Expected a step of one slot over the whole span [0, ${adamSpan}), but got [${task.from}, ${task.to}) over ${ctl[CTL.slotsUsed]} slots.`);
    }
    let at = 0;
    for (const s of segments) {
      if (s.from !== at || (s.weights && s.weights.length !== s.gradient.length)) throw new ShapeError(`Expected the backend's segments to cover the trainable lanes in order, but one starts at ${s.from} where ${at} was next, or its weights and gradient differ in length.`);
      at += s.gradient.length;
    }
    if (at !== shape.trainable) throw new ShapeError(`Expected the backend's segments to cover ${shape.trainable} trainable lanes, but they cover ${at}.`);
    assertDisjoint(segments.flatMap((s) => (s.weights ? [s.gradient, s.weights] : [s.gradient])));
    const next = (1 - task.parity) as 0 | 1;
    const token: WeightsToken = { control: ctl.buffer, copy: next, version: bumpCopyVersion(ctl, next) };
    const { kernels, bytes } = this.native!;
    const scalars = this.adamScalars();
    let squares = 0;
    for (const s of segments) {
      const b = s.from * 4;
      squares += kernels.stripeStepFrom(bytes, s.gradient.length, s.gradient, NO_SLOT, o.weights[task.parity] + b, o.m[task.parity] + b, o.v[task.parity] + b,
        o.weights[next] + b, o.m[next] + b, o.v[next] + b, f64[F64.inv], ...scalars, 1, s.weights ?? null);
    }
    // The padding lanes past the trainable ones: slot 0's, never written, are 0.
    this.nativeStep({ ...task, from: shape.trainable }, false);
    if (task.doStats) this.averageStats(task.parity);
    return { squares, token };
  }

  private nativeStep({ from, to, parity }: StripeTask, squares: boolean): number {
    if (to <= from) return 0;
    const { kernels, bytes } = this.native!;
    const { f64, offsets: o, gradientValueBytes } = this.mem;
    const next = 1 - parity;
    const b = from * 4;
    return kernels.stripeStep(bytes, to - from, o.gradients + from * gradientValueBytes, o.gradientStride, this.slotCounts().slots, gradientValueBytes === 8 ? 1 : 0,
      o.weights[parity] + b, o.m[parity] + b, o.v[parity] + b, o.weights[next] + b, o.m[next] + b, o.v[next] + b, f64[F64.inv], ...this.adamScalars(), squares ? 1 : 0);
  }

  /** The SIMD and native Adam kernels' scalars: b1, b2, 1−b1, 1−b2, lr/(1−b1^t), 1/sqrt(1−b2^t), ε. */
  private adamScalars(): [number, number, number, number, number, number, number] {
    const { f64 } = this.mem;
    const beta1 = f64[F64.beta1];
    const beta2 = f64[F64.beta2];
    return [beta1, beta2, 1 - beta1, 1 - beta2, f64[F64.stepSize], f64[F64.sqrtCorrection], f64[F64.epsilon]];
  }

  private slotCounts(): { slots: number; counts: number[] } {
    const { ctl } = this.mem;
    const slots = ctl[CTL.slotsUsed];
    const counts: number[] = [];
    for (let k = 0; k < slots; k++) counts.push(ctl[CTL.slotCounts + k]);
    return { slots, counts };
  }

  /** reduced[i] = (0 + g_0[i] + g_1[i] + ...) · (1/count), rounded to float32 at each step as aggregateResults does. */
  private reduce(from: number, to: number): void {
    const { reduced, gradients, shape } = this.mem;
    const inv = this.mem.f64[F64.inv];
    const end = Math.min(to, shape.trainable);
    const { slots } = this.slotCounts();
    if (this.reduceKernel) {
      const { offsets, gradientValueBytes } = this.mem;
      if (to > from) this.reduceKernel((to - from) * 4, offsets.gradients + from * gradientValueBytes, offsets.gradientStride, slots, offsets.reduced + from * 4, inv);
      return;
    }
    if (this.mem.gradientValueBytes === 8) {
      this.reduceWide(from, end, slots, inv);
      return;
    }
    if (slots === 1) {
      const g0 = gradients[0];
      for (let i = from; i < end; i++) reduced[i] = Math.fround(0 + g0[i]) * inv;
    } else if (slots === 2) {
      const [g0, g1] = gradients;
      for (let i = from; i < end; i++) reduced[i] = Math.fround(Math.fround(0 + g0[i]) + g1[i]) * inv;
    } else {
      for (let i = from; i < end; i++) {
        let s = 0;
        for (let k = 0; k < slots; k++) s = Math.fround(s + gradients[k][i]);
        reduced[i] = s * inv;
      }
    }
  }

  /**
   * With a reduction grain: reduced[i] = (0 + g_0[i] + g_1[i] + ...) · (1/count) in float64, rounded
   * to float32 once (common/reduce-grain.ts). Padding lanes stay 0 from the memory's creation.
   */
  private reduceWide(from: number, end: number, slots: number, inv: number): void {
    const { reduced, wideGradients } = this.mem;
    for (let i = from; i < end; i++) {
      let s = 0;
      for (let k = 0; k < slots; k++) s += wideGradients[k][i];
      reduced[i] = s * inv;
    }
  }

  private adam({ from, to, parity }: StripeTask): void {
    if (to <= from) return;
    const o = this.mem.offsets;
    const next = 1 - parity;
    const scalars = this.adamScalars();
    if (this.kernel) {
      const b = from * 4;
      this.kernel((to - from) * 4, o.weights[parity] + b, o.reduced + b, o.m[parity] + b, o.v[parity] + b, o.weights[next] + b, o.m[next] + b, o.v[next] + b, ...scalars);
      return;
    }
    // The scalar loop of Adam.apply, reading one copy and writing the other.
    const [beta1, beta2, a1, a2, stepSize, sqrtCorrection, epsilon] = scalars;
    const [w, wn, m, mn, v, vn, g] = [this.mem.weights[parity], this.mem.weights[next], this.mem.m[parity], this.mem.m[next], this.mem.v[parity], this.mem.v[next], this.mem.reduced];
    const end = Math.min(to, this.mem.shape.trainable);
    for (let i = from; i < end; i++) {
      const gi = g[i];
      const mi = (mn[i] = beta1 * m[i] + a1 * gi);
      const vi = (vn[i] = beta2 * v[i] + a2 * gi * gi);
      wn[i] = w[i] - (stepSize * mi) / (Math.sqrt(vi) * sqrtCorrection + epsilon);
    }
    // Padding lanes keep their values, as the SIMD kernel's zero gradients leave them.
    for (let i = end; i < to; i++) wn[i] = w[i];
  }

  /** stats = Σ s_k · count_k, then · (1/count): aggregateResults' expression, into the next weights. */
  private averageStats(parity: 0 | 1): void {
    const { shape, statSums } = this.mem;
    if (shape.stats === 0) return;
    const out = this.mem.weights[1 - parity];
    const inv = this.mem.f64[F64.inv];
    const { slots, counts } = this.slotCounts();
    for (let i = 0; i < shape.stats; i++) {
      let acc = 0;
      for (let k = 0; k < slots; k++) acc = Math.fround(acc + statSums[k][i] * counts[k]);
      out[shape.trainable + i] = acc * inv;
    }
  }
}
