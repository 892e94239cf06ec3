/**
 * The shared-memory step is screened like the message path: SharedStep with one SharedStepServer per
 * "thread", both served on this thread (the Atomics waits are asynchronous), driven by the Trainer.
 * The servers' sessions return made-up gradients, honest or poisoned on chosen calls, so the test
 * needs no model compute: what it exercises is the shared memory, the threads' Σg², the screen, the
 * scheduler's recomputation and the Adam guard.
 */
import { capturingLogger } from '../test/capture-logger.ts';
import { afterEach, describe, expect, it } from 'vitest';
import { syntheticData, tempDir, testConfig } from '../test/helpers.ts';
import { Adam } from '../common/adam.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import type { TrainResult } from '../worker/compute.ts';
import type { WorkerSession } from '../worker/session.ts';
import { ROUND_SPIN_MICROS, SPIN_MICROS, SPIN_MICROS_OVERSUBSCRIBED, SharedStepServer } from '../worker/shared-step-server.ts';
import { availableParallelism } from 'node:os';
import { loadCheckpoint } from './checkpoint.ts';
import { Membership, type WorkerHandle } from './membership.ts';
import { SharedStep } from './shared-step.ts';
import { Trainer, type RunOutcome } from './trainer.ts';
import { GradientScreen } from './result-check.ts';
import { permutation } from '../common/random.ts';
import { IMAGE_BYTES, newImageSet } from '../common/data/types.ts';
import { gatherImages } from '../common/data/split.ts';
import { AHEAD_SLICE, CTL, OP, ROUND_PHASE, publish } from '../common/step-memory.ts';
import { setNativeStripe, type BackendSegment } from '../common/step-stripe.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';
import { requireNativeOrSkip } from '../common/kernels/native/native-testing.ts';

/** The value to fill thread `thread`'s gradient with on its call `call` (1-based), or undefined for an honest one. */
type Poison = (thread: number, call: number) => number | undefined;

/**
 * A compute thread's session that computes nothing: its gradient is a fixed function of the weights.
 * `lend`: a one-slot step's gradient is handed where it lies (a backend that lends its tensors: the
 * stripe reads it there and writes no slot), not copied into the slot.
 */
function fakeSession(thread: number, poison: Poison, outliers: Uint8Array[] = [], lend = false): WorkerSession {
  let calls = 0;
  const trainWith = async (weights: Float32Array, images: Uint8Array, labels: Uint8Array): Promise<TrainResult> => {
    const count = labels.length;
    const trainable = weights.length;
    const bad = poison(thread, ++calls);
    // Honest: count × (0.01·w_i + 0.001·sin i), the same on any thread for the same weights, so a
    // recomputed slice gives the bits the first honest answer would have. A slice holding one of
    // the `outliers` images gets 100× that, just as honestly (a misclassified sample among tiny ones).
    const scale = holdsAny(images, outliers) ? 100 : 1;
    const gradientSum = new Float32Array(trainable);
    for (let i = 0; i < trainable; i++) gradientSum[i] = bad ?? scale * count * (0.01 * weights[i] + 0.001 * Math.sin(i));
    return { count, lossSum: count * 2.3, correct: 0, gradientSum, stats: new Float32Array(0) };
  };
  // The shared-memory step's call: the gradient sums go into the slot the target names.
  // A target with `use` (a one-slot step from the backend): with `lend`, use(the gradient as one
  // segment); else served as a backend that cannot lend its tensors: the slot, then use(undefined).
  type Target = { gradientSum: Float32Array; stats: Float32Array; use?: (segments: BackendSegment[] | undefined) => unknown };
  const fill = (into: Target | undefined, gradientSum: Float32Array) => {
    if (lend && into?.use) return void into.use([{ from: 0, gradient: gradientSum }]);
    into?.gradientSum.set(gradientSum);
    into?.use?.(undefined);
  };
  const trainWithInto = async (weights: Float32Array, images: Uint8Array, labels: Uint8Array, target: () => Target | undefined) => {
    const { gradientSum, stats: _stats, ...rest } = await trainWith(weights, images, labels);
    fill(target(), gradientSum);
    return rest;
  };
  // The step ahead (worker/step-ahead.ts): the gradient is taken from the weights when the pass runs, so
  // a pass used on weights other than its command's would change the run's weights.
  type Prepared = Awaited<ReturnType<typeof trainWith>>;
  const trainAhead = async (weights: Float32Array, images: Uint8Array, labels: Uint8Array) => trainWith(weights, images, labels);
  const finishAhead = async (prepared: Prepared, target: () => Target | undefined) => {
    const { gradientSum, stats: _stats, ...rest } = prepared;
    fill(target(), gradientSum);
    return rest;
  };
  return { trainWith, trainWithInto, trainAhead, finishAhead, discardAhead: () => {} } as unknown as WorkerSession;
}

function holdsAny(images: Uint8Array, wanted: Uint8Array[]): boolean {
  for (let j = 0; j < images.length; j += IMAGE_BYTES) {
    const image = images.subarray(j, j + IMAGE_BYTES);
    if (wanted.some((w) => Buffer.compare(Buffer.from(image), Buffer.from(w)) === 0)) return true;
  }
  return false;
}

/** What ThreadWorker (inprocess.ts) is, with evaluation answered honestly here. */
class SharedThread implements WorkerHandle {
  readonly keepOnRejection = true;
  readonly backend = 'fake';
  weightsVersion = -1;
  readonly closed: string[] = [];
  /** `failOnClose` false: closing it leaves the shared step's view of the thread alone (it keeps serving). */
  constructor(readonly id: string, private readonly index: number, private readonly shared: SharedStep, private readonly failOnClose = true) {}
  get name(): string {
    return this.id;
  }
  run(task: TaskMessage): Promise<ResultMessage> {
    const slot = this.shared.slotFor(task);
    if (slot !== undefined) return this.shared.train(this.index, slot, task);
    const count = task.labels.length;
    const predictions = new Uint8Array(count);
    const correct = task.labels.filter((l) => l === 0).length;
    return Promise.resolve({ type: 'result', taskId: task.taskId, count, lossSum: count * 2.3, correct, computeMs: 0, predictions });
  }
  close(_code: number, reason: string): void {
    this.closed.push(reason);
    if (this.failOnClose) this.shared.fail(this.index, reason);
  }
}

interface SharedRun {
  outcome?: RunOutcome;
  error?: unknown;
  weights: Float32Array;
  lines: Record<string, unknown>[];
  threads: SharedThread[];
  out: string;
}

