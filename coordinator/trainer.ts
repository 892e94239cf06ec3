/**
 * The step loop, the same for every transport: for each global batch, slice it over the live
 * workers, average their gradient sums by sample count, apply Adam, and move on. Evaluates after
 * each epoch, checkpoints, and writes the run folder.
 */
import { join } from 'node:path';
import type { Logger } from '../common/logger.ts';
import { Adam } from '../common/adam.ts';
import { buildModel, countParameters, modelSummary, type ParameterCounts } from '../common/models.ts';
import { weightLayout, initialWeights, type WeightLayout } from '../common/weights.ts';
import { permutation } from '../common/random.ts';
import { floatsToBytes } from '../common/codec.ts';
import type { DatasetSplits, ImageSet } from '../common/data/types.ts';
import { IMAGE_BYTES } from '../common/data/types.ts';
import { gatherImages } from '../common/data/split.ts';
import type { TrainConfig } from '../common/config.ts';
import { CheckpointError, ConfigError, DtrainError } from '../common/errors.ts';
import { SYNC_READ_BACKENDS } from '../common/sync-read.ts';
import type { Membership } from './membership.ts';
import { roundTripParts, runTasks, type SchedulerOptions, type TaskSpec, type WeightsSource, type WorkerStepStats } from './scheduler.ts';
import type { NextSlice } from './step-ahead.ts';
import { aggregateResults, alignedSliceSizes, StepAccumulator, sliceSizes, type StepAggregate } from './aggregate.ts';
import { GradientScreen, gradientsAgree, sliceNorm, summariesAgree, type SliceSummary } from './result-check.ts';
import { checkEvalResult } from './eval-check.ts';
import { robustGradient } from './robust-aggregate.ts';
import { allFinite, MAX_SAFE_GRADIENT, unsafeAt, unsafeGradient } from './adam-guard.ts';
import { stepTotals, type RunOutcome as StepsRun, type SharedStep } from './shared-step.ts';
import { refusalReason, runLength, runStepReports, stepsRunFor } from './step-runs.ts';
import { StepSync } from './step-sync.ts';
import { isBnSyncAborted } from '../common/bn-sync-errors.ts';
import type { ResultMessage } from '../common/protocol.ts';
import { saveCheckpoint, loadCheckpoint, type TrainingPosition } from './checkpoint.ts';
import { writeJson, type EpochRecord, type History, type Metrics } from './run-files.ts';
import type { BnBoardHost } from '../common/bn-board.ts';

export interface StepEvent {
  epoch: number;
  step: number;
  stepInEpoch: number;
  stepsInEpoch: number;
  /** Running means over the epoch so far. */
  loss: number;
  accuracy: number;
  /** This step's batch alone. */
  batchLoss: number;
  batchAccuracy: number;
  samples: number;
  workers: number;
  /** Where the step's time went, in ms: as in the `step` log line. */
  ms: number;
  computeMs: number;
  commMs: number;
  optimizerMs: number;
  /**
   * Over WebSockets, parts of commMs for the result the step waited for (scheduler.ts roundTripParts):
   * its frames' time on the way and its worker's time outside compute. The rest of commMs is the
   * coordinator's own (gathering, dispatch, bookkeeping) and any lead of the slowest compute over
   * that result's.
   */
  transferMs?: number;
  workerOverheadMs?: number;
  /**
   * In-process: compute of this step's slices that ran before the step began (a pass ahead, during
   * the step before: SharedStep.computedAheadMs), not counted in computeMs, which is the compute
   * inside the step.
   */
  aheadMs?: number;
  bytesIn: number;
  bytesOut: number;
  retries: number;
  /** Per worker that computed a slice: its compute time and the bytes it was sent and returned. */
  perWorker: WorkerStepStats[];
}

export interface TrainerHooks {
  onStep?(e: StepEvent): void;
  /** After each epoch's validation, with the epoch's record (whether or not plots are drawn). */
  onEpochEnd?(record: EpochRecord): void;
  /** 'debug' when a progress bar shows the steps instead (interactive terminals). Default 'info'. */
  stepLogLevel?: 'info' | 'debug';
  /** After each epoch's evaluation (and at the end with the test predictions). */
  onEpoch?(history: History, predictions?: Predictions): Promise<void> | void;
}

export interface Predictions {
  images: Uint8Array;
  labels: Uint8Array;
  predicted: Uint8Array;
  classNames: readonly string[];
}

export type RunOutcome = { status: 'finished'; metrics: Metrics } | { status: 'interrupted'; position: TrainingPosition };

export interface EvalOutcome {
  loss: number;
  accuracy: number;
  predictions: Uint8Array;
}

