/**
 * One training job from start to finish, whatever the transport: load the data, start or accept
 * workers, run the step loop, handle SIGINT/SIGTERM, and write the run folder and its pictures.
 * `dtrain train` (worker threads) and `dtrain coordinator` (WebSockets) differ only in `startWorkers`.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../common/logger.ts';
import type { TrainConfig } from '../common/config.ts';
import { loadDataset } from '../common/data/load.ts';
import { fitPreprocessing, type Preprocessing } from '../common/data/preprocess.ts';
import { MODEL_SPECS } from '../common/models.ts';
import { floatsToBytes, type ResultExpectations } from '../common/codec.ts';
import type { ImageSet } from '../common/data/types.ts';
import { PROTOCOL_VERSION, type WelcomeMessage } from '../common/protocol.ts';
import { Membership } from './membership.ts';
import type { SharedStep } from './shared-step.ts';
import type { BnBoardHost } from '../common/bn-board.ts';
import { Trainer, type RunOutcome, type TrainerHooks } from './trainer.ts';
import type { Metrics } from './run-files.ts';
import { checkResumeFlags, clearEarlierRun, refuseEarlierRun } from './earlier-run.ts';
import { writeRunPictures } from '../common/report/run-artifacts.ts';
import { quietBackgroundThreads } from '../common/background-threads.ts';
import { installGradientPasses } from '../common/kernels/native/install-native.ts';
import { makeOutputDir, removeMadeDirs } from '../common/output-dir.ts';

export interface WorkerPool {
  /** The backend the workers run, for metrics.json ("mixed" if they differ). */
  backend(): string;
  /** `finished`: workers are told training is over (they exit 0); `shutdown`: they should reconnect. */
  stop(why: 'finished' | 'shutdown'): Promise<void>;
  /** Worker threads in this process step through shared memory (coordinator/shared-step.ts). */
  sharedStep?: SharedStep;
  /** Worker threads in this process exchange synchronized BatchNorm's sums in shared memory (common/bn-board.ts). */
  bnBoard?: BnBoardHost;
}

export interface JobOptions {
  config: TrainConfig;
  log: Logger;
  /** Starts the transport; the welcome is what each worker must be told; `trainSet`: the run's training split (threads in this process may read it in place). */
  startWorkers(membership: Membership, welcome: Omit<WelcomeMessage, 'workerId'>, expect: ResultExpectations, trainSet: ImageSet): Promise<WorkerPool>;
  /** Workers to wait for before the first step (default 1). */
  minWorkers?: number;
  hooks?: Pick<TrainerHooks, 'onStep' | 'stepLogLevel'>;
  /** Watches the run (the dashboard and metrics, coordinator/http/): attached before workers start. */
  observer?: JobObserver;
  /** Aborted on SIGINT/SIGTERM by the caller: the job checkpoints and stops cleanly. */
  signal?: AbortSignal;
  /** The command line that started the run (after `dtrain`), for the exact command that continues it. */
  commandLine?: readonly string[];
}

/** The command that continues a stopped run: the same flags, --resume, and --out where it was implicit. */
export function resumeCommand(out: string, commandLine: readonly string[] | undefined): string {
  if (!commandLine) return `--resume --out ${out}`;
  const args = commandLine.filter((a) => a !== '--resume' && a !== '--overwrite');
  if (!args.some((a) => a === '--out' || a.startsWith('--out='))) args.push('--out', out);
  const quote = (a: string) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['dtrain', ...args, '--resume'].map(quote).join(' ');
}

export interface JobObserver {
  hooks: Pick<TrainerHooks, 'onStep' | 'onEpochEnd'>;
  attach(membership: Membership, trainer: Trainer, resumed: boolean): Promise<void> | void;
  /** The run ended (before the workers are stopped, so live pages still hear of it). */
  finished?(outcome: RunOutcome): Promise<void> | void;
}

export function wirePreprocessing(p: Preprocessing): WelcomeMessage['preprocessing'] {
  return p.kind === 'scale' ? { kind: 'scale' } : { kind: 'standardize', mean: floatsToBytes(p.mean), std: floatsToBytes(p.std) };
}

async function readMetrics(runDir: string): Promise<Metrics | undefined> {
  try {
    return JSON.parse(await readFile(join(runDir, 'metrics.json'), 'utf8')) as Metrics;
  } catch {
    return undefined;
  }
}

