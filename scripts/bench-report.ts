/**
 * The shape of `scripts/bench.ts --json`: everything docs/BENCHMARKS.md is rendered from. Types
 * only. Every section says what produced its numbers (a command line or a function), so the
 * document can label each number with its source.
 */

import type { TorchSetup } from './torch-setup.ts';

export const BENCH_SCHEMA_VERSION = 1;

/** Median, 10th and 90th percentile of repeated measurements, and how many there were. */
export interface Quantiles {
  median: number;
  p10: number;
  p90: number;
  n: number;
}

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryBytes: number;
  node: string;
  platform: string;
  /** The tfjs backend the workers ran (from bench-compute or the workers' logs). */
  backend: string;
  tfjs?: string;
  loadAverageStart: number[];
  loadAverageEnd: number[];
}

// ---- 1. compute per worker process --------------------------------------------------------------

/** Images/s over repeated timed runs: the median run, the slowest and the fastest. */
export interface RunSpread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}

export interface ComputeRow {
  model: string;
  batch: number;
  /** Stock tfjs `model.fit` on wasm. */
  baseline: RunSpread;
  /** Our StepComputer.trainInto on wasm (StepComputer.train in reports before 2026-12-01). */
  ours: RunSpread;
  speedup: number;
}

export type ComputeSection =
  | { measured: true; command: string; seconds: number; rows: ComputeRow[] }
  | { measured: false; reason: string };

export interface TorchRow {
  model: string;
  batch: number;
  imagesPerSecond: RunSpread;
}

export type TorchSection =
  | { measured: true; command: string; version: string; threads: number; rows: TorchRow[]; setup?: TorchSetup }
  | { measured: false; reason: string };

// ---- 2. scaling over WebSockets -----------------------------------------------------------------

/** `global`: --batch-size 32 split over K workers. `per-worker`: --batch-per-worker 32, global 32·K. */
export type BatchMode = 'global' | 'per-worker';

/** One `step` event of the coordinator's log, as bench reads it. */
export interface StepSample {
  step: number;
  workers: number;
  samples: number;
  ms: number;
  computeMs: number;
  commMs: number;
  optimizerMs: number;
  bytesOut: number;
  bytesIn: number;
  /** Over WebSockets (since 2026-12-02): parts of commMs for the step's last result (trainer.ts StepEvent). */
  transferMs?: number;
  workerOverheadMs?: number;
  /** In-process (since 2026-12-03): compute of the step's slices that ran before it began (a pass ahead), outside computeMs and the step's time. */
  aheadMs?: number;
}

/** The measured steps of one run (after warm-up). Means add up: step = compute + comm + optimizer. */
export interface StepSummary {
  steps: number;
  samplesPerStep: number;
  /** Σ samples / Σ step time over the measured steps. */
  imagesPerSecond: number;
  stepMs: Quantiles;
  mean: { stepMs: number; computeMs: number; commMs: number; optimizerMs: number; transferMs?: number; workerOverheadMs?: number; aheadMs?: number };
  /** Median bytes per step, coordinator to workers and back. */
  bytesOut: number;
  bytesIn: number;
}

export interface ScalingRun {
  model: string;
  mode: BatchMode;
  /** The --batch-size or --batch-per-worker value. */
  batch: number;
  workers: number;
  parameters: number;
  warmupSteps: number;
  command: string;
  summary: StepSummary;
}

export type ScalingSection =
  | { measured: true; transport: string; runs: ScalingRun[] }
  | { measured: false; reason: string };

// ---- 3. where a step's time goes: the in-process costs inside "communication" -------------------

/**
 * Per-step costs measured in this process for frames of the same size as a run's: they split the
 * step events' communication time into codec, wire, hand-off, gather, and what is left.
 */
export interface MessageCosts {
  model: string;
  workers: number;
  samplesPerStep: number;
  /** Coordinator: msgpack-encode one task frame (weights, images, labels). */
  encodeTaskUs: Quantiles;
  /** Worker: decode and check one task frame. */
  decodeTaskUs: Quantiles;
  /** Worker: encode one result frame (gradient sums). */
  encodeResultUs: Quantiles;
  /** Coordinator: decode and check one result frame. */
  decodeResultUs: Quantiles;
  /** Worker: task to compute thread and result back (structured clone; MessageChannel round trip). */
  handOffUs: Quantiles;
  /**
   * Whether a worker hands this model's tasks to a compute thread (a model with BatchNorm) rather
   * than computing them on its socket's thread; where it does not, the hand-off is not on the step.
   * Absent from records before 2026-12-03, whose estimates counted the hand-off for every model.
   */
  computeThread?: boolean;
  /** A task frame out and a result frame back over a loopback WebSocket, both ends in this process. */
  wireUs: Quantiles;
  /** Coordinator: gather the step's images and labels by shuffled index. */
  gatherUs: Quantiles;
}

// ---- 4. coordinator cost ------------------------------------------------------------------------