export class Trainer {
  readonly layout: WeightLayout;
  readonly parameters: ParameterCounts;
  readonly summary: string;
  private weights: Float32Array;
  private adam: Adam;
  private weightsVersion = 0;
  /** Steps' log lines and onStep calls, until the next step (or run of steps) is under way (reportStep). */
  private pendingReports: (() => void)[] = [];
  /** The first error a deferred report raised, until settleReport throws it. */
  private reportError: unknown;
  private history: History;
  private position: TrainingPosition = { epoch: 0, sampleOffset: 0, globalStep: 0, epochLossSum: 0, epochCorrect: 0, epochSamples: 0, epochSeconds: 0 };
  private readonly statsCount: number;
  /** Folds the message path's results as they arrive (buffers reused every step). */
  private readonly accumulator: StepAccumulator;
  /** Set for worker threads in this process: steps go through shared memory (coordinator/shared-step.ts). */
  private sharedStep: SharedStep | undefined;
  /** The validation split's evaluation tasks, made at its first evaluation (evalTasks). */
  private valTasks: TaskSpec[] | undefined;
  /** Judges each result before it counts (coordinator/result-check.ts). */
  private readonly screen: GradientScreen;
  /** Sample positions and BatchNorm exchange rounds: the same result at any worker count (step-sync.ts). */
  private readonly stepSync: StepSync;
  /** Whether this job's configuration lets the threads drive runs of steps (stepsRunFor; DTRAIN_STEP_RUNS read once). */
  private readonly runsFor: boolean;
  /** The epoch order last written to the run board (SharedStep.writeOrder). */
  private orderShared: Uint32Array | undefined;
  /** The last run of steps ended short: the next step is the ordinary step's (runSteps). */
  private stepNext = false;
  backendName = 'unknown';

  constructor(
    private readonly config: TrainConfig,
    private readonly data: DatasetSplits,
    private readonly membership: Membership,
    private readonly log: Logger,
    private readonly hooks: TrainerHooks = {},
  ) {
    const model = buildModel(config.model);
    this.layout = weightLayout(model);
    this.parameters = countParameters(model);
    this.summary = modelSummary(model);
    model.dispose();
    this.statsCount = this.layout.totalSize - this.layout.trainableSize;
    this.weights = initialWeights(this.layout, config.seed);
    this.adam = new Adam(this.layout.trainableSize, { learningRate: config.learningRate });
    this.accumulator = new StepAccumulator(this.layout.trainableSize, this.statsCount);
    this.screen = new GradientScreen(this.layout);
    this.stepSync = new StepSync(config.model, { seed: config.seed, mode: config.syncBatchNorm ?? 'exact', stepTimeoutMs: config.stepTimeoutMs, log });
    this.history = { model: config.model, epochs: [] };
    this.runsFor = stepsRunFor(config);
  }

  /** Where training stands now (a copy). */
  get currentPosition(): TrainingPosition {
    return { ...this.position };
  }

  /** True once every epoch has been trained (a resumed run may already be there). */
  get isFinished(): boolean {
    return this.position.epoch >= this.config.epochs;
  }

  get currentWeights(): Float32Array {
    this.sharedStep?.store(this.weights);
    return this.weights;
  }

  /**
   * Steps through shared memory from now on: the threads reduce and apply Adam, each on a stripe.
   * The weights and Adam state move into the shared memory when run() starts, and are copied back
   * for checkpoints and evaluations.
   */
  useSharedStep(shared: SharedStep): void {
    this.sharedStep = shared;
    // A thread waiting at a fused round's barrier gives up well before the scheduler's timeout could count the wait against it.
    shared.roundWaitMs = Math.max(1, Math.floor(this.config.stepTimeoutMs / 2));
    // BatchNorm's moving statistics move on this thread, from the slots' batch statistics, as on the message path.
    if (this.stepSync.hasBatchNorm) shared.movingStats = (moving, slices) => this.stepSync.moveStats(moving, slices);
  }

  /** In-process: synchronized BatchNorm exchanges through the threads' shared board (common/bn-board.ts), not messages. */
  useBnBoard(board: BnBoardHost): void {
    this.stepSync.useBoard(board);
  }

  /** Restores weights, optimizer and position from the run folder's checkpoint, if there is one. */
  async resume(): Promise<boolean> {
    const ckpt = await loadCheckpoint(this.config.out, this.config.model);
    if (!ckpt) return false;
    const saved = ckpt.state.config;
    for (const key of ['batchSize', 'batchPerWorker', 'seed', 'dataset', 'limitTrain'] as const) {
      if (saved[key] !== this.config[key]) {
        throw new CheckpointError(`Cannot resume: the checkpoint was made with ${key}=${String(saved[key])}, but this run has ${key}=${String(this.config[key])}. Resume with the same value, or use another --out folder.`);
      }
    }
    // The grain changes the arithmetic (not the result's meaning): a resume with another would not continue bit for bit.
    if ((saved.reduceGrain ?? 0) !== (this.config.reduceGrain ?? 0)) {
      throw new CheckpointError(`Cannot resume: the checkpoint was made with --reduce-grain ${saved.reduceGrain ?? 0}, but this run has ${this.config.reduceGrain ?? 0}. Resume with the same value, or use another --out folder.`);
    }
    // A checkpoint saved before Adam was guarded may hold an Infinity that would freeze its weights for good.
    if (!allFinite(ckpt.weights) || !allFinite(ckpt.adam.m) || !allFinite(ckpt.adam.v)) {
      throw new CheckpointError(`Cannot resume: the checkpoint in ${this.config.out} holds non-finite weights or optimizer state. Resume from an earlier copy, or start a new --out folder.`);
    }
    this.weights = ckpt.weights;
    this.adam.restore(ckpt.adam);
    this.position = ckpt.state.position;
    this.history = ckpt.state.history;
    this.weightsVersion = ckpt.state.weightsVersion + 1;
    this.log.info({ event: 'resumed', epoch: this.position.epoch + 1, step: this.position.globalStep, sampleOffset: this.position.sampleOffset }, `resumed from checkpoint at step ${this.position.globalStep}`);
    return true;
  }