interface Honest {
  /** Positions in the epoch's sample order whose slices are honest outliers (100× the gradient). */
  outlierPositions?: number[];
  /** False: no result screen at all (factor Infinity), the reference for what the outliers should give. */
  screen?: boolean;
}

interface Tweaks {
  /** Called once the trainer holds the step, before the run: set its knobs, watch its commands. */
  setup?: (shared: SharedStep, servers: SharedStepServer[]) => void;
  /** Wraps thread `thread`'s (1-based) session. */
  session?: (thread: number, session: WorkerSession) => WorkerSession;
  /** False: a closed thread is not marked failed in the shared step (only its own abort can release a barrier). */
  failOnClose?: boolean;
  /** The training set lies in shared memory and the threads are given it (SharedStep.shareTrainSet): slices ahead go by index. */
  sharedTrainSet?: boolean;
  /** The sessions lend their gradients (fakeSession's `lend`). */
  lend?: boolean;
  /** False: no runs of steps driven by the threads (step-run.ts), even with a shared training set. */
  runs?: boolean;
}

/** Trains mlp for one epoch (128 images, batch 32: 4 steps) over `k` shared-memory threads. */
async function trainShared(k: number, poison: Poison = () => undefined, honest: Honest = {}, tweaks: Tweaks = {}): Promise<SharedRun> {
  const out = await tempDir('shared-');
  const config = testConfig({ model: 'mlp', workers: k, batchSize: 32, out, learningRate: 0.01 });
  const { log, lines } = capturingLogger();
  const membership = new Membership(log);
  const data = await syntheticData(128, 20);
  if (tweaks.sharedTrainSet) data.train = gatherImages(data.train, Uint32Array.from({ length: data.train.count }, (_, i) => i), true);
  const trainer = new Trainer(config, data, membership, log);
  if (tweaks.runs === false) {
    // A private field: fail loudly if it is renamed, rather than leave the runs on unnoticed.
    expect(Object.hasOwn(trainer, 'runsFor')).toBe(true);
    (trainer as unknown as { runsFor: boolean }).runsFor = false;
  }
  if (honest.screen === false) (trainer as unknown as { screen: GradientScreen }).screen = new GradientScreen(trainer.layout, { factor: Infinity });
  const order = permutation(data.train.count, config.seed + 1);
  const outliers = (honest.outlierPositions ?? []).map((p) => data.train.images.slice(order[p] * IMAGE_BYTES, (order[p] + 1) * IMAGE_BYTES));
  const shared = new SharedStep({ trainable: trainer.layout.trainableSize, stats: 0, slots: k, slotSamples: 32, threads: k }, new Adam(1).kind === 'simd');
  if (tweaks.sharedTrainSet) expect(shared.shareTrainSet(data.train)).toBe(true);
  const threads: SharedThread[] = [];
  const servers: SharedStepServer[] = [];
  for (let i = 0; i < k; i++) {
    const session = fakeSession(i + 1, poison, outliers, tweaks.lend);
    servers.push(new SharedStepServer(shared.attachMessage(i), tweaks.session?.(i + 1, session) ?? session, (job) => job()));
    void servers[i].serve();
    threads.push(new SharedThread(`thread-${i + 1}`, i, shared, tweaks.failOnClose ?? true));
    membership.join(threads[i]);
  }
  membership.canGrow = false;
  trainer.useSharedStep(shared);
  tweaks.setup?.(shared, servers);
  const run: SharedRun = { weights: new Float32Array(0), lines, threads, out };
  try {
    run.outcome = await trainer.run();
  } catch (err) {
    run.error = err;
  }
  run.weights = trainer.currentWeights.slice();
  return run;
}

const allFinite = (a: Float32Array) => a.every(Number.isFinite);
const rejections = (r: SharedRun) => r.lines.filter((l) => l.event === 'result_rejected');

describe('the shared-memory step checks what the threads produce before it counts', { timeout: 60_000 }, () => {
  it('rejects a thread\'s 1e21 gradients (with history), recomputes the slot, and ends with the honest run\'s weights', async () => {
    const honest = await trainShared(2);
    const poisoned = await trainShared(2, (thread, call) => (thread === 2 && call === 2 ? 1e21 : undefined));
    expect(poisoned.outcome?.status).toBe('finished');
    expect(rejections(honest)).toEqual([]);
    const [line] = rejections(poisoned);
    expect(rejections(poisoned)).toHaveLength(1);
    expect(line).toMatchObject({ workerId: 'thread-2' });
    expect(line.reason).toMatch(/gradient norm .* exceeds the bound/);
    expect(line.norm as number).toBeGreaterThan(1e18);
    expect(line.bound as number).toBeLessThan(1e3);
    expect(allFinite(poisoned.weights)).toBe(true);
    // The recomputed slot is the honest one, so nothing of the poison is left in the weights.
    expect(Buffer.compare(Buffer.from(poisoned.weights.buffer), Buffer.from(honest.weights.buffer))).toBe(0);
    // A thread is recomputed, not evicted.
    expect(poisoned.threads.flatMap((t) => t.closed)).toEqual([]);
  });

  it('rejects a NaN gradient on the first step (no history: the step is reviewed together)', async () => {
    const honest = await trainShared(2);
    const poisoned = await trainShared(2, (thread, call) => (thread === 1 && call === 1 ? NaN : undefined));
    expect(poisoned.outcome?.status).toBe('finished');
    const [line] = rejections(poisoned);
    expect(line).toMatchObject({ workerId: 'thread-1', norm: 'NaN' });
    expect(line.reason).toMatch(/non-finite/);
    expect(Buffer.compare(Buffer.from(poisoned.weights.buffer), Buffer.from(honest.weights.buffer))).toBe(0);
  });

  it('fails cleanly with DTRAIN_ERR_RESULT_REJECTED when the one thread\'s recomputation is poisoned again, weights finite', async () => {
    const run = await trainShared(1, (_thread, call) => (call >= 2 ? Infinity : undefined));
    expect(run.outcome).toBeUndefined();
    expect((run.error as { code?: string }).code).toBe('DTRAIN_ERR_RESULT_REJECTED');
    expect(rejections(run)).toHaveLength(2);
    expect(allFinite(run.weights)).toBe(true);
  });

  it('refuses a step whose gradient would overflow Adam\'s g² (1e20 on a lone first slice passes the screen), and Adam\'s state stays finite', async () => {
    const run = await trainShared(1, (_thread, call) => (call === 1 ? 1e20 : undefined));
    expect(run.outcome?.status).toBe('finished');
    expect(run.lines.filter((l) => l.event === 'step_refused')).toHaveLength(1);
    expect(allFinite(run.weights)).toBe(true);
    const ckpt = await loadCheckpoint(run.out, 'mlp');
    expect(ckpt).toBeDefined();
    expect(allFinite(ckpt!.adam.m) && allFinite(ckpt!.adam.v)).toBe(true);
  });

  // An honest slice can be an outlier: a misclassified sample among well-classified ones keeps a
  // large gradient while the median collapses. Slices holding the samples at positions 5 (step 1,
  // reviewed: no history yet) and 70 (step 3, checked against the history) are 100× the others,
  // deterministically: a second thread (or, alone, the same thread) reproduces them.
  for (const k of [1, 2]) {
    it(`keeps training through honest outlier slices on ${k} thread(s) and ends with the weights of a run without the screen`, async () => {
      const reference = await trainShared(k, undefined, { outlierPositions: k === 1 ? [70] : [5, 70], screen: false });
      const run = await trainShared(k, undefined, { outlierPositions: k === 1 ? [70] : [5, 70] });
      if (run.error) console.log(run.lines.map((l) => JSON.stringify(l)).join("\n"));
      expect(run.error).toBeUndefined();
      expect(run.outcome?.status).toBe('finished');
      expect(rejections(run)).toEqual([]);
      const confirmed = run.lines.filter((l) => l.event === 'outlier_confirmed');
      // Step 3 on one thread is one slot of 32, checked against the history; on two, one slot of 16.
      expect(confirmed).toHaveLength(k === 1 ? 1 : 2);
      if (k === 2) expect(confirmed.every((l) => l.workerId !== l.firstWorkerId)).toBe(true);
      expect(run.threads.flatMap((t) => t.closed)).toEqual([]);
      expect(Buffer.compare(Buffer.from(run.weights.buffer), Buffer.from(reference.weights.buffer))).toBe(0);
    });
  }
});

