/**
 * `dtrain train` (single machine, worker threads) and `dtrain summary`, plus the training flags
 * shared with `dtrain coordinator`. Every flag has a DTRAIN_* environment variable.
 *
 * The flags are defined from light modules only; what a command runs (TensorFlow.js, the trainer,
 * the HTTP server) is imported when its action starts, so --help and a mistyped flag answer at once.
 */
import { Command } from 'commander';
import { availableParallelism } from 'node:os';
import { AGGREGATIONS, BACKEND_CHOICES, MODEL_NAMES, TRAIN_DEFAULTS, type Aggregation, type BackendChoice, type TrainConfig } from '../../common/config.ts';
import { createLogger, type Logger } from '../../common/logger.ts';
import { ConfigError } from '../../common/errors.ts';
import { defaultRunDir } from '../run-files.ts';
import { envOption, integer, oneOf, positiveNumber, duration } from './flags.ts';
import { gcMode, warnGcMode } from '../../common/gc-mode.ts';
import { keepFreedMemory } from '../../common/freed-memory.ts';
import { makeOutputDir } from '../../common/output-dir.ts';
import { dirname } from 'node:path';

export function addTrainingOptions(cmd: Command): Command {
  const d = TRAIN_DEFAULTS;
  return cmd
    .addOption(envOption('--model <name>', `model: ${MODEL_NAMES.join(' | ')}`, 'DTRAIN_MODEL').default(d.model).argParser(oneOf('--model', MODEL_NAMES)))
    .addOption(envOption('--epochs <n>', 'epochs to train', 'DTRAIN_EPOCHS').default(d.epochs).argParser(integer('--epochs', 1, 10_000)))
    .addOption(envOption('--batch-size <n>', 'global batch size, as in Keras', 'DTRAIN_BATCH_SIZE').default(d.batchSize).argParser(integer('--batch-size', 1, 65_536)))
    .addOption(envOption('--batch-per-worker <n>', 'fix the batch per worker instead (global = K x n)', 'DTRAIN_BATCH_PER_WORKER').argParser(integer('--batch-per-worker', 1, 65_536)))
    .addOption(envOption('--dataset <name>', 'cifar10 | synthetic', 'DTRAIN_DATASET').default(d.dataset).argParser(oneOf('--dataset', ['cifar10', 'synthetic'] as const)))
    .addOption(envOption('--data-dir <dir>', 'folder holding cifar-10-batches-bin/ or cifar-10-binary.tar.gz', 'DTRAIN_DATA_DIR'))
    .addOption(envOption('--limit-train <n>', 'train on the first N training images (validation: N/4)', 'DTRAIN_LIMIT_TRAIN').argParser(integer('--limit-train', 1)))
    .addOption(envOption('--limit-test <n>', 'test on the first N test images', 'DTRAIN_LIMIT_TEST').argParser(integer('--limit-test', 1)))
    .addOption(envOption('--eval-batch-size <n>', 'images per evaluation chunk; the chunks of a split are shared among the workers', 'DTRAIN_EVAL_BATCH_SIZE').default(d.evalBatchSize).argParser(integer('--eval-batch-size', 1, 65_536)))
    .addOption(envOption('--backend <name>', `compute backend: ${BACKEND_CHOICES.join(' | ')}`, 'DTRAIN_BACKEND').default(d.backend).argParser(oneOf('--backend', BACKEND_CHOICES)))
    .addOption(envOption('--seed <n>', 'seed for initial weights, the 80/20 split and shuffles', 'DTRAIN_SEED').default(d.seed).argParser(integer('--seed', 0, 2 ** 31 - 1)))
    .addOption(envOption('--learning-rate <lr>', 'Adam learning rate', 'DTRAIN_LEARNING_RATE').default(d.learningRate).argParser(positiveNumber('--learning-rate')))
    .addOption(envOption('--out <dir>', 'run folder (default: runs/<model>-<time>)', 'DTRAIN_OUT'))
    .option('--resume', 'continue from the checkpoint in --out (env: DTRAIN_RESUME=1|0)', false)
    .option('--overwrite', 'replace the run --out already holds (its checkpoint, metrics, history and pictures) instead of refusing (env: DTRAIN_OVERWRITE=1|0)', false)
    .addOption(envOption('--checkpoint-every <steps>', 'also checkpoint every N steps (0: each epoch end only)', 'DTRAIN_CHECKPOINT_EVERY').default(d.checkpointEvery).argParser(integer('--checkpoint-every', 0)))
    .addOption(envOption('--step-timeout <seconds>', 'evict a worker whose task takes longer', 'DTRAIN_STEP_TIMEOUT').default(d.stepTimeoutMs / 1000).argParser((v) => duration('--step-timeout', 's')(v) / 1000))
    .addOption(envOption('--aggregation <rule>', 'combine the slices\' gradients by mean (exact), trimmed-mean or median (robust to a few bad workers; see docs/reliability.md)', 'DTRAIN_AGGREGATION').default('mean').argParser(oneOf('--aggregation', AGGREGATIONS)))
    .addOption(envOption('--sync-bn <mode>', 'BatchNorm over several workers: exact (the global batch\'s statistics, exchanged every step) or stats (each slice\'s own, slices of >= 8); see docs/batchnorm.md', 'DTRAIN_SYNC_BN').default('exact').argParser(oneOf('--sync-bn', ['exact', 'stats'] as const)))
    .addOption(envOption('--max-steps <n>', 'stop (with a checkpoint) after N steps in this run; 0: no limit', 'DTRAIN_MAX_STEPS').default(d.maxSteps).argParser(integer('--max-steps', 0)))
    .option('--no-plots', 'do not render loss/accuracy PNGs after every epoch (env: DTRAIN_NO_PLOTS=1|0)')
    .addOption(envOption('--log-level <level>', LOG_LEVELS.join(' | '), 'DTRAIN_LOG_LEVEL').default('info').argParser(oneOf('--log-level', LOG_LEVELS)))
    .addOption(envOption('--log-file <path>', 'write JSON logs to this file instead of stdout', 'DTRAIN_LOG_FILE'));
}