  private weightsSource(): WeightsSource {
    return { version: this.weightsVersion, bytes: floatsToBytes(this.weights), trainableCount: this.layout.trainableSize };
  }

  private globalBatch(): number {
    const k = Math.max(1, this.membership.size);
    return this.config.batchPerWorker ? this.config.batchPerWorker * k : this.config.batchSize;
  }

  private gather(set: ImageSet, indices: Uint32Array): TaskSpec {
    const { images, labels } = gatherImages(set, indices);
    return { kind: 'train', images, labels, source: { split: 'train', indices } };
  }

  private async checkpoint(reason: string): Promise<void> {
    this.settleReport();
    const started = performance.now();
    this.sharedStep?.store(this.weights);
    const dir = await saveCheckpoint(this.config.out, {
      state: {
        format: '',
        model: this.config.model,
        weightCount: this.layout.totalSize,
        position: this.position,
        adamStep: this.adam.step,
        weightsVersion: this.weightsVersion,
        files: { model: '', weights: '', optimizer: '' },
        history: this.history,
        config: { ...this.config },
      },
      weights: this.weights,
      adam: this.adam.snapshot(),
    });
    // The epoch the checkpoint was taken in, 1-based: at an epoch's end the position already points at the next one.
    const epoch = reason === 'epoch-end' ? this.position.epoch : this.position.epoch + 1;
    this.log.info({ event: 'checkpoint', step: this.position.globalStep, epoch, reason, dir, ms: Math.round(performance.now() - started) }, `checkpoint at step ${this.position.globalStep}, epoch ${epoch} (${reason}): ${dir}`);
  }

  /**
   * A split's evaluation tasks, in chunks of evalBatchSize. The validation split's are made once per
   * run and reused every epoch (nothing changes them): its 10,000 images are 30 MB of copies, which
   * a fresh allocation faults in page by page at every epoch's end (~7,500 faults on the owning
   * thread, 14-40 µs each on the VMs measured).
   */
  private evalTasks(set: ImageSet): TaskSpec[] {
    const kept = this.valTasks;
    if (set === this.data.val && kept) return kept;
    const tasks: TaskSpec[] = [];
    for (let start = 0; start < set.count; start += this.config.evalBatchSize) {
      const end = Math.min(set.count, start + this.config.evalBatchSize);
      // Copies, not views: a view would carry the whole split's buffer to a worker thread.
      const task: TaskSpec = { kind: 'eval', images: set.images.slice(start * IMAGE_BYTES, end * IMAGE_BYTES), labels: set.labels.slice(start, end) };
      // Workers with local data get the sample range instead of the pixels.
      const split = set === this.data.val ? 'val' : set === this.data.test ? 'test' : undefined;
      if (split) task.source = { split, indices: Uint32Array.from({ length: end - start }, (_, i) => start + i) };
      tasks.push(task);
    }
    if (set === this.data.val) this.valTasks = tasks;
    return tasks;
  }

  /** Evaluates on a whole split, sharded over the workers in chunks of evalBatchSize. */
  async evaluate(set: ImageSet, signal?: AbortSignal): Promise<EvalOutcome> {
    this.sharedStep?.store(this.weights);
    const tasks = this.evalTasks(set);
    // Each result is checked before it is combined (eval-check.ts); a bad one is recomputed elsewhere.
    const check = (i: number, r: ResultMessage) => checkEvalResult(r, tasks[i].labels);
    const { results } = await runTasks(tasks, this.weightsSource(), this.membership, { stepTimeoutMs: this.config.stepTimeoutMs, log: this.log, signal, check });
    const predictions = new Uint8Array(set.count);
    let lossSum = 0;
    let correct = 0;
    let offset = 0;
    for (const r of results) {
      lossSum += r.lossSum;
      correct += r.correct;
      predictions.set(r.predictions!, offset);
      offset += r.count;
    }
    return { loss: lossSum / set.count, accuracy: correct / set.count, predictions };
  }

