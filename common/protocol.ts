/**
 * Every message between coordinator and worker, declared once. Types only: no logic.
 * Tensors travel as raw little-endian float32 bytes (`Uint8Array`), never element by element.
 * Both transports (worker threads and WebSockets) carry exactly these messages.
 */
import type { ModelName } from './models.ts';
import type { WireDtype } from './wire-dtype.ts';

/** Bumped on any incompatible change; a worker of another version is refused with CLOSE_CODES.version. */
export const PROTOCOL_VERSION = 3; // 2: the token moved from the hello to the HTTP upgrade; 3: BatchNorm exchange, sample positions

export type TaskKind = 'train' | 'eval';

/** How the worker must turn raw uint8 pixels into model inputs; mean/std are float32 bytes. */
export type WirePreprocessing = { kind: 'scale' } | { kind: 'standardize'; mean: Uint8Array; std: Uint8Array };

// ---- worker -> coordinator -------------------------------------------------------------------

/** The token is not in the hello: it travels in the HTTP upgrade (`Authorization: Bearer`). */
export interface HelloMessage {
  type: 'hello';
  protocolVersion: number;
  /** A human name for logs, e.g. the hostname. */
  workerName: string;
  /**
   * The wire dtype this worker asks for (its --wire-dtype), or 'auto' for the coordinator's. Absent
   * (a worker that cannot decode narrow tensors, e.g. the browser worker): float32.
   */
  wireDtype?: WireDtype | 'auto';
  /** Fingerprint of the dataset this worker can read itself (--data-dir); it then gets indices, not pixels. */
  dataset?: string;
}

export interface ReadyMessage {
  type: 'ready';
  /** The tfjs backend the worker selected, e.g. "wasm". */
  backend: string;
}

export interface ResultMessage {
  type: 'result';
  taskId: number;
  count: number;
  lossSum: number;
  correct: number;
  /** Milliseconds the worker spent computing, for the coordinator's time breakdown. */
  computeMs: number;
  /**
   * WebSocket workers: milliseconds from the task frame's arrival to the result's encoding (decoding,
   * the hand-off to the compute thread and back, and computeMs). The coordinator's round trip less
   * this is the time the frames spent being encoded, sent, delivered and decoded.
   */
  workerMs?: number;
  /** Train tasks: gradient sums over the slice, trainable weights in layout order. */
  gradients?: Uint8Array;
  /**
   * Train tasks on models with BatchNorm: float32, per BatchNorm layer in the places of its moving
   * mean and moving variance, this slice's batch mean and biased variance. The coordinator combines
   * the slices (law of total variance) and updates the moving statistics.
   */
  stats?: Uint8Array;
  /** Eval tasks: the predicted class of each sample. */
  predictions?: Uint8Array;
}

export interface TaskFailedMessage {
  type: 'task_failed';
  taskId: number;
  code: string;
  message: string;
}

export type BatchNormPhase = 'forward' | 'backward';

/**
 * Synchronized BatchNorm: one slice's per-channel sums for one layer and phase, float64 LE. Forward:
 * [count, mean[C], M2[C]]; backward: [Σdy[C], Σdy·x̂[C]]. The coordinator answers with bn_totals once
 * every slice of the round has sent its own (see docs/batchnorm.md).
 */
export interface BnSumsMessage {
  type: 'bn_sums';
  round: number;
  taskId: number;
  /** The slice's first sample in the global batch: slices are combined in this order. */
  firstSample: number;
  /** BatchNorm layer index, in model order. */
  layer: number;
  phase: BatchNormPhase;
  sums: Uint8Array;
}

export type WorkerMessage = HelloMessage | ReadyMessage | ResultMessage | TaskFailedMessage | BnSumsMessage;

// ---- coordinator -> worker -------------------------------------------------------------------

export interface WelcomeMessage {
  type: 'welcome';
  protocolVersion: number;
  workerId: string;
  model: ModelName;
  preprocessing: WirePreprocessing;
  /** Total float32 values in the flat weights, so the worker can check every weights frame. */
  weightCount: number;
  /** The dtype of weights and gradients on this connection (absent: float32). See wire-dtype.ts. */
  wireDtype?: WireDtype;
  /** How many of the weights are trainable (sent in wireDtype); the rest (BatchNorm statistics) are float32. */
  trainableCount?: number;
  /** Present when the worker's dataset fingerprint matched: it gets sample indices into these splits. */
  localData?: LocalDataSpec;
}

/** What a worker needs to build exactly the coordinator's train/validation/test splits from its own files. */
export interface LocalDataSpec {
  fingerprint: string;
  seed: number;
  limitTrain?: number;
  limitTest?: number;
}

export type SplitName = 'train' | 'val' | 'test';

export interface TaskMessage {
  type: 'task';
  taskId: number;
  kind: TaskKind;
  /** Increases whenever the weights change; weights are omitted when the worker already has this version. */
  weightsVersion: number;
  weights?: Uint8Array;
  /** count × 3072 uint8 pixels, HWC; empty when `indices` are sent instead. */
  images: Uint8Array;
  labels: Uint8Array;
  /** For workers with local data: uint32 LE sample indices into `split` (the labels still travel, as a check). */
  indices?: Uint8Array;
  split?: SplitName;
  /** Train tasks: where the slice sits in the run; dropout masks derive from it. Absent: seed 0, step 0, first sample 0. */
  position?: SamplePosition;
  /** Train tasks: how BatchNorm normalizes. Absent: synchronized, with no exchange (a lone slice). */
  batchNorm?: TaskBatchNorm;
}

/** What a training slice says beyond its pixels: its task id, sample position and BatchNorm mode. */
export type SliceTask = Pick<TaskMessage, 'taskId' | 'position' | 'batchNorm'>;

export interface SamplePosition {
  seed: number;
  /** The global step, counted from the start of the run. */
  step: number;
  /** Index of the slice's first sample within the step's global batch. */
  firstSample: number;
}

/**
 * 'sync': the moments of the whole global batch, exchanged in `round` (0: a lone slice, nothing to
 * exchange); each wait for totals lasts at most `timeoutMs`. 'local': the slice's own moments, for
 * backends that cannot read tensors synchronously (webgpu).
 */
export type TaskBatchNorm = { mode: 'sync'; round: number; timeoutMs: number } | { mode: 'local' };

export interface ShutdownMessage {
  type: 'shutdown';
  reason: string;
}

/** The combined sums of every slice of `round` for one layer and phase; or, if the round was abandoned, why. */
export interface BnTotalsMessage {
  type: 'bn_totals';
  round: number;
  layer: number;
  phase: BatchNormPhase;
  /** float64 LE, the layout of the BnSumsMessage answered. Absent when `aborted` is set. */
  totals?: Uint8Array;
  aborted?: string;
}

export type CoordinatorMessage = WelcomeMessage | TaskMessage | ShutdownMessage | BnTotalsMessage;

/** WebSocket close codes. 4000-4999 are ours; the rest are the standard ones we rely on. */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  tooLarge: 1009,
  auth: 4001,
  version: 4002,
  badFrame: 4003,
  evicted: 4004,
  handshakeTimeout: 4005,
  /** The worker's --data-dir holds other files than the coordinator's dataset. */
  dataset: 4006,
  finished: 4010,
} as const;