export interface CoordinatorSection {
  adam: {
    parameters: number;
    warmup: number;
    us: Quantiles;
    /** A loop with Adam's reads and writes (gradient, weights, both moments) but none of its arithmetic. */
    memoryFloorUs: Quantiles;
    /** Which Adam ran: 'native' (the addon), 'simd' (WebAssembly) or 'scalar'; absent in runs before it was recorded (simd). */
    implementation?: string;
  };
  averaging: { workers: number; parameters: number; us: Quantiles; perWorkerUs: number }[];
  /** A result's whole gradient work on the message path, one worker: decode check, screen, fold, mean and guard, Adam (absent in older runs). */
  messagePathUs?: Quantiles;
}

// ---- 5. time to accuracy ------------------------------------------------------------------------

export interface EpochPoint {
  epoch: number;
  valAccuracy: number;
  /** Since the first step began: training, evaluation and checkpoints, not process start-up. */
  seconds: number;
}

export interface TimeToAccuracyRun {
  model: string;
  workers: number;
  mode: BatchMode;
  batch: number;
  target: number;
  maxEpochs: number;
  limitTrain: number;
  command: string;
  /** Process spawn to the first step (start-up, data, connections), not counted in `seconds`. */
  startupSeconds: number;
  reached: boolean;
  epochs?: number;
  steps?: number;
  seconds?: number;
  curve: EpochPoint[];
}

export type TimeToAccuracySection =
  | { measured: true; transport: string; runs: TimeToAccuracyRun[] }
  | { measured: false; reason: string };

// ---- the peers and `dtrain train` itself (issue 10) ---------------------------------------------

export interface TorchPeerRow {
  model: string;
  /** single: one process; ddp: DistributedDataParallel over `processes` processes (gloo, 127.0.0.1). */
  mode: 'single' | 'ddp';
  processes: number;
  threadsPerProcess: number;
  globalBatch: number;
  steps: number;
  seconds: number;
  imagesPerSecond: number;
  /** The process's CPU time over the timed steps (rank 0's for DDP); absent in older reports. */
  cpuSeconds?: number;
  minorFaultsPerStep?: number;
}

export type PeersSection =
  | { measured: true; command: string; version: string; blas: { buildInfo: string; loaded: string[]; openblas: boolean }; rows: TorchPeerRow[]; setup?: TorchSetup }
  | { measured: false; reason: string };

/** One `dtrain train` process from spawn to exit: an epoch with data loading and evaluation. */
export interface EndToEndRun {
  model: string;
  workers: number;
  trainImages: number;
  command: string;
  /** Spawn to exit. */
  wallSeconds: number;
  /** The epoch's training steps alone (history.json's seconds). */
  epochSeconds: number;
  /** Training images per second over the epoch (history.json). */
  imagesPerSecond: number;
  /** The same over a second epoch in the same process, where one ran (absent in older reports). */
  secondEpochImagesPerSecond?: number;
  /** Validation after the epoch: the last step to the epoch line. */
  validationSeconds: number;
  valAccuracy: number;
  /**
   * Images/s of every epoch run for this model, in the order run (rounds over all the models, so
   * that a machine's slow minutes hit every model alike); imagesPerSecond is their median, and the
   * other fields are the median run's. Absent in reports made before repeated runs.
   */
  repeats?: number[];
  /** The second epoch's images/s of the same runs, in the same order (where every run had one). */
  secondEpochRepeats?: number[];
  /**
   * PyTorch's best images/s for the model around this run (PeersPlan.endToEnd.pairedTorchSeconds):
   * the mean of its measurements just before and just after the run where both exist
   * (`pairedTorchBracket`), else the one just before (reports made before 2026-12-02 evening).
   */
  pairedTorch?: number;
  /** PyTorch's best just before and just after this run, where the bench measured both. */
  pairedTorchBracket?: [number, number];
  /** `pairedTorch` for each of `repeats`, in the same order (where every run had one). */
  pairedTorchRepeats?: number[];
  /** `pairedTorchBracket` for each of `repeats`, in the same order (where every run had one). */
  pairedTorchBracketRepeats?: [number, number][];
  /** Largest resident set of the process (VmHWM), bytes. */
  peakRssBytes: number;
}

export type EndToEndSection = { measured: true; runs: EndToEndRun[] } | { measured: false; reason: string };

/** In-process (worker threads, shared-memory step) runs at a fixed batch per worker. */
export interface InProcessRun {
  model: string;
  workers: number;
  batchPerWorker: number;
  command: string;
  /** The median round's run (the only one without rounds). */
  summary: StepSummary;
  /**
   * Each round's run, images/s, in order. A round runs one thread's bare compute (K=1 rows' bareRounds),
   * then every K of the model, back to back, so this machine's drift hits the figures a goal compares alike.
   */
  rounds?: number[];
  /** K=1 with rounds: one thread's bare compute (scripts/bench-compute-pair.ts, a process alone) just before each round's runs, images/s. */
  bareRounds?: number[];
}