export async function runJob(opts: JobOptions): Promise<RunOutcome> {
  const { config, log } = opts;
  const made = makeOutputDir(config.out, '--out');
  const earlier = { resume: config.resume, overwrite: config.overwrite ?? false };
  refuseEarlierRun(config.out, earlier);
  for (const note of checkResumeFlags(config)) log.warn({ event: 'resume_changes', dir: config.out, note }, `resuming with ${note}`);
  // The message path's passes over gradients and Adam: native where the addon loads.
  const passes = installGradientPasses();
  log.debug({ event: 'gradient_passes', native: passes.native, reason: passes.reason }, `gradient passes and Adam: ${passes.native ? 'native' : `JavaScript and WebAssembly (${passes.reason})`}`);
  // Data that cannot be read ends the run before it wrote anything: it leaves no empty folder behind.
  const data = await loadDataset({ dataset: config.dataset, dataDir: config.dataDir, limitTrain: config.limitTrain, limitTest: config.limitTest, splitSeed: config.seed, logger: log }).catch((err: unknown) => {
    removeMadeDirs(made);
    throw err;
  });
  const preprocessing = fitPreprocessing(MODEL_SPECS[config.model].input, data.train);

  const membership = new Membership(log);
  const observer = opts.observer;
  const trainer = new Trainer(config, data, membership, log, {
    ...opts.hooks,
    onStep: (e) => {
      opts.hooks?.onStep?.(e);
      observer?.hooks.onStep?.(e);
    },
    onEpochEnd: observer?.hooks.onEpochEnd,
    onEpoch: async (history, predictions) => {
      try {
        await writeRunPictures(config.out, { history, summaryText: trainer.summary, predictions });
      } catch (err) {
        log.warn({ event: 'plot_failed', err: (err as Error).message }, 'could not render the run pictures');
      }
    },
  });
  const resumed = config.resume && (await trainer.resume());
  if (config.resume && !resumed) log.info({ event: 'resume_skipped', dir: config.out }, 'no checkpoint to resume from: starting fresh');
  await observer?.attach(membership, trainer, resumed);
  // Resuming a run that already finished (a restarted container, say) must not redo or overwrite it.
  const finished = trainer.isFinished ? await readMetrics(config.out) : undefined;
  if (finished) {
    log.info({ event: 'run_finished', alreadyFinished: true, test_loss: finished.test_loss, test_accuracy: finished.test_accuracy, out: config.out }, `this run already finished (test accuracy ${(finished.test_accuracy * 100).toFixed(2)}%): nothing to do`);
    return { status: 'finished', metrics: finished };
  }

  const starting = opts.startWorkers(membership, {
    type: 'welcome',
    protocolVersion: PROTOCOL_VERSION,
    model: config.model,
    preprocessing: wirePreprocessing(preprocessing),
    weightCount: trainer.layout.totalSize,
    trainableCount: trainer.layout.trainableSize,
    // Offered only to workers whose own dataset has this fingerprint (the WebSocket Connection checks).
    ...(data.fingerprint ? { localData: { fingerprint: data.fingerprint, seed: config.seed, ...(config.limitTrain ? { limitTrain: config.limitTrain } : {}), ...(config.limitTest ? { limitTest: config.limitTest } : {}) } } : {}),
  }, { gradientCount: trainer.layout.trainableSize, statsCount: trainer.layout.totalSize - trainer.layout.trainableSize, batchNormChannels: trainer.layout.entries.filter((e) => e.role === 'moving_mean').map((e) => e.size) }, data.train);
  let pool: WorkerPool;
  try {
    pool = await starting;
  } catch (err) {
    // SIGINT/SIGTERM while the workers started: nothing trained, nothing new to checkpoint.
    if (!opts.signal?.aborted || err !== opts.signal.reason) throw err;
    const position = trainer.currentPosition;
    log.info({ event: 'run_stopped', step: position.globalStep, epoch: position.epoch + 1, out: config.out }, `stopped while the workers were starting, at step ${position.globalStep}`);
    const outcome: RunOutcome = { status: 'interrupted', position };
    await observer?.finished?.(outcome);
    return outcome;
  }
  // The workers are up: from here the run writes its folder (an --overwrite'n run's files go first).
  const cleared = clearEarlierRun(config.out, earlier);
  if (cleared.length > 0) log.info({ event: 'run_overwritten', dir: config.out, files: cleared }, `--overwrite: removed the earlier run's ${cleared.join(', ')}`);
  await writeFile(join(config.out, 'summary.txt'), trainer.summary + '\n');
  if (pool.sharedStep) trainer.useSharedStep(pool.sharedStep);
  if (pool.bnBoard) trainer.useBnBoard(pool.bnBoard);
  let outcome: RunOutcome | undefined;
  try {
    const minWorkers = opts.minWorkers ?? 1;
    while (membership.size < minWorkers && !opts.signal?.aborted) {
      log.info({ event: 'waiting_for_workers', workers: membership.size, minWorkers }, `waiting for workers: ${membership.size}/${minWorkers} connected`);
      await membership.changed(opts.signal);
    }
    trainer.backendName = pool.backend();
    // The workers are ready (their backends compiled): from now on Node's own threads run on idle cores only.
    await quietBackgroundThreads(log);
    outcome = await trainer.run(opts.signal);
    if (outcome.status === 'finished') {
      const m = outcome.metrics;
      log.info({ event: 'run_finished', test_loss: m.test_loss, test_accuracy: m.test_accuracy, wall_seconds: m.wall_seconds, images_per_second: m.images_per_second, out: config.out }, `finished: test accuracy ${(m.test_accuracy * 100).toFixed(2)}%`);
    } else {
      log.info({ event: 'run_stopped', step: outcome.position.globalStep, epoch: outcome.position.epoch + 1, out: config.out }, `stopped at step ${outcome.position.globalStep}; continue with: ${resumeCommand(config.out, opts.commandLine)}`);
    }
    await observer?.finished?.(outcome);
    return outcome;
  } finally {
    await pool.stop(outcome?.status === 'finished' ? 'finished' : 'shutdown');
  }
}
