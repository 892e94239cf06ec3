import { beforeAll, describe, expect, it, vi } from 'vitest';
import { selectBackend } from '../common/backend.ts';
import { WorkerSession } from './session.ts';
import { SharedResult } from './shared-result.ts';
import { StepComputer } from './compute.ts';
import { PROTOCOL_VERSION, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { CTL, F64, StepMemory } from '../common/step-memory.ts';
import { StripeWorker, heldToken, setNativeStripe } from '../common/step-stripe.ts';
import { Adam } from '../common/adam.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';
import { requireNativeOrSkip } from '../common/kernels/native/native-testing.ts';

const nativeLoad = loadNativeKernels();
const nativeStripe = requireNativeOrSkip(nativeLoad);
if (nativeLoad.loaded) setNativeStripe(nativeLoad.kernels);

describe('WorkerSession', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  it('uploads the weights once per version: tasks without weights reuse what the backend holds', async () => {
    const model = buildModel('cnn-bn');
    const layout = weightLayout(model);
    model.dispose();
    const weights = floatsToBytes(initialWeights(layout, 1));
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 4 }, (_, i) => i), 'dev', 1);
    const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w', model: 'cnn-bn', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
    const task = (taskId: number, version: number, kind: 'train' | 'eval', withWeights: boolean): TaskMessage => ({ type: 'task', taskId, kind, weightsVersion: version, ...(withWeights ? { weights } : {}), images, labels });
    const upload = vi.spyOn(StepComputer.prototype, 'setWeights');
    const session = new WorkerSession();
    session.welcome(welcome);
    await session.run(task(1, 1, 'train', true));
    await session.run(task(2, 1, 'train', false));
    await session.run(task(3, 1, 'eval', false));
    expect(upload).toHaveBeenCalledTimes(1);
    await session.run(task(4, 2, 'train', true));
    expect(upload).toHaveBeenCalledTimes(2);
    upload.mockRestore();
    session.dispose();
  });

  it('writes a train result into the shared result it is given: the same bits as a result of its own, in memory kept from task to task', async () => {
    const model = buildModel('cnn-bn');
    const layout = weightLayout(model);
    model.dispose();
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 8 }, (_, i) => i), 'dev', 2);
    const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w', model: 'cnn-bn', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
    const task = (taskId: number, seed: number): TaskMessage => ({ type: 'task', taskId, kind: 'train', weightsVersion: taskId, weights: floatsToBytes(initialWeights(layout, seed)), images, labels, batchNorm: { mode: 'local' } });
    const session = new WorkerSession();
    session.welcome(welcome);
    const shared = new SharedResult();
    for (const seed of [1, 2]) {
      const own = await session.run(task(seed * 2, seed));
      const inShared = await session.run(task(seed * 2 + 1, seed), shared);
      expect(own.gradients!.buffer).toBeInstanceOf(ArrayBuffer);
      expect(inShared.gradients!.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(inShared.stats!.buffer).toBe(inShared.gradients!.buffer);
      expect(Buffer.from(inShared.gradients!).equals(Buffer.from(own.gradients!))).toBe(true);
      expect(Buffer.from(inShared.stats!).equals(Buffer.from(own.stats!))).toBe(true);
      expect([inShared.lossSum, inShared.correct, inShared.count]).toEqual([own.lossSum, own.correct, own.count]);
    }
    const a = await session.run(task(10, 1), shared);
    const b = await session.run(task(11, 2), shared);
    expect(b.gradients!.buffer).toBe(a.gradients!.buffer);
    session.dispose();
  });
});