interface TrainingFlags {
  model: TrainConfig['model'];
  epochs: number;
  batchSize: number;
  batchPerWorker?: number;
  dataset: TrainConfig['dataset'];
  dataDir?: string;
  limitTrain?: number;
  limitTest?: number;
  evalBatchSize: number;
  backend: BackendChoice;
  seed: number;
  learningRate: number;
  out?: string;
  resume: boolean;
  overwrite?: boolean;
  checkpointEvery: number;
  stepTimeout: number;
  aggregation: Aggregation;
  syncBn: 'exact' | 'stats';
  maxSteps: number;
  plots: boolean;
  logLevel: string;
  logFile?: string;
}

/**
 * A boolean environment variable, read by us rather than commander, which counts any value
 * (even "0") as set. Unset gives undefined; anything but the usual spellings is refused.
 */
export function envBool(name: string, env: NodeJS.ProcessEnv = process.env): boolean | undefined {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return undefined;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw new ConfigError(`${name} must be 1/true/yes/on or 0/false/no/off, got "${raw}".`);
}

export function trainConfigFromFlags(flags: TrainingFlags, workers: number): TrainConfig {
  // A flag on the command line wins over the environment.
  const resume = flags.resume || (envBool('DTRAIN_RESUME') ?? false);
  const plots = flags.plots === false ? false : !(envBool('DTRAIN_NO_PLOTS') ?? false);
  if (resume && !flags.out) throw new ConfigError('--resume needs --out RUN_DIR: the run folder whose checkpoint to continue.');
  const overwrite = flags.overwrite || (envBool('DTRAIN_OVERWRITE') ?? false);
  if (resume && overwrite) throw new ConfigError('--resume and --overwrite contradict each other: continue the run in --out, or replace it, not both.');
  return {
    ...TRAIN_DEFAULTS,
    model: flags.model,
    epochs: flags.epochs,
    batchSize: flags.batchSize,
    batchPerWorker: flags.batchPerWorker,
    workers,
    dataset: flags.dataset,
    dataDir: flags.dataDir,
    limitTrain: flags.limitTrain,
    limitTest: flags.limitTest,
    evalBatchSize: flags.evalBatchSize,
    backend: flags.backend,
    seed: flags.seed,
    learningRate: flags.learningRate,
    out: flags.out ?? defaultRunDir(flags.model),
    resume,
    overwrite,
    checkpointEvery: flags.checkpointEvery,
    stepTimeoutMs: flags.stepTimeout * 1000,
    maxSteps: flags.maxSteps,
    aggregation: flags.aggregation,
    syncBatchNorm: flags.syncBn,
    plotEveryEpoch: plots,
  };
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function loggerFromFlags(flags: { logLevel: string; logFile?: string }, base: Record<string, unknown>): Logger {
  const file = flags.logFile;
  if (file === undefined) return createLogger({ level: flags.logLevel, base });
  // The folder is made as --out's is; the file itself must be one the process can open for appending.
  makeOutputDir(dirname(file), '--log-file', { checkWritable: false });
  try {
    return createLogger({ level: flags.logLevel, destination: file, base });
  } catch (err) {
    throw new ConfigError(`--log-file ${file}: cannot open it for writing (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
}

export class ShutdownRequest extends Error {
  constructor(readonly signal: NodeJS.Signals) {
    super(`received ${signal}`);
  }
}

/** 0 for a run that ended by itself; 128 + the signal number (130, 143) after a clean shutdown. */
export function exitCodeAfter(signal: AbortSignal): number {
  if (!signal.aborted) return 0;
  return signal.reason instanceof ShutdownRequest && signal.reason.signal === 'SIGTERM' ? 143 : 130;
}

/** SIGINT/SIGTERM abort the job (which checkpoints); a second signal exits at once. */
export function shutdownSignal(log: Logger): AbortSignal {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      log.warn({ event: 'shutdown_forced', signal: sig }, 'second signal: exiting now');
      process.exit(130);
    }
    log.info({ event: 'shutdown_requested', signal: sig }, `${sig}: abandoning the current step and writing a checkpoint`);
    controller.abort(new ShutdownRequest(sig));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return controller.signal;
}

export function registerTrainCommand(program: Command): void {
  const cmd = program.command('train').description('train a model on this machine, with K worker threads (no network)');
  cmd.addOption(envOption('--workers <k>', 'worker threads (default: one per core, fewer when a step has too little arithmetic to share; see run_started)', 'DTRAIN_WORKERS').argParser(integer('--workers', 1, 256)));
  cmd.addOption(envOption('--port <port>', 'serve the live dashboard, /api/status and /metrics on this port (default: no HTTP)', 'DTRAIN_PORT').argParser(integer('--port', 0, 65535)));
  cmd.addOption(envOption('--host <addr>', 'address the dashboard listens on, with --port', 'DTRAIN_HOST').default('127.0.0.1'));
  cmd.addOption(envOption('--reduce-grain <samples>', 'sum gradients per group of N samples, in float64: the same weights at any --workers, bit for bit (0: off; see docs/batchnorm.md)', 'DTRAIN_REDUCE_GRAIN').default(0).argParser(integer('--reduce-grain', 0, 65_536)));
  addTrainingOptions(cmd).action(async (flags: TrainingFlags & { workers?: number; port?: number; host: string; reduceGrain: number }) => {
    const [{ defaultThreadCount }, { stepsRunFor }, { runJob }, { prestartThreads, startInProcessWorkers }, { stepsFromBackend }, { warmUpFor }, { EpochProgress }, { createRunWeb, logDashboardUrl }, { adapterName }] = await Promise.all([
      import('../thread-count.ts'),
      import('../step-runs.ts'),
      import('../job.ts'),
      import('../inprocess.ts'),
      import('../shared-step.ts'),
      import('../../worker/warm-up.ts'),
      import('./progress.ts'),
      import('../http/serve.ts'),
      import('../../common/webgpu.ts'),
    ]);
    const threadChoice = flags.workers === undefined ? defaultThreadCount(flags.model, flags.batchSize, flags.batchPerWorker, availableParallelism(), stepsRunFor(flags)) : undefined;
    const workers = flags.workers ?? threadChoice!.threads;
    const config = { ...trainConfigFromFlags(flags, workers), reduceGrain: flags.reduceGrain };
    const tty = process.stdout.isTTY === true && !flags.logFile;
    const log = loggerFromFlags(flags, { role: 'trainer' });
    // Before run_started: a signal from then on is a clean shutdown, not Node's default exit.
    const signal = shutdownSignal(log);
    log.info({ event: 'run_started', model: config.model, epochs: config.epochs, batchSize: config.batchSize, workers, workersReason: threadChoice?.reason ?? '--workers', dataset: config.dataset, out: config.out, ...gcMode(), ...keepFreedMemory() }, `training ${config.model} with ${workers} worker thread(s) into ${config.out}${threadChoice ? ` (${threadChoice.reason})` : ''}`);
    warnGcMode(log);
    const cores = availableParallelism();
    if (workers > cores) log.warn({ event: 'threads_oversubscribed', workers, cores }, `--workers ${workers} on ${cores} cores: the threads share cores, so start-up and every step are slower than with ${cores}`);
    const progress = tty ? new EpochProgress(config.epochs) : undefined;
    const web = flags.port === undefined ? undefined : createRunWeb(config, 'threads', log);
    if (web) logDashboardUrl(log, flags.host, await web.frontend.listen(flags.port!, flags.host));
    // The threads load their backend and warm up while this thread loads the data (worker/warm-up.ts).
    let threads: ReturnType<typeof prestartThreads> | undefined = prestartThreads(workers, config.backend, warmUpFor(config.model, config.batchPerWorker ?? Math.ceil(config.batchSize / workers), stepsFromBackend(workers, config.reduceGrain)));
    const outcome = await runJob({
      config,
      log,
      signal,
      commandLine: process.argv.slice(2),
      observer: web?.monitor,
      hooks: { onStep: (e) => progress?.update(e), stepLogLevel: progress ? 'debug' : 'info' },
      startWorkers: async (membership, welcome, expect, trainSet) => {
        const sharedMemory = { trainable: expect.gradientCount, stats: expect.statsCount, slotSamples: config.batchPerWorker ?? config.batchSize, grain: config.reduceGrain, trainSet };
        const prestarted = threads;
        threads = undefined; // from here on, the pool stops them
        const started = await startInProcessWorkers(membership, { workers, backend: config.backend, welcome, log, sharedMemory, batchNormChannels: expect.batchNormChannels, threads: prestarted, signal });
        const sel = started.backend;
        log.info({ event: 'backend_selected', backend: sel.name, source: sel.source, skipped: sel.skipped, kernels: sel.kernels, adapter: sel.adapter, warmUpSteps: started.warmedUp }, `backend: ${sel.name} (${sel.source}${sel.adapter ? `, adapter ${adapterName(sel.adapter)}` : ''})${sel.kernels ? `, kernels: ${sel.kernels.set}` : ''}${sel.skipped.length ? `; skipped ${sel.skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}` : ''}`);
        return { backend: () => sel.name, stop: started.stop, sharedStep: started.sharedStep, bnBoard: started.bnBoard };
      },
    }).finally(() => Promise.all((threads ?? []).map((t) => t.terminate().catch(() => {}))));
    progress?.stop();
    await web?.close();
    process.exitCode = outcome.status === 'interrupted' ? exitCodeAfter(signal) : 0;
  });
}

export function registerSummaryCommand(program: Command): void {
  program
    .command('summary')
    .description('print the Keras-style summary of a model')
    .addOption(envOption('--model <name>', `model: ${MODEL_NAMES.join(' | ')}`, 'DTRAIN_MODEL').default(TRAIN_DEFAULTS.model).argParser(oneOf('--model', MODEL_NAMES)))
    .action(async (flags: { model: TrainConfig['model'] }) => {
      const { buildModel, modelSummary } = await import('../../common/models.ts');
      const m = buildModel(flags.model);
      process.stdout.write(modelSummary(m) + '\n');
      m.dispose();
    });
}