  /** Trains to the end, or until `signal` aborts (then checkpoints and reports where it stopped). */
  async run(signal?: AbortSignal): Promise<RunOutcome> {
    const counters: RunCounters = { started: performance.now(), steps: 0, images: 0 };
    this.checkReduceGrain();
    this.sharedStep?.load(this.weights, this.adam);
    try {
      while (this.position.epoch < this.config.epochs) {
        const stopped = await this.trainEpoch(counters, signal);
        if (stopped) return stopped;
      }
      return await this.finish(counters, signal);
    } finally {
      this.flushReport();
    }
  }

  /** A reduction grain needs the shared-memory step's float64 slots, the exact mean and synchronized BatchNorm. */
  private checkReduceGrain(): void {
    const { reduceGrain: grain = 0, aggregation = 'mean', syncBatchNorm = 'exact', batchPerWorker } = this.config;
    if (grain === 0) return;
    if (!Number.isInteger(grain) || grain < 0) throw new ConfigError(`--reduce-grain must be a whole number of samples (0: off), but got ${grain}.`);
    const refuse = (why: string): never => {
      throw new ConfigError(`--reduce-grain ${grain} ${why}`);
    };
    const shared = this.sharedStep;
    if (!shared) return refuse('needs the shared-memory step of `dtrain train` (float64 gradient slots); this run steps through messages.');
    if (shared.grain !== grain) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `The shared-memory step was set up with reduction grain ${shared.grain}, but the run has ${grain}.`, { expected: false });
    if (this.backendName !== 'unknown' && !SYNC_READ_BACKENDS.has(this.backendName)) refuse(`needs a backend that reads synchronously (${[...SYNC_READ_BACKENDS].join(', ')}) for its direct backward pass, but the threads run ${this.backendName}.`);
    if (aggregation !== 'mean') refuse(`needs --aggregation mean (the exact sum), but got ${aggregation}.`);
    if (this.stepSync.hasBatchNorm && syncBatchNorm !== 'exact') refuse(`needs --sync-bn exact (the global batch's statistics), but got ${syncBatchNorm}.`);
    if (this.stepSync.hasBatchNorm && this.membership.size > 1 && !this.stepSync.hasBoard) refuse('needs the threads\' BatchNorm board in shared memory, which exchanges one vector per group; this run exchanges through messages.');
    if (batchPerWorker && batchPerWorker % grain !== 0) refuse(`must divide --batch-per-worker ${batchPerWorker}: each thread's slice holds whole groups.`);
  }

  /** The step loop of one epoch, from where the position says, then its evaluation; returns an outcome only when stopped. */
  private async trainEpoch(counters: RunCounters, signal?: AbortSignal): Promise<RunOutcome | undefined> {
    const { config } = this;
    const train = this.data.train;
    const order = permutation(train.count, config.seed + 1 + this.position.epoch);
    const epochStarted = performance.now() - this.position.epochSeconds * 1000;
    const elapsed = () => (performance.now() - epochStarted) / 1000;
    while (this.position.sampleOffset < train.count) {
      if (signal?.aborted || (config.maxSteps > 0 && counters.steps >= config.maxSteps)) return this.interrupt(signal?.aborted ? 'shutdown' : 'max-steps', elapsed());
      // A run of steps the threads drive themselves, where it may go; else (or for what it left) one step.
      if ((await this.runSteps(order, counters, signal)) === 0 && !(await this.step(order, counters, signal))) continue; // abandoned: the loop top checkpoints
      if (config.checkpointEvery > 0 && this.position.globalStep % config.checkpointEvery === 0 && this.position.sampleOffset < train.count) {
        this.position.epochSeconds = elapsed();
        await this.checkpoint('every-n-steps');
      }
    }
    return this.endEpoch(elapsed(), signal);
  }

  /** Checkpoints where training stands and reports it stopped. */
  private async interrupt(reason: string, epochSeconds: number): Promise<RunOutcome> {
    this.position.epochSeconds = epochSeconds;
    await this.checkpoint(reason);
    return { status: 'interrupted', position: { ...this.position } };
  }

  /** One step: slice the next global batch over the workers, combine their results, update. False if abandoned. */
  private async step(order: Uint32Array, counters: RunCounters, signal?: AbortSignal): Promise<boolean> {
    // The previous step's report stays pending until this step's tasks are out; only its error, if one was raised, stops here.
    this.throwReportError();
    const train = this.data.train;
    const stepStarted = performance.now();
    const batch = Math.min(this.globalBatch(), train.count - this.position.sampleOffset);
    const indices = order.subarray(this.position.sampleOffset, this.position.sampleOffset + batch);
    const tasks: TaskSpec[] = [];
    let from = 0;
    const shared = this.sharedStep;
    const plan = this.stepSync.plan(batch, this.membership);
    const grain = this.config.reduceGrain ?? 0;
    for (const size of grain > 0 ? alignedSliceSizes(batch, plan.slices, grain) : sliceSizes(batch, plan.slices)) {
      const slice = indices.subarray(from, from + size);
      tasks.push(shared ? shared.gather(tasks.length, train, slice) : this.gather(train, slice));
      from += size;
    }
    const round = this.stepSync.annotate(tasks, this.position.globalStep, plan);
    // A pass ahead cannot take part in a BatchNorm exchange: never offered to slices with a BatchNorm mode.
    if (shared) shared.ahead.setNext(train, tasks.every((t) => !t.batchNorm) ? this.nextSlices(order, batch, tasks) : undefined);
    let outcome: TaskOutcome;
    const acc = this.accumulator;
    acc.reset(tasks.length);
    const checks = shared ? this.sharedChecks(tasks, shared) : this.resultChecks(tasks, acc);
    try {
      outcome = await this.stepSync.run(round, this.membership, signal, (s) => runTasks(tasks, this.weightsSource(), this.membership, { stepTimeoutMs: this.config.stepTimeoutMs, log: this.log, signal: s, ...checks }));
    } catch (err) {
      // Stopping, or the BatchNorm round lost a worker: the loop checkpoints, or recomputes the step.
      if (signal?.aborted || isBnSyncAborted(err)) return false;
      throw err;
    }
    const optStarted = performance.now();
    let agg: Pick<StepAggregate, 'count' | 'lossSum' | 'correct'>;
    if (shared) {
      agg = await this.applyShared(shared, outcome.results);
    } else {
      agg = this.applyResults(outcome.results, checks.onResult ? acc : undefined);
    }
    this.weightsVersion++;
    // A one-slot shared step's reduction and Adam ran in its thread, inside the compute command.
    const optimizerMs = performance.now() - optStarted + (shared?.fusedOptimizerMs ?? 0);
    this.position.sampleOffset += batch;
    this.position.globalStep++;
    this.position.epochLossSum += agg.lossSum;
    this.position.epochCorrect += agg.correct;
    this.position.epochSamples += agg.count;
    counters.steps++;
    counters.images += agg.count;
    this.reportStep(agg, outcome, performance.now() - stepStarted, optimizerMs);
    return true;
  }

  /**
   * Up to MAX_RUN_STEPS steps driven by the compute threads themselves (SharedStep.runSteps), where
   * the run allows them: the shared-memory step with a shared training set, no BatchNorm, the mean,
   * no reduction grain, a screen that has seen a step, and one slot per live thread. Returns the
   * steps committed (0: none ran, or the threads accepted none; the ordinary step goes next). A run
   * that ended short (a refused step, a failed slice, a lost thread, a shutdown) leaves the next
   * step to the ordinary step: it is not run again at once.
   */
  private async runSteps(order: Uint32Array, counters: RunCounters, signal?: AbortSignal): Promise<number> {
    const shared = this.sharedStep;
    const { config } = this;
    if (this.stepNext) {
      this.stepNext = false;
      return 0;
    }
    if (!shared?.runsSteps || !this.runsFor || !this.screen.hasHistory) return 0;
    const live = shared.liveThreads;
    // No thread left: the ordinary step says so (NoWorkersError) as it would anywhere.
    if (live.length === 0 || live.length !== this.membership.size) return 0;
    const batch = this.globalBatch();
    const steps = runLength({
      samplesLeft: this.data.train.count - this.position.sampleOffset,
      batch,
      stepsLeft: config.maxSteps > 0 ? config.maxSteps - counters.steps : Infinity,
      toCheckpoint: config.checkpointEvery > 0 ? config.checkpointEvery - (this.position.globalStep % config.checkpointEvery) : Infinity,
    });
    if (steps < 2) return 0;
    this.throwReportError();
    if (this.orderShared !== order) {
      shared.writeOrder(order);
      this.orderShared = order;
    }
    const counts = sliceSizes(batch, live.length);
    // A batch smaller than the thread count has fewer slices than threads: step by step.
    if (counts.length !== live.length) return 0;
    const positionSeed = this.stepSync.needsPosition ? config.seed >>> 0 : undefined;
    const size = this.membership.size;
    const release = this.membership.holdNews();
    try {
      return this.reportRun(await shared.runSteps({ steps, firstStep: this.position.globalStep, offset: this.position.sampleOffset, batch, counts, positionSeed, history: this.screen.history }, config.stepTimeoutMs, signal), steps, batch, counts, counters);
    } finally {
      // A thread lost during the run is told after the steps it committed before it left.
      if (this.membership.size !== size) this.flushReport();
      release();
    }
  }

  /** The run's committed steps, reported in order, and a refusal's line; returns how many it committed. */
  private reportRun(run: StepsRun, steps: number, batch: number, counts: number[], counters: RunCounters): number {
    const shared = this.sharedStep!;
    // Where it committed none, the ordinary step goes next anyway (runSteps returns 0).
    this.stepNext = run.steps.length > 0 && run.steps.length < steps;
    shared.fusedOptimizerMs = 0;
    shared.computedAheadMs = 0;
    for (const s of runStepReports(run, counts, this.screen, (i) => `thread-${i + 1}`)) {
      this.weightsVersion++;
      this.position.sampleOffset += batch;
      this.position.globalStep++;
      this.position.epochLossSum += s.totals.lossSum;
      this.position.epochCorrect += s.totals.correct;
      this.position.epochSamples += s.totals.count;
      counters.steps++;
      counters.images += s.totals.count;
      this.reportStep(s.totals, s.outcome, s.ms, s.optimizerMs, true);
    }
    const refused = refusalReason(run, counts, this.screen);
    // Rare: the run's step lines are written first, so the lines keep their order.
    if (refused !== undefined) this.flushReport();
    if (refused !== undefined) this.log.info({ event: 'steps_run_refused', step: this.position.globalStep + 1, reason: refused }, `step ${this.position.globalStep + 1} is taken again step by step: the threads running it would not accept it (${refused})`);
    return run.steps.length;
  }

  /**
   * The next step's slices, split as this step's `tasks` and at their sample positions one step on,
   * when it is as large as this one and in the same epoch (offered ahead: step-ahead.ts); else undefined.
   */
  private nextSlices(order: Uint32Array, batch: number, tasks: readonly TaskSpec[]): NextSlice[] | undefined {
    let from = this.position.sampleOffset + batch;
    if (from + batch > order.length || batch !== this.globalBatch()) return undefined;
    return tasks.map((t) => ({ indices: order.subarray(from, (from += t.labels.length)), position: t.position && { ...t.position, step: t.position.step + 1 } }));
  }

  /**
   * The message path's checks (result-check.ts): once the screen knows the scale of honest
   * gradients, each result is checked as it arrives and (with the mean) folded at once; before
   * that (the first step), the step's results are reviewed together and aggregated at the end.
   */
  private resultChecks(tasks: TaskSpec[], acc: StepAccumulator): Pick<SchedulerOptions, 'check' | 'review' | 'onResult' | 'agree' | 'onConfirmed'> {
    const screen = this.screen;
    const counts = tasks.map((t) => t.labels.length);
    screen.startStep();
    // An outlier is evidence, not proof: a second worker's agreeing gradient makes it count.
    const opinion = { agree: (_i: number, a: ResultMessage, b: ResultMessage, tol: number) => gradientsAgree(a, b, tol), onConfirmed: (_i: number, r: ResultMessage) => screen.confirm(sliceNorm(r)) };
    if (!screen.hasHistory) return { review: (results) => screen.review(results, counts), ...opinion };
    const check = (i: number, r: ResultMessage) => screen.check(r, counts[i]);
    if ((this.config.aggregation ?? 'mean') !== 'mean') return { check, ...opinion };
    return { check, onResult: (i, r) => acc.add(i, r), ...opinion };
  }

  /**
   * The shared-memory path's checks: the same screen, judging each slot from the sum of squares its
   * thread took (SharedStep.slice), so the owning thread makes no pass over the gradients.
   */
  private sharedChecks(tasks: TaskSpec[], shared: SharedStep): Pick<SchedulerOptions, 'check' | 'review' | 'onResult' | 'agree' | 'onConfirmed'> {
    const screen = this.screen;
    const counts = tasks.map((t) => t.labels.length);
    screen.startStep();
    // A recomputation overwrites its slot: each result's summary is kept for the second opinion.
    const seen = new WeakMap<ResultMessage, SliceSummary>();
    const summary = (i: number, r: ResultMessage) => seen.get(r) ?? seen.set(r, shared.slice(i, r)).get(r)!;
    const opinion = { agree: (_i: number, a: ResultMessage, b: ResultMessage, tol: number) => summariesAgree(seen.get(a)!, seen.get(b)!, tol), onConfirmed: (_i: number, r: ResultMessage) => screen.confirm(seen.get(r)!.norm) };
    if (!screen.hasHistory) return { review: (results) => screen.reviewSlices(results.map((r, i) => summary(i, r)), counts), ...opinion };
    return { check: (i, r) => screen.checkSlice(summary(i, r), counts[i]), ...opinion };
  }

  /** The shared-memory reduce and Adam, unless the step's gradient could make Adam's state non-finite. */
  private async applyShared(shared: SharedStep, results: ResultMessage[]): Promise<Pick<StepAggregate, 'count' | 'lossSum' | 'correct'>> {
    const bound = shared.gradientBound(results);
    if (!(bound <= MAX_SAFE_GRADIENT)) {
      this.log.error({ event: 'step_refused', step: this.position.globalStep + 1, bound, limit: MAX_SAFE_GRADIENT }, `step ${this.position.globalStep + 1} refused: the mean gradient may reach ${bound}, which could make Adam's state non-finite; the weights are unchanged`);
      return stepTotals(results);
    }
    const agg = await shared.apply(results, this.config.stepTimeoutMs);
    this.screen.commit();
    return agg;
  }

  /** Combines the accepted results and applies Adam, unless the gradient could make its state non-finite. */
  private applyResults(results: ResultMessage[], folded: StepAccumulator | undefined): StepAggregate {
    const rule = this.config.aggregation ?? 'mean';
    const agg = folded ? folded.finish() : aggregateResults(results, this.layout.trainableSize, this.statsCount);
    if (rule !== 'mean') agg.gradient = robustGradient(results, this.layout.trainableSize, rule);
    // The mean's division found it already; a robust rule's gradient is checked here.
    const unsafe = rule === 'mean' ? unsafeAt(agg.gradient, agg.unsafeIndex) : unsafeGradient(agg.gradient);
    if (unsafe) {
      this.log.error({ event: 'step_refused', step: this.position.globalStep + 1, index: unsafe.index, value: unsafe.value, limit: MAX_SAFE_GRADIENT }, `step ${this.position.globalStep + 1} refused: gradient value ${unsafe.index} is ${unsafe.value}, which would make Adam's state non-finite; the weights are unchanged`);
      return agg;
    }
    this.adam.apply(this.weights.subarray(0, this.layout.trainableSize), agg.gradient);
    this.stepSync.updateMovingStats(this.weights.subarray(this.layout.trainableSize), results);
    this.screen.commit();
    return agg;
  }

  /**
   * Whether a step's report waits until the next step is under way: where the shared-memory step's
   * threads leave the owning thread a core of its own (mlp's one thread on two cores), so the report
   * overlaps the thread's compute. Where every core has a compute thread (lenet and the CNNs on two
   * threads), a deferred report would take a core from one of them mid-step: measured slower
   * (docs/shared-step.md), so the report is written at once, as on the message path.
   */
  get defersReports(): boolean {
    return this.sharedStep?.ownerHasCore ?? false;
  }

  /**
   * The step's log line and the onStep hook. With defersReports they are written once the next step
   * is under way: the event is taken now, but the line and the hook (progress bar, metrics,
   * dashboard) run on the next turn of the event loop, after the next step's tasks have gone out, so
   * the compute thread does not wait for them. Everything that follows a step in the log
   * (checkpoints, evaluation, the end, an error) flushes it first (flushReport), so the lines keep
   * their order. `inRun`: a step of a run the threads drove (runSteps); the run's reports queue up
   * and are all written once the next run's commands are out, whatever defersReports says, since
   * the threads would otherwise wait on them.
   */
  private reportStep(agg: Pick<StepAggregate, 'count' | 'lossSum' | 'correct'>, outcome: TaskOutcome, ms: number, optimizerMs: number, inRun = false): void {
    const train = this.data.train;
    const stepsInEpoch = Math.ceil(train.count / this.globalBatch());
    const stepInEpoch = Math.ceil(this.position.sampleOffset / this.globalBatch());
    const event: StepEvent = {
      epoch: this.position.epoch + 1, step: this.position.globalStep, stepInEpoch, stepsInEpoch, loss: this.position.epochLossSum / this.position.epochSamples, accuracy: this.position.epochCorrect / this.position.epochSamples,
      batchLoss: agg.lossSum / agg.count, batchAccuracy: agg.correct / agg.count, samples: agg.count, workers: outcome.results.length,
      ms: round(ms), computeMs: round(outcome.stats.maxComputeMs), commMs: round(ms - outcome.stats.maxComputeMs - optimizerMs), optimizerMs: round(optimizerMs),
      bytesOut: outcome.stats.bytesSent, bytesIn: outcome.stats.perWorker.reduce((s, w) => s + w.bytesIn, 0), retries: outcome.stats.retries,
      perWorker: outcome.stats.perWorker,
    };
    if (this.sharedStep) event.aheadMs = round(this.sharedStep.computedAheadMs);
    const parts = roundTripParts(outcome.stats.last);
    if (parts) {
      event.transferMs = round(parts.transferMs);
      event.workerOverheadMs = round(parts.workerOverheadMs);
    }
    const slowest = outcome.stats.maxComputeMs;
    if (!inRun) this.flushReport();
    this.pendingReports.push(() => {
      this.log[this.hooks.stepLogLevel ?? 'info']({
        event: 'step', step: event.step, epoch: event.epoch, workers: event.workers, samples: event.samples, loss: event.batchLoss, accuracy: event.batchAccuracy,
        ms: event.ms, computeMs: event.computeMs, commMs: event.commMs, optimizerMs: event.optimizerMs, aheadMs: event.aheadMs, transferMs: event.transferMs, workerOverheadMs: event.workerOverheadMs,
        bytesOut: event.bytesOut, bytesIn: event.bytesIn, retries: event.retries,
      }, `step ${event.step}: loss ${event.batchLoss.toFixed(4)}, ${Math.round(ms)} ms (slowest worker computed ${Math.round(slowest)} ms)`);
      this.hooks.onStep?.(event);
    });
    // A run's reports all wait for the next run to be under way (Trainer.runSteps).
    if (inRun) {
      if (this.pendingReports.length === 1) setImmediate(() => this.flushReport());
    } else if (this.defersReports) setImmediate(() => this.flushReport());
    else this.settleReport();
  }

  /**
   * Writes the last step's report now if it is still pending (see reportStep). Never throws: an
   * error from the hook or the logger is kept, and settleReport throws it where the run can fail
   * with it (the next step, a checkpoint, the epoch's end), as it did when reports were inline.
   */
  private flushReport(): void {
    const reports = this.pendingReports;
    this.pendingReports = [];
    for (const report of reports) {
      try {
        report();
      } catch (err) {
        this.reportError ??= err;
      }
    }
  }

  /** flushReport, then throws the first error a report raised, if any. */
  private settleReport(): void {
    this.flushReport();
    this.throwReportError();
  }

  private throwReportError(): void {
    const err = this.reportError;
    this.reportError = undefined;
    if (err !== undefined) throw err;
  }

  /** Epoch end: evaluate on validation, record, checkpoint, draw. Returns an outcome only when stopped. */
  private async endEpoch(seconds: number, signal?: AbortSignal): Promise<RunOutcome | undefined> {
    this.settleReport();
    const { config, log } = this;
    const epoch = this.position.epoch;
    let val: EvalOutcome;
    try {
      val = await this.evaluate(this.data.val, signal);
    } catch (err) {
      if (!signal?.aborted) throw err;
      return this.interrupt('shutdown', seconds);
    }
    const record: EpochRecord = {
      epoch: epoch + 1,
      loss: this.position.epochLossSum / this.position.epochSamples,
      accuracy: this.position.epochCorrect / this.position.epochSamples,
      val_loss: val.loss,
      val_accuracy: val.accuracy,
      seconds: round(seconds),
      images_per_second: round(this.position.epochSamples / seconds),
    };
    this.history.epochs.push(record);
    this.hooks.onEpochEnd?.(record);
    log.info({ event: 'evaluated', split: 'validation', epoch: epoch + 1, loss: val.loss, accuracy: val.accuracy }, `validation: loss ${val.loss.toFixed(4)} - accuracy ${val.accuracy.toFixed(4)}`);
    // Slices whose thread had run the forward and backward pass before their command (step-ahead.ts),
    // one per thread and step; the field's name predates several threads' passes.
    const ahead = this.sharedStep?.ahead.enabled ? { steps_ahead: this.sharedStep.ahead.newHits() } : {};
    // Steps of one slot whose thread used the gradient where its backend held it (shared-step-server.ts).
    if (this.sharedStep) Object.assign(ahead, { steps_from_backend: this.sharedStep.newFromBackendSteps() });
    log.info({ event: 'epoch', ...record, ...ahead }, `epoch ${epoch + 1}/${config.epochs}: loss ${record.loss.toFixed(4)} - accuracy ${record.accuracy.toFixed(4)} - val_loss ${record.val_loss.toFixed(4)} - val_accuracy ${record.val_accuracy.toFixed(4)} (${seconds.toFixed(1)} s, ${Math.round(this.position.epochSamples / seconds)} img/s)`);
    this.position = { epoch: epoch + 1, sampleOffset: 0, globalStep: this.position.globalStep, epochLossSum: 0, epochCorrect: 0, epochSamples: 0, epochSeconds: 0 };
    await writeJson(config.out, 'history.json', this.history);
    await this.checkpoint('epoch-end');
    if (config.plotEveryEpoch) await this.hooks.onEpoch?.(this.history);
    return undefined;
  }

  /** After the last epoch: the test evaluation, metrics.json, the final pictures. */
  private async finish(counters: RunCounters, signal?: AbortSignal): Promise<RunOutcome> {
    const { config, data, log } = this;
    let test: EvalOutcome;
    try {
      test = await this.evaluate(data.test, signal);
    } catch (err) {
      if (!signal?.aborted) throw err;
      return { status: 'interrupted', position: { ...this.position } }; // the epoch-end checkpoint stands
    }
    log.info({ event: 'evaluated', split: 'test', loss: test.loss, accuracy: test.accuracy }, `test: loss ${test.loss.toFixed(4)} - accuracy ${test.accuracy.toFixed(4)}`);
    const wallSeconds = (performance.now() - counters.started) / 1000;
    const metrics: Metrics = {
      model: config.model,
      parameters: this.parameters,
      test_loss: test.loss,
      test_accuracy: test.accuracy,
      epochs: this.history.epochs.length,
      steps: this.position.globalStep,
      backend: this.backendName,
      workers: config.workers,
      wall_seconds: round(wallSeconds),
      images_per_second: round(counters.images / wallSeconds),
      dataset: data.source,
      config: { ...config },
      finished_at: new Date().toISOString(),
    };
    await writeJson(config.out, 'metrics.json', metrics);
    await writeJson(config.out, 'history.json', this.history);
    const shown = Math.min(50, data.test.count);
    await this.hooks.onEpoch?.(this.history, {
      images: data.test.images.subarray(0, shown * IMAGE_BYTES),
      labels: data.test.labels.subarray(0, shown),
      predicted: test.predictions.subarray(0, shown),
      classNames: data.classNames,
    });
    return { status: 'finished', metrics };
  }
}

/** Counts over this process's run (a resumed run starts them again). */
interface RunCounters {
  started: number;
  steps: number;
  images: number;
}

type TaskOutcome = Awaited<ReturnType<typeof runTasks>>;

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