export type InProcessSection = { measured: true; runs: InProcessRun[] } | { measured: false; reason: string };

/**
 * Two computing processes at once against one alone (scripts/bench-compute-pair.ts): what the
 * machine gave two computing cores in this run, with nothing of dtrain's step around the compute.
 */
export interface ComputePairRun {
  /** Whose compute: dtrain's StepComputer.trainInto on one thread, or PyTorch's one-thread training step (Adam included). */
  peer: 'dtrain' | 'torch';
  model: string;
  batch: number;
  seconds: number;
  /** Images/s of one process computing alone, per round. */
  alone: number[];
  /** Images/s of each of two processes computing at once, per round. */
  together: [number, number][];
  /** Per round: (together[0] + together[1]) / alone. */
  ratios: number[];
  /** The median of ratios. */
  ratio: number;
}

export type ComputePairSection = { measured: true; runs: ComputePairRun[] } | { measured: false; reason: string };

/** A thread's mean time per step in a step-ceiling run (scripts/bench-step-ceiling.ts), ms. */
export interface StepCeilingPart {
  /** The weights into the backend, the forward and backward pass, the gradient sums into the slot. */
  computeMs: number;
  /** The reduction and Adam over its stripe. */
  stripeMs: number;
  /** At the step's two barriers. */
  waitedMs: number;
}

/**
 * The ceiling of a synchronous step (scripts/bench-step-ceiling.ts): K threads doing the in-process
 * step's own work with no coordinating thread, or one thread's bare pass ("bare").
 */
export interface StepCeilingRun {
  model: string;
  batch: number;
  kind: 'bare' | 'step';
  threads: number;
  round: number;
  steps: number;
  /** The slowest thread's mean step, ms. */
  stepMs: number;
  imagesPerSecond: number;
  /** Per thread. */
  parts: StepCeilingPart[];
}

export type StepCeilingSection = { measured: true; plan: { threads: number[]; rounds: number; warmSeconds: number; seconds: number }; runs: StepCeilingRun[] } | { measured: false; reason: string };

/** The coordinating thread's own work per step (its event loop's active time), in-process, K threads. */
export interface CoordinatorWork {
  model: string;
  workers: number;
  steps: number;
  /** CPU time charged to the owning thread per step, ms (/proc/thread-self/schedstat). */
  cpuMsPerStep: number;
  /** Active time of the owning thread's event loop per step, ms (performance.eventLoopUtilization); includes preemption. */
  activeMsPerStep: number;
  stepMs: number;
  /**
   * CPU time per step of every thread of the process (/proc/self/task/<tid>/schedstat), ms: the
   * owning thread, the compute threads together, and Node's other threads together (its platform
   * pool's JIT compiles and GC help, libuv's pool). Absent from reports made before 2026-12-03.
   */
  threadsCpuMsPerStep?: { owner: number; compute: number; background: number };
  /** Cores the process could use. */
  cores?: number;
}

/** `note`: where the numbers came from when not from the run itself (a section re-measured after the run failed it). */
export type CoordinatorWorkSection = { measured: true; runs: CoordinatorWork[]; note?: string } | { measured: false; reason: string };

export interface MemorySample {
  step: number;
  rssBytes: number;
}

export interface MemoryRun {
  model: string;
  workers: number;
  steps: number;
  command: string;
  samples: MemorySample[];
  /** Median RSS over the first and the last tenth of the steps after the first 10%, bytes. */
  earlyRssBytes: number;
  lateRssBytes: number;
}

export type MemorySection = { measured: true; run: MemoryRun } | { measured: false; reason: string };

// ---- goals and the whole report -----------------------------------------------------------------

export interface GoalResult {
  id: 'scaling' | 'overhead' | 'adam' | 'peer' | 'inprocess-scaling' | 'inprocess-overhead' | 'coordinator-work' | 'memory';
  goal: string;
  /** undefined when the run did not measure what the goal needs. */
  met?: boolean;
  measured?: string;
  /** How far off, and why, from the breakdown; empty when met. */
  explanation: string;
}

export interface BenchReport {
  schema: number;
  date: string;
  quick: boolean;
  command: string;
  seconds: number;
  machine: MachineInfo;
  compute: ComputeSection;
  torch: TorchSection;
  scaling: ScalingSection;
  messageCosts: MessageCosts[];
  coordinator?: CoordinatorSection;
  timeToAccuracy: TimeToAccuracySection;
  /** Issue 10's sections; absent in reports made before them. */
  peers?: PeersSection;
  endToEnd?: EndToEndSection;
  inProcess?: InProcessSection;
  coordinatorWork?: CoordinatorWorkSection;
  memory?: MemorySection;
  /** Absent in reports made before it. */
  computePair?: ComputePairSection;
  /** Since 2026-12-03 (afternoon). */
  stepCeiling?: StepCeilingSection;
  goals: GoalResult[];
}
