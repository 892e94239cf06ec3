import { capturingLogger } from '../test/capture-logger.ts';
import { describe, expect, it } from 'vitest';
import { syntheticData, tempDir, testConfig, trainInProcess } from '../test/helpers.ts';
import { silentLogger } from '../common/logger.ts';
import { buildModel } from '../common/models.ts';
import { initialWeights, weightLayout } from '../common/weights.ts';
import { CheckpointError, ConfigError } from '../common/errors.ts';
import { Membership } from './membership.ts';
import { Trainer } from './trainer.ts';
import { saveCheckpoint } from './checkpoint.ts';
import { GradientScreen } from './result-check.ts';
import type { WorkerHandle } from './membership.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { permutation } from '../common/random.ts';
import { IMAGE_BYTES } from '../common/data/types.ts';

describe('Trainer.resume', () => {
  it('refuses a checkpoint whose optimizer state holds Infinity (it would freeze those weights for good)', async () => {
    const out = await tempDir();
    const config = testConfig({ model: 'lenet', out, resume: true });
    const layout = weightLayout(buildModel('lenet'));
    const v = new Float32Array(layout.trainableSize);
    v[123] = Number.POSITIVE_INFINITY;
    await saveCheckpoint(out, {
      weights: initialWeights(layout, 1),
      adam: { step: 3, m: new Float32Array(layout.trainableSize), v },
      state: {
        format: '', model: 'lenet', weightCount: layout.totalSize, adamStep: 3, weightsVersion: 3,
        position: { epoch: 0, sampleOffset: 96, globalStep: 3, epochLossSum: 0, epochCorrect: 0, epochSamples: 96, epochSeconds: 1 },
        files: { model: '', weights: '', optimizer: '' },
        history: { model: 'lenet', epochs: [] },
        config: { ...config },
      },
    });
    const trainer = new Trainer(config, await syntheticData(64, 10), new Membership(silentLogger()), silentLogger());
    const err = await trainer.resume().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/non-finite weights or optimizer state/);
  });
});

/**
 * A WebSocket worker as the scheduler sees it, computing nothing: its gradient is a fixed function
 * of the weights, count × (0.01·w_i + 0.001·sin i), 100× for a slice that holds one of `outliers`
 * (an honest outlier: a misclassified sample among well-classified ones). A liar answers its
 * `lieOn`-th train task with 100× although the slice holds no outlier.
 */
class MessageWorker implements WorkerHandle {
  readonly backend = 'fake';
  weightsVersion = -1;
  readonly closed: string[] = [];
  private weights = new Float32Array(0);
  private trains = 0;
  constructor(readonly id: string, private readonly trainable: number, private readonly outliers: Uint8Array[], private readonly lieOn = 0) {}
  get name(): string {
    return this.id;
  }
  run(task: TaskMessage): Promise<ResultMessage> {
    if (task.weights) this.weights = new Float32Array(task.weights.slice().buffer);
    const count = task.labels.length;
    if (task.kind === 'eval') {
      const correct = task.labels.filter((l) => l === 0).length;
      return Promise.resolve({ type: 'result', taskId: task.taskId, count, lossSum: count * 2.3, correct, computeMs: 0, predictions: new Uint8Array(count) });
    }
    const lie = ++this.trains === this.lieOn;
    const scale = lie || holdsAny(task.images, this.outliers) ? 100 : 1;
    const g = new Float32Array(this.trainable);
    for (let i = 0; i < g.length; i++) g[i] = scale * count * (0.01 * this.weights[i] + 0.001 * Math.sin(i));
    // Answers after a moment, as a remote worker would (so others are busy when a result arrives).
    return new Promise((resolve) => setTimeout(() => resolve({ type: 'result', taskId: task.taskId, count, lossSum: count * 2.3, correct: 0, computeMs: 0, gradients: floatsToBytes(g) }), 1));
  }
  close(_code: number, reason: string): void {
    this.closed.push(reason);
  }
}

function holdsAny(images: Uint8Array, wanted: Uint8Array[]): boolean {
  for (let j = 0; j < images.length; j += IMAGE_BYTES) {
    const image = images.subarray(j, j + IMAGE_BYTES);
    if (wanted.some((w) => Buffer.compare(Buffer.from(image), Buffer.from(w)) === 0)) return true;
  }
  return false;
}