describe('how long the threads spin before they sleep (attachMessage)', () => {
  const attach = (threads: number) => new SharedStep({ trainable: 8, stats: 0, slots: threads, slotSamples: 1, threads }, false).attachMessage(0);
  const cores = availableParallelism();

  it('spins long at a fused round\'s waits wherever every thread has a core, and between commands only where the owner has one too', () => {
    expect(attach(cores)).toMatchObject({ roundSpinMicros: ROUND_SPIN_MICROS, spinMicros: SPIN_MICROS_OVERSUBSCRIBED });
    if (cores > 1) expect(attach(cores - 1)).toMatchObject({ roundSpinMicros: ROUND_SPIN_MICROS, spinMicros: SPIN_MICROS });
  });

  it('spins briefly everywhere with more threads than cores, where a spinning thread would hold a partner\'s core', () => {
    expect(attach(cores + 1)).toMatchObject({ roundSpinMicros: SPIN_MICROS_OVERSUBSCRIBED, spinMicros: SPIN_MICROS_OVERSUBSCRIBED });
    expect(ROUND_SPIN_MICROS).toBeGreaterThan(SPIN_MICROS_OVERSUBSCRIBED);
  });
});

describe('a command asked for while its thread still runs an abandoned one', () => {
  it('waits for the thread, drops the command a newer one replaced (BN_SYNC_ABORTED), and runs the newest', { timeout: 30_000 }, async () => {
    // One thread served on this one; its session blocks until the test releases each call.
    const shared = new SharedStep({ trainable: 8, stats: 0, slots: 1, slotSamples: 4, threads: 1 }, new Adam(1).kind === 'simd');
    const calls: { taskId: number; release: () => void }[] = [];
    const session = {
      trainWithInto: (_w: Float32Array, _images: Uint8Array, labels: Uint8Array, target: () => { gradientSum: Float32Array | Float64Array } | undefined, task?: { taskId: number }) =>
        new Promise((resolve) => {
          calls.push({ taskId: task!.taskId, release: () => resolve({ count: labels.length, lossSum: task!.taskId, correct: 0 }) });
          target()?.gradientSum.fill(task!.taskId);
        }),
    } as unknown as WorkerSession;
    void new SharedStepServer(shared.attachMessage(0), session, (job) => job()).serve();
    const task = (taskId: number): TaskMessage => ({ type: 'task', taskId, kind: 'train', weightsVersion: 1, images: new Uint8Array(4 * IMAGE_BYTES), labels: new Uint8Array(4) });
    const until = async (what: () => boolean) => {
      for (let i = 0; i < 2000 && !what(); i++) await new Promise((r) => setTimeout(r, 2));
      expect(what()).toBe(true);
    };

    // Step 1's command reaches the thread, which is still computing when the step is abandoned.
    const first = shared.train(0, 0, task(1));
    await until(() => calls.length === 1);
    // Two recomputations are asked for while it runs: the second replaces the first.
    const replaced = shared.train(0, 0, task(2));
    const newest = shared.train(0, 0, task(3));
    const replacedOutcome = replaced.then(() => 'resolved', (e: { code?: string }) => e.code);
    await new Promise((r) => setTimeout(r, 50));
    // Nothing was sent to the busy thread meanwhile: its fields are still those of task 1.
    expect(calls.map((c) => c.taskId)).toEqual([1]);

    calls[0].release();
    expect((await first).taskId).toBe(1);
    expect(await replacedOutcome).toBe('DTRAIN_ERR_BN_SYNC_ABORTED');
    await until(() => calls.length === 2);
    expect(calls[1].taskId).toBe(3);
    calls[1].release();
    const result = await newest;
    expect(result.taskId).toBe(3);
    expect(result.lossSum).toBe(3);
    expect(calls.map((c) => c.taskId)).toEqual([1, 3]);
  });
});

