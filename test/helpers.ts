/** Shared set-up for integration tests: a small synthetic job run in-process. */
import { afterAll } from 'vitest';
import { mkdtemp } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TRAIN_DEFAULTS, type TrainConfig } from '../common/config.ts';
import { loadDataset } from '../common/data/load.ts';
import type { DatasetSplits } from '../common/data/types.ts';
import { fitPreprocessing } from '../common/data/preprocess.ts';
import { MODEL_SPECS } from '../common/models.ts';
import { silentLogger } from '../common/logger.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { Membership } from '../coordinator/membership.ts';
import { Trainer, type RunOutcome, type TrainerHooks } from '../coordinator/trainer.ts';
import { prestartThreads, startInProcessWorkers } from '../coordinator/inprocess.ts';
import type { WarmUp } from '../worker/warm-up.ts';
import { wirePreprocessing } from '../coordinator/job.ts';

// One folder per test file, removed after it, so test runs leave nothing behind in /tmp.
const root = mkdtempSync(join(tmpdir(), 'dtrain-tests-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

export async function tempDir(prefix = 'run-'): Promise<string> {
  return mkdtemp(join(root, prefix));
}

export async function syntheticData(limitTrain: number, limitTest = 100, seed = 42): Promise<DatasetSplits> {
  return loadDataset({ dataset: 'synthetic', limitTrain, limitTest, splitSeed: seed });
}

export function testConfig(overrides: Partial<TrainConfig>): TrainConfig {
  return { ...TRAIN_DEFAULTS, dataset: 'synthetic', backend: 'wasm', epochs: 1, plotEveryEpoch: false, evalBatchSize: 100, ...overrides };
}

/** Runs the trainer with K worker threads; returns the outcome and the final weights. */
export async function trainInProcess(
  config: TrainConfig,
  data: DatasetSplits,
  opts: { resume?: boolean; sharedMemory?: boolean; shareTrainSet?: boolean; bnBoard?: boolean; membership?: (m: Membership) => void; hooks?: TrainerHooks; trainer?: (t: Trainer) => void; backendName?: string; warmUp?: WarmUp } = {},
): Promise<{ outcome: RunOutcome; weights: Float32Array; trainer: Trainer; shared: boolean; warmedUp: number }> {
  const log = silentLogger();
  const membership = new Membership(log);
  opts.membership?.(membership);
  const trainer = new Trainer(config, data, membership, log, opts.hooks);
  opts.trainer?.(trainer);
  if (opts.resume) await trainer.resume();
  const prep = fitPreprocessing(MODEL_SPECS[config.model].input, data.train);
  const pool = await startInProcessWorkers(membership, {
    workers: config.workers,
    backend: config.backend,
    log,
    welcome: { type: 'welcome', protocolVersion: PROTOCOL_VERSION, model: config.model, preprocessing: wirePreprocessing(prep), weightCount: trainer.layout.totalSize },
    // The shared-memory step is what `dtrain train` runs; `sharedMemory: false` keeps every step as messages.
    // `shareTrainSet`: the threads are given the training set as `dtrain train` gives it, so runs of steps can go (coordinator/step-runs.ts).
    sharedMemory: opts.sharedMemory === false ? false : { trainable: trainer.layout.trainableSize, stats: trainer.layout.totalSize - trainer.layout.trainableSize, slotSamples: config.batchPerWorker ?? config.batchSize, grain: config.reduceGrain ?? 0, ...(opts.shareTrainSet ? { trainSet: data.train } : {}) },
    // As `dtrain train`; `bnBoard: false` keeps synchronized BatchNorm's exchanges as messages.
    batchNormChannels: opts.bnBoard === false ? [] : trainer.layout.entries.filter((e) => e.role === 'moving_mean').map((e) => e.size),
    // `warmUp`: threads started ahead, as `dtrain train` starts them (worker/warm-up.ts).
    ...(opts.warmUp ? { threads: prestartThreads(config.workers, config.backend, opts.warmUp) } : {}),
  });
  if (pool.sharedStep) trainer.useSharedStep(pool.sharedStep);
  if (pool.bnBoard) trainer.useBnBoard(pool.bnBoard);
  try {
    // `backendName`: what the trainer is told the threads run (tests of its checks), else the truth.
    trainer.backendName = opts.backendName ?? pool.backend.name;
    const outcome = await trainer.run();
    return { outcome, weights: trainer.currentWeights.slice(), trainer, shared: pool.sharedStep !== undefined, warmedUp: pool.warmedUp };
  } finally {
    await pool.stop();
  }
}

/**
 * Trains `model` for 2 epochs with 2 threads straight through, and again stopped after 11 steps
 * (mid-epoch 2, with a checkpoint) then resumed in the same folder: the resume tests compare them.
 */
export async function trainStraightAndResumed(model: TrainConfig['model']): Promise<{ straight: Float32Array; first: RunOutcome; resumed: RunOutcome; resumedWeights: Float32Array; out: string }> {
  const data = await syntheticData(256, 50);
  const config = { model, workers: 2, epochs: 2, batchSize: 32 };
  const straight = await trainInProcess(testConfig({ ...config, out: await tempDir() }), data);
  const out = await tempDir();
  const first = await trainInProcess(testConfig({ ...config, out, maxSteps: 11 }), data);
  const resumed = await trainInProcess(testConfig({ ...config, out, resume: true }), data, { resume: true });
  return { straight: straight.weights, first: first.outcome, resumed: resumed.outcome, resumedWeights: resumed.weights, out };
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}