/** Trains mlp for one epoch (128 images, batch 32: 4 steps) over three message workers; `liar` lies on its `lieOn`-th train task. */
async function trainOverMessages(opts: { outlierPositions?: number[]; screen?: boolean; lieOn?: number }) {
  const out = await tempDir('msg-');
  const config = testConfig({ model: 'mlp', workers: 3, batchSize: 32, out, learningRate: 0.01 });
  const { log, lines } = capturingLogger();
  const membership = new Membership(log);
  const data = await syntheticData(128, 20);
  const trainer = new Trainer(config, data, membership, log);
  if (opts.screen === false) (trainer as unknown as { screen: GradientScreen }).screen = new GradientScreen(trainer.layout, { factor: Infinity });
  const order = permutation(data.train.count, config.seed + 1);
  const outliers = (opts.outlierPositions ?? []).map((p) => data.train.images.slice(order[p] * IMAGE_BYTES, (order[p] + 1) * IMAGE_BYTES));
  const workers = ['a', 'b', 'liar'].map((id) => new MessageWorker(id, trainer.layout.trainableSize, outliers, id === 'liar' ? opts.lieOn : 0));
  for (const w of workers) membership.join(w);
  // Evicting everyone ends the run (NoWorkersError) instead of waiting for workers that never come.
  membership.canGrow = false;
  const outcome = await trainer.run();
  return { outcome, weights: trainer.currentWeights.slice(), lines, workers, live: membership.live().map((w) => w.id), events: (e: string) => lines.filter((l) => l.event === e) };
}

describe('the message path asks a second worker before it blames an outlier', { timeout: 60_000 }, () => {
  it('accepts an honest outlier slice that a second worker confirms: nobody is evicted, and the weights are those of a run without the screen', async () => {
    // Position 70 is in step 3 (checked against the history), position 5 in step 1 (reviewed together).
    const reference = await trainOverMessages({ outlierPositions: [5, 70], screen: false });
    const run = await trainOverMessages({ outlierPositions: [5, 70] });
    expect(run.outcome.status).toBe('finished');
    expect(run.events('result_rejected')).toEqual([]);
    expect(run.events('worker_evicted')).toEqual([]);
    expect(run.live.sort()).toEqual(['a', 'b', 'liar']);
    const confirmed = run.events('outlier_confirmed');
    expect(confirmed).toHaveLength(2);
    for (const c of confirmed) expect(c.workerId).not.toBe(c.firstWorkerId);
    expect(Buffer.compare(Buffer.from(run.weights.buffer), Buffer.from(reference.weights.buffer))).toBe(0);
  });

  it('evicts a worker whose outlier the second worker contradicts, logs result_rejected, and trains on the honest recomputation', async () => {
    const clean = await trainOverMessages({});
    // The liar's 2nd train task is in step 2, once the screen has a history.
    const run = await trainOverMessages({ lieOn: 2 });
    expect(run.outcome.status).toBe('finished');
    const [rejected] = run.events('result_rejected');
    expect(run.events('result_rejected')).toHaveLength(1);
    expect(rejected).toMatchObject({ workerId: 'liar' });
    expect(rejected.norm as number).toBeGreaterThan(rejected.bound as number);
    expect(run.workers[2].closed).toEqual([expect.stringMatching(/result rejected: gradient norm/)]);
    expect(run.live.sort()).toEqual(['a', 'b']);
    expect(run.events('outlier_confirmed')).toEqual([]);
    // Two workers slice the later steps differently, so the float32 sums may round differently.
    let worst = 0;
    for (let i = 0; i < clean.weights.length; i++) worst = Math.max(worst, Math.abs(run.weights[i] - clean.weights[i]));
    expect(worst).toBeLessThan(1e-5);
  });
});

describe('Trainer with a reduction grain', () => {
  it('refuses what cannot keep the sums exact, before the first step, naming the flag', { timeout: 120_000 }, async () => {
    const data = await syntheticData(64, 20);
    const refused = async (overrides: Parameters<typeof testConfig>[0], opts: { sharedMemory?: boolean; backendName?: string } = {}) => {
      const err = await trainInProcess(testConfig({ model: 'lenet', workers: 2, maxSteps: 2, reduceGrain: 4, out: await tempDir(), ...overrides }), data, opts).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    };
    expect(await refused({}, { sharedMemory: false })).toMatch(/--reduce-grain 4 needs the shared-memory step/);
    expect(await refused({ aggregation: 'median' })).toMatch(/needs --aggregation mean .* but got median/);
    expect(await refused({ model: 'cnn-bn', syncBatchNorm: 'stats' })).toMatch(/needs --sync-bn exact .* but got stats/);
    expect(await refused({ batchPerWorker: 6 })).toMatch(/must divide --batch-per-worker 6/);
    expect(await refused({}, { backendName: 'webgpu' })).toMatch(/needs a backend that reads synchronously .* but the threads run webgpu/);
  });

  it('refuses to resume a checkpoint made with another grain, which would not continue bit for bit', { timeout: 120_000 }, async () => {
    const data = await syntheticData(64, 20);
    const out = await tempDir();
    const config = testConfig({ model: 'lenet', workers: 1, maxSteps: 1, reduceGrain: 4, out });
    expect((await trainInProcess(config, data)).outcome.status).toBe('interrupted');
    const err = await trainInProcess({ ...config, reduceGrain: 0, resume: true }, data, { resume: true }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/made with --reduce-grain 4, but this run has 0/);
    // The same grain resumes.
    expect((await trainInProcess({ ...config, resume: true, maxSteps: 0 }, data, { resume: true })).outcome.status).toBe('finished');
  });
});