// With the native kernels, a step of one slot takes its Σ g² inside the stripe's one pass (after
// Adam has written the next copies, which only count if the screen then accepts the slot).
const nativeLoad = loadNativeKernels();
describe.runIf(requireNativeOrSkip(nativeLoad))('the shared-memory step with the native one-pass stripe', { timeout: 60_000 }, () => {
  afterEach(() => setNativeStripe(undefined));
  let calls = 0;
  /** Installs the native stripe, counting its calls. */
  const native = () => {
    if (!nativeLoad.loaded) throw new Error(nativeLoad.reason);
    const { stripeStep, stripeStepFrom } = nativeLoad.kernels;
    setNativeStripe({ stripeStep: (...args: Parameters<typeof stripeStep>) => (calls++, stripeStep(...args)), stripeStepFrom });
  };

  it('ends one thread\'s run with the SIMD stripes\' weights, bit for bit, and calls the native kernel every step', async () => {
    const simd = await trainShared(1);
    native();
    const before = calls;
    const run = await trainShared(1);
    expect(run.outcome?.status).toBe('finished');
    expect(Buffer.compare(Buffer.from(run.weights.buffer), Buffer.from(simd.weights.buffer))).toBe(0);
    const steps = run.lines.filter((l) => l.event === 'step').length;
    expect(steps).toBeGreaterThan(0);
    expect(calls - before).toBe(steps);
  });

  it('rejects a non-finite slot from the fused Σ g², leaves the weights finite, and fails cleanly when the recomputation is poisoned too', async () => {
    native();
    const run = await trainShared(1, (_thread, call) => (call >= 2 ? Infinity : undefined));
    expect((run.error as { code?: string }).code).toBe('DTRAIN_ERR_RESULT_REJECTED');
    const lines = rejections(run);
    expect(lines).toHaveLength(2);
    expect(lines[0].reason).toMatch(/non-finite/);
    expect(allFinite(run.weights)).toBe(true);
  });

  it('confirms an honest outlier slice on one thread, judged by the fused Σ g², and ends with the weights of a run without the screen', async () => {
    native();
    const reference = await trainShared(1, undefined, { outlierPositions: [70], screen: false });
    const run = await trainShared(1, undefined, { outlierPositions: [70] });
    expect(run.error).toBeUndefined();
    expect(run.lines.filter((l) => l.event === 'outlier_confirmed')).toHaveLength(1);
    expect(Buffer.compare(Buffer.from(run.weights.buffer), Buffer.from(reference.weights.buffer))).toBe(0);
  });

  it('steps from the backend (the slot left alone) end bit for bit where steps through the slot do, an honest outlier confirmed on the way', async () => {
    native();
    const reference = await trainShared(1, undefined, { outlierPositions: [70], screen: false });
    let shared: SharedStep | undefined;
    const run = await trainShared(1, undefined, { outlierPositions: [70] }, { lend: true, setup: (s) => (shared = s) });
    expect(run.error).toBeUndefined();
    expect(run.lines.filter((l) => l.event === 'outlier_confirmed')).toHaveLength(1);
    // 4 steps and the outlier's recomputation, every one from the backend.
    expect(shared!.fromBackendSteps).toBe(5);
    expect(Buffer.compare(Buffer.from(run.weights.buffer), Buffer.from(reference.weights.buffer))).toBe(0);
  });

  describe('a step whose chosen result is not its last command\'s', () => {
    const trainable = 40;
    /** One thread whose session lends its gradient (a function of the weights) and fails its calls in `failing`. */
    async function oneStep(failing: number[] = []) {
      native();
      const shared = new SharedStep({ trainable, stats: 0, slots: 1, slotSamples: 4, threads: 1 }, new Adam(1).kind === 'simd');
      let calls = 0;
      const session = {
        trainWithInto: async (w: Float32Array, _images: Uint8Array, labels: Uint8Array, target: () => { use?: (s: BackendSegment[]) => unknown } | undefined) => {
          if (failing.includes(++calls)) throw new Error(`call ${calls} fails`);
          target()!.use!([{ from: 0, gradient: Float32Array.from(w, (x, i) => 0.5 * x + Math.cos(i)) }]);
          return { count: labels.length, lossSum: 1, correct: 0 };
        },
      } as unknown as WorkerSession;
      void new SharedStepServer(shared.attachMessage(0), session, (job) => job()).serve();
      const start = Float32Array.from({ length: trainable }, (_, i) => Math.sin(i));
      shared.load(start, new Adam(trainable));
      const spec = shared.gather(0, newImageSet(8), Uint32Array.of(0, 1, 2, 3));
      const task: TaskMessage = { type: 'task', taskId: 1, kind: 'train', weightsVersion: 1, images: spec.images, labels: spec.labels };
      const stored = () => {
        const w = new Float32Array(trainable);
        shared.store(w);
        return w;
      };
      return { shared, task, start, stored };
    }

    it('uses the next copies its last command wrote from the backend: the same weights as applying that command\'s result', async () => {
      const a = await oneStep();
      await a.shared.apply([await a.shared.train(0, 0, a.task)], 10_000);
      const b = await oneStep();
      const first = await b.shared.train(0, 0, b.task);
      // The scheduler keeps an earlier opinion of the same slice: not the object the command returned.
      await b.shared.apply([{ ...first }], 10_000);
      expect(b.shared.fromBackendSteps).toBe(1);
      expect(sameBits(b.stored(), a.stored())).toBe(true);
      expect(sameBits(a.stored(), a.start)).toBe(false);
    });

    it('refuses to reduce a slot its last command did not fill (that command failed), leaving the weights as they were', async () => {
      const c = await oneStep([2]);
      const first = await c.shared.train(0, 0, c.task);
      await expect(c.shared.train(0, 0, c.task)).rejects.toThrow(/call 2 fails/);
      await expect(c.shared.apply([first], 10_000)).rejects.toMatchObject({ code: 'DTRAIN_ERR_SHARED_STEP', message: expect.stringMatching(/Slot 0's gradient is not in shared memory/) });
      expect(sameBits(c.stored(), c.start)).toBe(true);
    });
  });
});

/**
 * The fake threads and the owner share one event loop here: a thread waits for its partners'
 * stripes before its pass ahead for as long as they take, so a pause of the loop skips no pass.
 */
function patientAhead(servers: SharedStepServer[]): void {
  for (const s of servers) s.aheadWaitMs = 10_000;
}

/** Records the op of every command `shared` sends, by thread. */
function watchCommands(shared: SharedStep): number[][] {
  const ops: number[][] = [];
  const step = shared as unknown as { command(i: number): Promise<void> };
  const command = step.command.bind(step);
  step.command = (i: number) => {
    (ops[i] ??= []).push(shared.mem.ctl[shared.mem.threadBase(i) + CTL.op]);
    return command(i);
  };
  return ops;
}

const sameBits = (a: Float32Array, b: Float32Array) => Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

/**
 * A session wrapper: thread `thread`'s call `call` (1-based) runs `before` first (a delay, or a
 * throw). It computes no pass ahead (trainAhead: none), so every slice is computed in its command.
 */
function onCall(thread: number, call: number, before: () => unknown) {
  return (t: number, session: WorkerSession): WorkerSession => {
    let calls = 0;
    const trainWithInto = session.trainWithInto.bind(session);
    return { ...session, trainAhead: async () => undefined, trainWithInto: async (...args: Parameters<WorkerSession['trainWithInto']>) => {
      if (t === thread && ++calls === call) await before();
      return trainWithInto(...args);
    } } as unknown as WorkerSession;
  };
}

describe('a step of several slots in a fused round (train, barrier, stripe: one command per thread)', { timeout: 60_000 }, () => {
  for (const k of [2, 3]) {
    it(`runs ${k} threads' 4 steps as one trainApply command each, with no reduce command, and ends with the two-phase step's weights bit for bit`, async () => {
      let fusedOps: number[][] = [];
      let phasedOps: number[][] = [];
      const steps: SharedStep[] = [];
      const fused = await trainShared(k, undefined, {}, { setup: (shared, servers) => ((fusedOps = watchCommands(shared)), steps.push(shared), patientAhead(servers)) });
      const phased = await trainShared(k, undefined, {}, {
        setup: (shared) => {
          shared.fuseRounds = false;
          phasedOps = watchCommands(shared);
          steps.push(shared);
        },
      });
      // Every thread ran steps 2-4's slices ahead, once the round's stripes were written (step-ahead.ts);
      // the fake sessions take the gradient from the weights the pass ran on, so a pass on any other
      // copy than its command's would change the weights below. The two-phase step offers none.
      expect(steps[0].ahead.hits).toBe(3 * k);
      expect(steps[1].ahead.hits).toBe(0);
      expect(fused.outcome?.status).toBe('finished');
      expect(phased.outcome?.status).toBe('finished');
      expect(fusedOps).toEqual(Array.from({ length: k }, () => [OP.trainApply, OP.trainApply, OP.trainApply, OP.trainApply]));
      // The knob reaches the two-phase step: a train and a reduce command per thread and step.
      expect(phasedOps).toEqual(Array.from({ length: k }, () => [OP.train, OP.reduce, OP.train, OP.reduce, OP.train, OP.reduce, OP.train, OP.reduce]));
      expect(sameBits(fused.weights, phased.weights)).toBe(true);
    });
  }

  it('leaves phase 2 to reduce commands when a thread\'s wait at the barrier runs out (its partner is slow), with the same weights', async () => {
    const straight = await trainShared(2);
    let ops: number[][] = [];
    // Thread 2's third slice takes 3 s; thread 1 waits at most 1 s from its command, then leaves.
    const slow = onCall(2, 3, () => new Promise((r) => setTimeout(r, 3_000)));
    const run = await trainShared(2, undefined, {}, {
      session: slow,
      setup: (shared) => {
        shared.roundWaitMs = 1_000;
        ops = watchCommands(shared);
      },
    });
    expect(run.outcome?.status).toBe('finished');
    // Step 3 alone needed its reduce commands.
    expect(ops).toEqual([[OP.trainApply, OP.trainApply, OP.trainApply, OP.reduce, OP.trainApply], [OP.trainApply, OP.trainApply, OP.trainApply, OP.reduce, OP.trainApply]]);
    expect(sameBits(run.weights, straight.weights)).toBe(true);
  });

  it('releases the barrier at once when a thread fails its slice, recomputes the slice elsewhere, and redoes phase 2 from the untouched copies', async () => {
    const straight = await trainShared(3);
    let ops: number[][] = [];
    // Thread 2's last slice throws; the others wait at the barrier for a minute unless the failure releases them.
    const failing = onCall(2, 4, () => {
      throw new Error('injected failure in thread 2');
    });
    const started = performance.now();
    const run = await trainShared(3, undefined, {}, {
      session: failing,
      setup: (shared) => {
        shared.roundWaitMs = 60_000;
        ops = watchCommands(shared);
      },
    });
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(run.outcome?.status).toBe('finished');
    expect(run.threads[1].closed).toHaveLength(1);
    // Step 4: thread 2's failed round command; its slice again on a surviving thread (train only); phase 2 by the two.
    expect(ops[1]).toEqual([OP.trainApply, OP.trainApply, OP.trainApply, OP.trainApply]);
    expect(ops[0].slice(0, 4)).toEqual([OP.trainApply, OP.trainApply, OP.trainApply, OP.trainApply]);
    expect([...ops[0].slice(4), ...ops[2].slice(4)].sort()).toEqual([OP.train, OP.reduce, OP.reduce].sort());
    // The slices and their sums are the same, so the weights are too.
    expect(sameBits(run.weights, straight.weights)).toBe(true);
  });

  it('releases the barrier from the failing thread itself when the owner does not mark it failed, and ends with the same weights', async () => {
    const straight = await trainShared(3);
    const failing = onCall(2, 4, () => {
      throw new Error('injected failure in thread 2');
    });
    const started = performance.now();
    // A minute's wait at the barrier: only thread 2's own abort lets the others go sooner.
    const run = await trainShared(3, undefined, {}, { session: failing, failOnClose: false, setup: (shared) => (shared.roundWaitMs = 60_000) });
    expect(performance.now() - started).toBeLessThan(30_000);
    expect(run.outcome?.status).toBe('finished');
    expect(sameBits(run.weights, straight.weights)).toBe(true);
  });

  it('evicts, by name, a thread of an abandoned round that never finishes, and the next step runs on the others', async () => {
    const shared = new SharedStep({ trainable: 64, stats: 0, slots: 2, slotSamples: 4, threads: 2 }, new Adam(1).kind === 'simd');
    shared.load(new Float32Array(64).fill(0.5), new Adam(1));
    shared.roundWaitMs = 300;
    const failed: number[] = [];
    shared.onThreadFailed = (index) => failed.push(index);
    // Thread 1 hangs in its slice of the first step (a stuck backend); thread 0 answers at once.
    const hung = { trainWithInto: () => new Promise(() => {}) } as unknown as WorkerSession;
    [fakeSession(0, () => undefined), hung].forEach((session, i) => void new SharedStepServer(shared.attachMessage(i), session, (job) => job()).serve());
    const set = { images: new Uint8Array(8 * IMAGE_BYTES), labels: new Uint8Array(8), count: 8 };
    const task = (taskId: number, spec: { images: Uint8Array; labels: Uint8Array }): TaskMessage => ({ type: 'task', taskId, weightsVersion: 1, ...spec }) as TaskMessage;
    const a = shared.train(0, 0, task(1, shared.gather(0, set, Uint32Array.of(0, 1, 2, 3))));
    const b = shared.train(1, 1, task(2, shared.gather(1, set, Uint32Array.of(4, 5, 6, 7)))).catch((e: Error) => e);
    expect((await a).taskId).toBe(1);
    // The step is abandoned (as after a timeout): the next one's first command waits for the round's
    // threads; thread 0 has finished, thread 1 never does and is failed by name, not thread 0.
    const started = Date.now();
    const next = await shared.train(0, 0, task(3, shared.gather(0, set, Uint32Array.of(0, 1, 2, 3))));
    expect(next.taskId).toBe(3);
    expect(failed).toEqual([1]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(((await b) as Error).message).toMatch(/thread 2's command of an abandoned step took longer than 300 ms/);
  });

  it('discards a round whose stripe failed after the barrier: the others\' next copies are rewritten by phase 2, with the same weights', async () => {
    const straight = await trainShared(3);
    let ops: number[][] = [];
    const run = await trainShared(3, undefined, {}, {
      setup: (shared, servers) => {
        ops = watchCommands(shared);
        // Thread 3's stripe in step 2 throws after it met the others at the barrier (they did theirs).
        const stripe = (servers[2] as unknown as { stripe: { run: (...a: unknown[]) => unknown } }).stripe;
        const runStripe = stripe.run.bind(stripe);
        let calls = 0;
        stripe.run = (...a: unknown[]) => {
          if (++calls === 2) throw new Error('injected failure in thread 3\'s stripe');
          return runStripe(...a);
        };
      },
    });
    expect(run.outcome?.status).toBe('finished');
    expect(run.threads[2].closed).toHaveLength(1);
    expect(ops[2]).toEqual([OP.trainApply, OP.trainApply]);
    expect(ops[0].filter((op) => op === OP.reduce)).toHaveLength(1);
    expect(run.lines.filter((l) => l.event === 'step')).toHaveLength(4);
    // Steps 3 and 4 have two slices instead of three: the weights differ from the straight run's
    // only by float32 rounding, and stay finite.
    expect(allFinite(run.weights)).toBe(true);
    let worst = 0;
    for (let i = 0; i < run.weights.length; i++) worst = Math.max(worst, Math.abs(run.weights[i] - straight.weights[i]));
    expect(worst).toBeLessThan(1e-5);
  });
});

describe('a thread evicted while it may still write its stripe of a fused round', { timeout: 30_000 }, () => {
  const set = { images: new Uint8Array(8 * IMAGE_BYTES), labels: new Uint8Array(8), count: 8 };
  const task = (taskId: number, spec: { images: Uint8Array; labels: Uint8Array }): TaskMessage => ({ type: 'task', taskId, weightsVersion: 1, ...spec }) as TaskMessage;
  const simd = new Adam(1).kind === 'simd';

  /** A step of 2 slots; thread 2 (played by the test, no server) takes its round command, says it may write, and is failed. Slot 2 is recomputed on thread 1. */
  async function evictedInStripe(setup: (shared: SharedStep) => void = () => {}) {
    const shared = new SharedStep({ trainable: 64, stats: 0, slots: 2, slotSamples: 4, threads: 2 }, simd);
    shared.load(new Float32Array(64).fill(0.5), new Adam(64));
    shared.roundWaitMs = 400;
    setup(shared);
    void new SharedStepServer(shared.attachMessage(0), fakeSession(1, () => undefined), (job) => job()).serve();
    const first = shared.train(0, 0, task(1, shared.gather(0, set, Uint32Array.of(0, 1, 2, 3))));
    const slot2 = shared.gather(1, set, Uint32Array.of(4, 5, 6, 7));
    const lost = shared.train(1, 1, task(2, slot2)).catch((e: Error) => e);
    // Both round commands go out; thread 1 trains and waits at the barrier.
    await new Promise((r) => setTimeout(r, 50));
    expect(shared.mem.ctl[shared.mem.threadBase(1) + CTL.op]).toBe(OP.trainApply);
    Atomics.store(shared.mem.ctl, shared.mem.threadBase(1) + CTL.roundPhase, ROUND_PHASE.mayWrite);
    shared.fail(1, 'step timeout');
    expect(await lost).toBeInstanceOf(Error);
    const results = [await first, await shared.train(0, 1, task(3, slot2))];
    return { shared, results };
  }

  /** The weights after the same step on two honest threads with no round. */
  async function reference(): Promise<Float32Array> {
    const shared = new SharedStep({ trainable: 64, stats: 0, slots: 2, slotSamples: 4, threads: 2 }, simd);
    shared.load(new Float32Array(64).fill(0.5), new Adam(64));
    shared.fuseRounds = false;
    [1, 2].forEach((t, i) => void new SharedStepServer(shared.attachMessage(i), fakeSession(t, () => undefined), (job) => job()).serve());
    const results = await Promise.all([0, 1].map((slot) => shared.train(slot, slot, task(slot + 1, shared.gather(slot, set, Uint32Array.from({ length: 4 }, (_, j) => slot * 4 + j))))));
    await shared.apply(results, 5_000);
    const w = new Float32Array(64);
    shared.store(w);
    return w;
  }

  it('runs phase 2 only after the thread has left its stripe, so a late stripe write is overwritten, not kept', async () => {
    const { shared, results } = await evictedInStripe();
    let applied = false;
    const applying = shared.apply(results, 5_000).then(() => (applied = true));
    await new Promise((r) => setTimeout(r, 150));
    expect(applied).toBe(false);
    // The evicted thread's stripe lands late, then it leaves the round.
    shared.mem.weights[1].fill(1e30, 0, 64);
    publish(shared.mem.ctl, shared.mem.threadBase(1) + CTL.roundPhase, ROUND_PHASE.clear);
    await applying;
    const w = new Float32Array(64);
    shared.store(w);
    expect(sameBits(w, await reference())).toBe(true);
  });

  it('runs phase 2 once the thread has exited, even though it never said it left', async () => {
    let exit = () => {};
    const gone = new Promise<void>((r) => (exit = r));
    const { shared, results } = await evictedInStripe((s) => (s.threadGone = (i) => (i === 1 ? gone : new Promise(() => {}))));
    let applied = false;
    const applying = shared.apply(results, 5_000).then(() => (applied = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(applied).toBe(false);
    exit();
    await applying;
    const w = new Float32Array(64);
    shared.store(w);
    expect(sameBits(w, await reference())).toBe(true);
  });

  it('stops the run with DTRAIN_ERR_SHARED_STEP when the thread neither leaves nor exits within the round\'s wait, and refuses later commands', async () => {
    const { shared, results } = await evictedInStripe();
    const started = Date.now();
    const err = (await shared.apply(results, 5_000).catch((e: unknown) => e)) as { code?: string; message: string };
    expect(Date.now() - started).toBeGreaterThanOrEqual(350);
    expect(err.code).toBe('DTRAIN_ERR_SHARED_STEP');
    expect(err.message).toMatch(/Thread 2 was evicted during a fused round and, 400 ms later, may still be writing its stripe/);
    await expect(shared.train(0, 0, task(4, shared.gather(0, set, Uint32Array.of(0, 1, 2, 3))))).rejects.toThrow(/may still be writing its stripe/);
  });
});

describe('the step ahead: a thread computes its next slice before its command (step-ahead.ts)', { timeout: 60_000 }, () => {
  const withoutAhead: Tweaks = {
    setup: (shared) => {
      shared.ahead.setNext = () => {};
    },
  };
  const stepsAhead = (r: SharedRun) => r.lines.filter((l) => l.event === 'epoch').map((l) => l.steps_ahead);
  const same = (a: SharedRun, b: SharedRun) => Buffer.compare(Buffer.from(a.weights.buffer), Buffer.from(b.weights.buffer)) === 0;

  it('runs every step after the first from a pass computed ahead, and ends with the weights of a run without, bit for bit', async () => {
    const off = await trainShared(1, undefined, {}, withoutAhead);
    const on = await trainShared(1);
    expect(on.outcome?.status).toBe('finished');
    expect(stepsAhead(off)).toEqual([0]);
    expect(stepsAhead(on)).toEqual([3]);
    expect(same(on, off)).toBe(true);
  });

  for (const k of [1, 2]) {
    it(`drops the pass computed on the next copies of a step the Adam guard refused (${k} thread${k > 1 ? 's, a fused round' : ''})`, async () => {
      // Call 1 is step 1's own compute: 1e20 passes the screen (no history) and the guard refuses the step.
      const poison: Poison = (_thread, call) => (call === 1 ? 1e20 : undefined);
      const off = await trainShared(k, poison, {}, withoutAhead);
      const on = await trainShared(k, poison, {}, { setup: (_shared, servers) => patientAhead(servers) });
      expect(on.lines.filter((l) => l.event === 'step_refused')).toHaveLength(1);
      // Step 2's passes ran on the refused step's copies: their commands do not name them; steps 3 and 4 run ahead.
      expect(stepsAhead(on)).toEqual([2 * k]);
      expect(same(on, off)).toBe(true);
    });
  }

  it('drops the passes of a fused round whose slot the screen rejected, and recomputes the slot, with the honest weights', async () => {
    const honest = await trainShared(2, undefined, {}, withoutAhead);
    // Thread 1's call 2 is its pass for step 2, which its command uses: the screen rejects the slot, a
    // plain train command recomputes it (the round breaks, nothing is offered with it), phase 2 runs
    // as reduce commands, and step 3's commands name no pass; step 4's do.
    let shared: SharedStep | undefined;
    const run = await trainShared(2, (thread, call) => (thread === 1 && call === 2 ? 1e21 : undefined), {}, { setup: (s, servers) => ((shared = s), patientAhead(servers)) });
    expect(rejections(run)).toHaveLength(1);
    expect(run.outcome?.status).toBe('finished');
    expect(shared!.ahead.hits).toBe(4);
    expect(same(run, honest)).toBe(true);
  });

  /** The images at positions [from, to) of the run's sample order (trainShared's data and seed). */
  async function slice(from: number, to: number): Promise<Buffer> {
    const data = await syntheticData(128, 20);
    const order = permutation(data.train.count, testConfig({ model: 'mlp' }).seed + 1);
    return Buffer.concat(Array.from(order.subarray(from, to), (k) => data.train.images.subarray(k * IMAGE_BYTES, (k + 1) * IMAGE_BYTES)));
  }

  it('copies a slice\'s images once: a command that names its pass ahead leaves the slot as it was', async () => {
    let withAhead: SharedStep | undefined;
    let without: SharedStep | undefined;
    await trainShared(1, undefined, {}, { setup: (s) => (withAhead = s) });
    await trainShared(1, undefined, {}, { setup: (s, ...rest) => ((without = s), withoutAhead.setup!(s, ...rest)) });
    const slot = (s: SharedStep) => Buffer.from(s.mem.images[0].subarray(0, 32 * IMAGE_BYTES));
    // Steps 2-4 ran from passes ahead, whose images went into the thread's ahead buffers only.
    expect(slot(withAhead!).equals(await slice(0, 32))).toBe(true);
    expect(slot(without!).equals(await slice(96, 128))).toBe(true);
  });

  // Outliers in steps 2 and 4 change the gradient only if the thread reads those steps' images.
  const outliers: Honest = { outlierPositions: [40, 110], screen: false };
  const unusable = (_t: number, session: WorkerSession) => ({ ...session, finishAhead: async () => undefined }) as unknown as WorkerSession;
  /** The threads run no pass ahead at all, so a slice offered by index is copied in only for the command that names it. */
  const noPasses = (servers: SharedStepServer[]) => {
    for (const s of servers) (s as unknown as { ahead: { compute(): Promise<void> } }).ahead.compute = async () => {};
  };
  for (const k of [1, 2]) {
    for (const sharedTrainSet of [false, true]) {
      const how = sharedTrainSet ? 'offered by index, copied in by the thread' : 'offered with its images';
      it(`computes from the ahead buffer when a command names a pass the thread cannot use (${k} thread${k > 1 ? 's' : ''}, ${how}), with the images of the step`, async () => {
        const reference = await trainShared(k, undefined, outliers, withoutAhead);
        const run = await trainShared(k, undefined, outliers, { session: unusable, setup: (_s, servers) => (sharedTrainSet ? noPasses(servers) : patientAhead(servers)), sharedTrainSet });
        expect(run.outcome?.status).toBe('finished');
        expect(stepsAhead(run)).toEqual([0]);
        expect(same(run, reference)).toBe(true);
        const plain = await trainShared(k, undefined, { screen: false }, withoutAhead);
        expect(same(reference, plain)).toBe(false);
      });
    }

    it(`offers slices of a training set the threads hold by index (${k} thread${k > 1 ? 's' : ''}): each thread copies its images in, and the run ends with the weights of one without passes ahead`, async () => {
      const reference = await trainShared(k, undefined, outliers, withoutAhead);
      let shared: SharedStep | undefined;
      const run = await trainShared(k, undefined, outliers, { setup: (s, servers) => ((shared = s), patientAhead(servers)), sharedTrainSet: true, runs: false });
      expect(stepsAhead(run)).toEqual([3 * k]);
      expect(same(run, reference)).toBe(true);
      // The last offers went by index: the owner wrote their indices, the threads the images.
      for (let t = 0; t < k; t++) for (const token of [1, 2]) expect(shared!.mem.aheadBuffer(t, token)!.slice[AHEAD_SLICE.byIndex]).toBe(1);
    });
  }

  it('drops the pass computed after a result the screen rejected, and offers the slice again with the recomputation', async () => {
    const honest = await trainShared(1, undefined, {}, withoutAhead);
    // With the step ahead, call 2 is the pass for step 2, which its command then uses.
    const run = await trainShared(1, (_thread, call) => (call === 2 ? 1e21 : undefined));
    expect(rejections(run)).toHaveLength(1);
    // Step 2's poisoned pass, then steps 3 and 4: step 3's pass from the recomputation's offer, not the first one's.
    expect(stepsAhead(run)).toEqual([3]);
    expect(same(run, honest)).toBe(true);
  });
});

describe('runs of steps the threads drive themselves (step-run.ts)', { timeout: 60_000 }, () => {
  /** Records how many steps each run committed. */
  const countRuns = (runs: number[]) => (shared: SharedStep) => {
    const runSteps = shared.runSteps.bind(shared);
    shared.runSteps = async (...args) => {
      const run = await runSteps(...args);
      runs.push(run.steps.length);
      return run;
    };
  };
  const stopped = (r: SharedRun) => r.lines.filter((l) => l.event === 'steps_run_refused');

  for (const k of [1, 2]) {
    it(`runs steps 2-4 as one run on ${k} thread${k > 1 ? 's' : ''} and ends with the step-by-step weights bit for bit`, async () => {
      const runs: number[] = [];
      let ops: number[][] = [];
      const stepped = await trainShared(k, undefined, {}, { sharedTrainSet: true, runs: false });
      const ran = await trainShared(k, undefined, {}, { sharedTrainSet: true, setup: (shared) => (countRuns(runs)(shared), (ops = watchCommands(shared))) });
      expect(ran.outcome?.status).toBe('finished');
      expect(runs).toEqual([3]);
      // Step 1 through the owner (the screen has no history yet), then one run command per thread.
      for (const threadOps of ops) expect(threadOps.slice(-1)).toEqual([OP.run]);
      expect(ran.lines.filter((l) => l.event === 'step').map((l) => l.step)).toEqual([1, 2, 3, 4]);
      expect(sameBits(ran.weights, stepped.weights)).toBe(true);
      // Without a shared training set there is nothing to run from: every step goes through the owner.
      const unshared: number[] = [];
      await trainShared(k, undefined, {}, { setup: countRuns(unshared) });
      expect(unshared).toEqual([]);
    });
  }

  it('ends the run at a step its threads would not accept, and the owner takes that step again: the honest weights, nothing rejected', async () => {
    const runs: number[] = [];
    const honest = await trainShared(2, undefined, {}, { sharedTrainSet: true });
    // Thread 2's third pass (1: step 1; 2: step 2's pass ahead, which the run does not use; 3: step 2
    // in the run) is 1e21: the screen in every thread refuses step 2, so the run commits nothing.
    const poisoned = await trainShared(2, (thread, call) => (thread === 2 && call === 3 ? 1e21 : undefined), {}, { sharedTrainSet: true, setup: countRuns(runs) });
    expect(poisoned.outcome?.status).toBe('finished');
    // The owner steps step 2; steps 3 and 4 then run.
    expect(runs).toEqual([0, 2]);
    expect(stopped(poisoned)).toHaveLength(1);
    expect(stopped(poisoned)[0]).toMatchObject({ step: 2 });
    expect(stopped(poisoned)[0].reason).toMatch(/slot 1: gradient norm .* exceeds the bound/);
    // Step 2 recomputed by the owner's step is honest: nothing is rejected, and the weights are the honest run's.
    expect(rejections(poisoned)).toEqual([]);
    expect(sameBits(poisoned.weights, honest.weights)).toBe(true);
  });

  it('leaves the step after a run that ended short to the owner, not to another run', async () => {
    const runs: number[] = [];
    const honest = await trainShared(2, undefined, {}, { sharedTrainSet: true });
    // Thread 2's fourth pass is step 3's, inside the run: the run commits step 2 and stops at step 3.
    const poisoned = await trainShared(2, (thread, call) => (thread === 2 && call === 4 ? 1e21 : undefined), {}, { sharedTrainSet: true, setup: countRuns(runs) });
    expect(poisoned.outcome?.status).toBe('finished');
    // Steps 3 and 4 then go step by step (one step left after step 3 is too few for a run).
    expect(runs).toEqual([1]);
    expect(stopped(poisoned).map((l) => l.step)).toEqual([3]);
    expect(poisoned.lines.filter((l) => l.event === 'step').map((l) => l.step)).toEqual([1, 2, 3, 4]);
    expect(sameBits(poisoned.weights, honest.weights)).toBe(true);
  });

  it('ends the run when a thread fails its slice, and the owner\'s step computes it again: the same weights, no thread evicted', async () => {
    const runs: number[] = [];
    const honest = await trainShared(2, undefined, {}, { sharedTrainSet: true });
    const failing = await trainShared(2, undefined, {}, {
      sharedTrainSet: true,
      session: onCall(2, 3, () => {
        throw new Error('a fault in step 3');
      }),
      setup: countRuns(runs),
    });
    expect(failing.outcome?.status).toBe('finished');
    expect(runs[0]).toBe(1);
    expect(failing.threads.flatMap((t) => t.closed)).toEqual([]);
    expect(sameBits(failing.weights, honest.weights)).toBe(true);
  });
});