describe.runIf(nativeStripe)('the weights a one-slot step wrote into the backend, across threads (copy versions)', () => {
  beforeAll(async () => {
    await selectBackend('wasm');
  });

  /**
   * Two "threads" (sessions, each with its stripe worker) on one step memory run one-slot steps in
   * `schedule` order, as worker/shared-step-server.ts does: `fromBackend[t]` says whether step t
   * reads its gradient where the backend holds it and writes the next weights into it, else through
   * slot 0 and run(). Returns the final copy and how many steps found their weights already held.
   */
  async function run(schedule: number[], fromBackend: (t: number) => boolean) {
    const model = buildModel('mlp');
    const layout = weightLayout(model);
    model.dispose();
    const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w', model: 'mlp', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
    const mem = StepMemory.create({ trainable: layout.trainableSize, stats: 0, slots: 1, slotSamples: 8, threads: 2 });
    const sessions = [new WorkerSession(), new WorkerSession()];
    sessions.forEach((s) => s.welcome(welcome));
    const stripes = [new StripeWorker(mem, true), new StripeWorker(mem, true)];
    expect(stripes[0].runsFromBackend).toBe(true);
    const cfg = new Adam(1).config;
    Object.assign(mem.f64, { [F64.beta1]: cfg.beta1, [F64.beta2]: cfg.beta2, [F64.epsilon]: cfg.epsilon, [F64.inv]: 1 / 8 });
    mem.ctl[CTL.slotsUsed] = 1;
    mem.ctl[CTL.slotCounts] = 8;
    mem.weights[0].set(initialWeights(layout, 3));
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: 8 }, (_, i) => i), 'dev', 1);
    const upload = vi.spyOn(StepComputer.prototype, 'setWeights');
    let parity: 0 | 1 = 0;
    for (let t = 1; t <= schedule.length; t++) {
      const k = schedule[t - 1];
      mem.f64[F64.stepSize] = cfg.learningRate / (1 - Math.pow(cfg.beta1, t));
      mem.f64[F64.sqrtCorrection] = 1 / Math.sqrt(1 - Math.pow(cfg.beta2, t));
      const task = { from: 0, to: mem.adamSpan, parity, doStats: false };
      const weights = mem.weights[parity].subarray(0, layout.trainableSize);
      const stats = new Float32Array(0);
      if (fromBackend(t)) {
        await sessions[k].trainWithInto(weights, images, labels, () => ({ gradientSum: mem.gradients[0], stats, use: (segments) => stripes[k].runFromBackend(task, segments!).token }), undefined, 0, heldToken(mem.ctl, parity));
      } else {
        await sessions[k].trainWithInto(weights, images, labels, () => ({ gradientSum: mem.gradients[0], stats }), undefined, 0, heldToken(mem.ctl, parity));
        stripes[k].run(task, true);
      }
      parity = (1 - parity) as 0 | 1;
    }
    const held = schedule.length - upload.mock.calls.length;
    upload.mockRestore();
    sessions.forEach((s) => s.dispose());
    return { weights: mem.weights[parity].slice(0, layout.trainableSize), held };
  }

  it('uploads a copy another thread rewrote since this one wrote it (A, B, B, A, A), and ends where steps through the slot do', async () => {
    const schedule = [0, 1, 1, 0, 0];
    const on = await run(schedule, () => true);
    const off = await run(schedule, () => false);
    // B's step 3 reads the copy it wrote in step 2, A's step 5 the copy it wrote in step 4; A's step 4
    // reads copy 0, which it wrote in step 1 but B rewrote in step 3: it uploads.
    expect(on.held).toBe(2);
    expect(off.held).toBe(0);
    expect(Buffer.compare(Buffer.from(on.weights.buffer), Buffer.from(off.weights.buffer))).toBe(0);
  }, 60_000);

  it('uploads a copy another thread rewrote through the slot and run() (A, B, B, A, A, step 3 through the slot)', async () => {
    // A wrote copy 1 from the backend in step 1; B's step 3 rewrites it through the slot; A's step 4 must upload it.
    const schedule = [0, 1, 1, 0, 0];
    const mixed = await run(schedule, (t) => t !== 3);
    const off = await run(schedule, () => false);
    expect(mixed.held).toBe(2);
    expect(Buffer.compare(Buffer.from(mixed.weights.buffer), Buffer.from(off.weights.buffer))).toBe(0);
  }, 60_000);
});
