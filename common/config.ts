/**
 * Every size and time limit, and every training option, in one typed place with its default.
 * CLI flags and environment variables are parsed into these types at the boundary (coordinator/cli).
 */

// The names each choice flag accepts. They live here, away from the code behind them, so that the
// command line can define its flags (and answer --help) without loading TensorFlow.js.
export const MODEL_NAMES = ['mlp', 'lenet', 'cnn-dropout', 'cnn-bn'] as const;
export type ModelName = (typeof MODEL_NAMES)[number];
export const BACKEND_CHOICES = ['auto', 'tensorflow', 'webgpu', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];
/** How the slices' gradients combine (coordinator/robust-aggregate.ts). */
export const AGGREGATIONS = ['mean', 'trimmed-mean', 'median'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

export interface NetLimits {
  /** Largest frame either side accepts; checked by ws before the body is buffered. Default 256 MiB. */
  maxPayloadBytes: number;
  /** Ping interval; a peer that has not answered a ping by the next one is dropped (so within two intervals). Default 2 s. */
  heartbeatIntervalMs: number;
  /** Time a new connection has to send its hello. Default 10 s. */
  handshakeTimeoutMs: number;
  /** Time a welcomed worker has to build its model and say ready; a hung compute thread is dropped. Default 120 s. */
  readyTimeoutMs: number;
  /** First and largest delay between a worker's reconnect attempts. Defaults 250 ms and 5 s. */
  reconnectMinMs: number;
  reconnectMaxMs: number;
}

export const NET_DEFAULTS: NetLimits = {
  maxPayloadBytes: 256 * 1024 * 1024,
  heartbeatIntervalMs: 2000,
  handshakeTimeoutMs: 10_000,
  readyTimeoutMs: 120_000,
  reconnectMinMs: 250,
  reconnectMaxMs: 5000,
};

export type DatasetName = 'cifar10' | 'synthetic';

export interface TrainConfig {
  model: ModelName;
  epochs: number;
  /** Global batch, as in Keras; ignored when batchPerWorker is set. */
  batchSize: number;
  /** Fixes the batch per worker instead (global batch = K × this), for scaling runs. */
  batchPerWorker?: number;
  /** In-process worker threads (train) or the workers to wait for (coordinator). */
  workers: number;
  dataset: DatasetName;
  dataDir?: string;
  limitTrain?: number;
  limitTest?: number;
  backend: BackendChoice;
  /** Seeds the weight initialisation, the 80/20 split and every epoch's shuffle. */
  seed: number;
  learningRate: number;
  out: string;
  resume: boolean;
  /** A fresh run may replace the run `out` holds (coordinator/earlier-run.ts, clearEarlierRun). */
  overwrite?: boolean;
  /** Also checkpoint every N steps (0: only at each epoch end). */
  checkpointEvery: number;
  /** A worker whose task takes longer is evicted and its slice recomputed. */
  stepTimeoutMs: number;
  /** Samples per evaluation task. */
  evalBatchSize: number;
  /** Render loss/accuracy/predictions PNGs after every epoch, not only at the end. */
  plotEveryEpoch: boolean;
  /** Stop after this many steps in total (for tests and demos); 0 means run all epochs. */
  maxSteps: number;
  /** How the slices' gradients are combined: the exact mean, or a robust rule for untrusted pools (coordinator/robust-aggregate.ts). Default mean. */
  aggregation?: 'mean' | 'trimmed-mean' | 'median';
  /**
   * BatchNorm over several workers: 'exact' normalizes with the whole global batch's moments and
   * exchanges sums in every step (docs/batchnorm.md); 'stats' with each slice's own, slices of at
   * least 8 samples. Both update the moving statistics exactly. Default exact.
   */
  syncBatchNorm?: 'exact' | 'stats';
  /**
   * Reduction grain in samples (common/reduce-grain.ts): gradients summed per group of this many
   * samples and added in float64, so the result does not depend on the worker count, bit for bit.
   * 0 or absent: none. `dtrain train` only (the shared-memory step).
   */
  reduceGrain?: number;
}

export const TRAIN_DEFAULTS: TrainConfig = {
  model: 'lenet',
  epochs: 20,
  batchSize: 32,
  workers: 0, // 0: one per core
  dataset: 'cifar10',
  backend: 'auto',
  seed: 42,
  learningRate: 0.001,
  out: '',
  resume: false,
  checkpointEvery: 0,
  stepTimeoutMs: 60_000,
  evalBatchSize: 500,
  plotEveryEpoch: true,
  maxSteps: 0,
};