// A step's log line and onStep hook run once the next step's tasks are out (Trainer.reportStep):
// each still runs once, in order, before what follows the step, and a hook that throws fails the
// run with its error instead of escaping from setImmediate.
describe('the deferred step report', () => {
  it('calls onStep once per step, in order, each before the epoch ends and all before the run returns', async () => {
    const seen: string[] = [];
    const run = await trainInProcess(testConfig({ model: 'mlp', backend: 'cpu', batchSize: 16, workers: 1, epochs: 2, out: await tempDir() }), await syntheticData(48, 10), {
      hooks: { onStep: (e) => seen.push(`step ${e.step}`), onEpochEnd: (e) => seen.push(`epoch ${e.epoch}`) },
    });
    expect(run.outcome.status).toBe('finished');
    expect(seen).toEqual(['step 1', 'step 2', 'step 3', 'epoch 1', 'step 4', 'step 5', 'step 6', 'epoch 2']);
  });

  // 6 steps of 16. At step 2 the error surfaces when step 3 (already out) is done, so no step 4 runs;
  // at step 6 the epoch's end flushes the last report and throws.
  for (const at of [2, 6]) {
    it(`fails the run with the error of an onStep hook that throws at step ${at} of 6`, async () => {
      const steps: number[] = [];
      const run = trainInProcess(testConfig({ model: 'mlp', backend: 'cpu', batchSize: 16, workers: 1, epochs: 1, out: await tempDir() }), await syntheticData(96, 10), {
        hooks: {
          onStep: (e) => {
            steps.push(e.step);
            if (e.step === at) throw new Error(`hook failed at step ${at}`);
          },
        },
      });
      await expect(run).rejects.toThrow(`hook failed at step ${at}`);
      expect(steps.slice(0, at)).toEqual(Array.from({ length: at }, (_, i) => i + 1));
      expect(steps.length).toBeLessThanOrEqual(Math.min(at + 1, 6));
    });
  }
});

describe('Trainer.evaluate', () => {
  it('makes the validation split\'s tasks once and sends the same arrays at every evaluation; the test split gets its own', async () => {
    const data = await syntheticData(64, 250);
    const membership = new Membership(silentLogger());
    const trainer = new Trainer(testConfig({ model: 'mlp', out: await tempDir(), evalBatchSize: 100 }), data, membership, silentLogger());
    const worker = new MessageWorker('a', trainer.layout.trainableSize, []);
    const sent: TaskMessage[] = [];
    const run = worker.run.bind(worker);
    worker.run = (task) => {
      sent.push(task);
      return run(task);
    };
    membership.join(worker);
    const first = await trainer.evaluate(data.val);
    const val = sent.splice(0);
    const second = await trainer.evaluate(data.val);
    const again = sent.splice(0);
    await trainer.evaluate(data.test);
    const test = sent.splice(0);
    expect(val.map((t) => t.labels.length)).toEqual(chunks(data.val.count, 100));
    expect(again.map((t) => t.images)).toEqual(val.map((t) => t.images));
    again.forEach((t, i) => expect(t.images).toBe(val[i].images));
    val.forEach((t, i) => expect(t.images).toEqual(data.val.images.subarray(i * 100 * IMAGE_BYTES, (i * 100 + t.labels.length) * IMAGE_BYTES)));
    expect(second).toEqual(first);
    expect(test.map((t) => t.labels.length)).toEqual(chunks(data.test.count, 100));
    test.forEach((t, i) => expect(t.images).toEqual(data.test.images.subarray(i * 100 * IMAGE_BYTES, (i * 100 + t.labels.length) * IMAGE_BYTES)));
  });
});

/** The sizes of `count` samples in chunks of `size`. */
function chunks(count: number, size: number): number[] {
  return Array.from({ length: Math.ceil(count / size) }, (_, i) => Math.min(size, count - i * size));
}
