/**
 * The worker's side of the protocol, independent of the transport: a welcome builds the model,
 * each task sets the weights (when they changed) and computes. Worker threads and WebSocket
 * workers both drive this class.
 */
import { StepComputer, type BackendGradientUse, type GradientTarget, type PreparedStep, type TrainOptions, type TrainResult } from './compute.ts';
import type { WeightsToken } from '../common/step-stripe.ts';
import { bytesToFloats, float64ToBytes, floatsToBytes } from '../common/codec.ts';
import type { BnSumsMessage, ResultMessage, SamplePosition, SliceTask, TaskMessage, WelcomeMessage, WirePreprocessing } from '../common/protocol.ts';
import type { Preprocessing } from '../common/data/preprocess.ts';
import { DtrainError } from '../common/errors.ts';
import { BnSyncUnsupportedError } from '../common/bn-sync-errors.ts';
import { backendCopiesUploads } from '../common/upload-scratch.ts';
import { SYNC_READ_BACKENDS } from '../common/sync-read.ts';
import { tf } from '../common/tf.ts';
import type { SharedResult } from './shared-result.ts';

export function preprocessingFromWire(p: WirePreprocessing): Preprocessing {
  if (p.kind === 'scale') return { kind: 'scale' };
  return { kind: 'standardize', mean: bytesToFloats(p.mean).slice(), std: bytesToFloats(p.std).slice() };
}

/**
 * Called when the first real step on a backend failed (the model was built, but computing did not
 * work, e.g. a GPU driver that cannot read back): switch to the next backend and resolve true, or
 * false when there is none. The session then rebuilds its model and retries the task.
 */
export type BackendFallback = (error: unknown) => Promise<boolean>;

export class WorkerSession {
  private computer: StepComputer | undefined;
  /** Whether a step has succeeded on this backend: after that, failures are the task's, not the backend's. */
  private backendProven = false;
  private lastWelcome: WelcomeMessage | undefined;

  constructor(private readonly fallback?: BackendFallback) {}

  private weightsVersion = -1;
  private welcomeKey = '';
  /** Whether the backend holds the weights of `weightsVersion` (a task may then omit them). */
  private hasWeights = false;
  /** Synchronized BatchNorm's blocking exchange (set by a compute thread; absent: no rounds). */
  bnExchange: ((request: BnSumsMessage, timeoutMs: number) => Float64Array) | undefined;

  /** Builds (or keeps) the model named in the welcome. A reconnect to the same job keeps the model. */
  welcome(msg: WelcomeMessage): void {
    this.lastWelcome = msg;
    const key = `${msg.model}:${msg.weightCount}:${msg.preprocessing.kind}`;
    if (this.computer && key === this.welcomeKey) {
      this.computer.setPreprocessing(preprocessingFromWire(msg.preprocessing));
      this.weightsVersion = -1;
      return;
    }
    this.computer?.dispose();
    this.computer = new StepComputer(msg.model, preprocessingFromWire(msg.preprocessing));
    if (this.computer.layout.totalSize !== msg.weightCount) {
      throw new DtrainError('DTRAIN_ERR_MODEL_MISMATCH', `The coordinator's ${msg.model} has ${msg.weightCount} weights, but this worker's has ${this.computer.layout.totalSize}.`);
    }
    this.welcomeKey = key;
    this.weightsVersion = -1;
  }

  /**
   * `into`: where a train task's gradients and statistics go when the caller reads the result before
   * the next task (worker/shared-result.ts); used where the backend keeps its tensors in this
   * thread's memory, so each gradient is copied straight out of it. Elsewhere (webgpu) the step
   * reads everything back at once, one device sync, into a new array.
   */
  run(task: TaskMessage, into?: SharedResult): Promise<ResultMessage> {
    return this.withFallback(() => this.compute(task, into));
  }

  /** Runs a step; if it is the first on this backend and the backend failed it, falls back and retries. */
  private async withFallback<T>(step: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        const result = await step();
        this.backendProven = true;
        return result;
      } catch (err) {
        // Our own typed errors (stale weights, bad sizes) are the task's fault, not the backend's.
        const welcome = this.lastWelcome;
        if (this.backendProven || !this.fallback || err instanceof DtrainError || !welcome) throw err;
        this.dispose(); // frees the model on the failed backend before it is released
        if (!(await this.fallback(err))) throw err;
        this.welcome(welcome);
      }
    }
  }

  private async compute(task: TaskMessage, into?: SharedResult): Promise<ResultMessage> {
    const computer = this.computer;
    if (!computer) throw new DtrainError('DTRAIN_ERR_NO_WELCOME', 'Expected a welcome before the first task.');
    const started = performance.now();
    if (task.weights) {
      // wasm copies the values into its heap, so the message's bytes (a clone, or the task arena's
      // shared ones) go in as they lie; the cpu backend's tensors keep the array they are made from,
      // so they get a copy of their own.
      const floats = bytesToFloats(task.weights);
      computer.setWeights(backendCopiesUploads() ? floats : floats.slice());
      this.weightsVersion = task.weightsVersion;
      this.hasWeights = true;
    } else if (task.weightsVersion !== this.weightsVersion || !this.hasWeights) {
      throw new DtrainError('DTRAIN_ERR_STALE_WEIGHTS', `Task ${task.taskId} needs weights version ${task.weightsVersion}, but this worker has ${this.weightsVersion}.`);
    }
    if (task.kind === 'train') {
      const r = into && SYNC_READ_BACKENDS.has(tf.getBackend()) ? await this.trainShared(computer, task, into) : await computer.train(task.images, task.labels, this.trainOptions(task));
      const msg: ResultMessage = { type: 'result', taskId: task.taskId, count: r.count, lossSum: r.lossSum, correct: r.correct, computeMs: performance.now() - started, gradients: floatsToBytes(r.gradientSum) };
      if (r.stats.length > 0) msg.stats = floatsToBytes(r.stats);
      return msg;
    }
    const r = await computer.evaluate(task.images, task.labels);
    return { type: 'result', taskId: task.taskId, count: r.count, lossSum: r.lossSum, correct: r.correct, computeMs: performance.now() - started, predictions: r.predictions };
  }

  /** `train`, its gradients and statistics written into the shared result instead of a new array. */
  private async trainShared(computer: StepComputer, task: TaskMessage, into: SharedResult): Promise<TrainResult> {
    const { layout } = computer;
    const target = into.target(layout.trainableSize, layout.totalSize - layout.trainableSize);
    const r = await computer.trainInto(task.images, task.labels, () => target, this.trainOptions(task));
    return { ...r, gradientSum: target.gradientSum, stats: target.stats };
  }

  /**
   * The shared-memory step's train: weights straight from shared memory into the backend (the one
   * copy), then one step whose gradient sums and statistics go straight into `target` (the slot;
   * StepComputer.trainInto). The next message task must bring its weights: this worker's version
   * is forgotten, since the shared weights are not versioned.
   */
  /**
   * `grain`: the run's reduction grain (common/reduce-grain.ts; 0: none), for float64 `target` sums.
   * `held`: the weight copy `weights` is; its upload is skipped if the backend holds that copy already.
   */
  trainWithInto(weights: Float32Array, images: Uint8Array, labels: Uint8Array, target: () => GradientTarget | BackendGradientUse | undefined, task?: SliceTask, grain = 0, held?: WeightsToken): Promise<Omit<TrainResult, 'gradientSum' | 'stats'>> {
    return this.withFallback(async () => this.withWeights(weights, held).trainInto(images, labels, target, { ...(task ? this.trainOptions(task) : {}), grain }));
  }

  /**
   * The forward and backward pass of a step whose command has not arrived yet (worker/step-ahead.ts),
   * on weights from shared memory; its gradients stay in the backend until `finishAhead`. Only on a
   * backend a step has already succeeded on (no fallback to try mid-way), for a slice with no
   * BatchNorm mode (`position`: its sample position, for Dropout's masks); undefined otherwise.
   */
  async trainAhead(weights: Float32Array, images: Uint8Array, labels: Uint8Array, held?: WeightsToken, position?: SamplePosition): Promise<PreparedStep | undefined> {
    if (!this.backendProven || !this.computer) return undefined;
    // The labels lie in an ahead buffer that a later offer rewrites: the pass keeps its own copy.
    // The options a command with this position and no BatchNorm mode trains with (trainWithInto).
    return this.withWeights(weights, held).prepareInto(images, labels.slice(), this.trainOptions({ taskId: 0, position }));
  }

  /**
   * Writes a step prepared by `trainAhead` into `target`, as trainWithInto would have; undefined
   * (nothing written, its tensors freed) when the model it was computed on is gone.
   */
  async finishAhead(prepared: PreparedStep, target: () => GradientTarget | BackendGradientUse | undefined): Promise<Omit<TrainResult, 'gradientSum' | 'stats'> | undefined> {
    if (prepared.computer !== this.computer) {
      this.discardAhead(prepared);
      return undefined;
    }
    return prepared.computer.finishInto(prepared, target);
  }

  discardAhead(prepared: PreparedStep): void {
    prepared.computer.discard(prepared);
  }

  private withWeights(weights: Float32Array, held?: WeightsToken): StepComputer {
    const computer = this.computer;
    if (!computer) throw new DtrainError('DTRAIN_ERR_NO_WELCOME', 'Expected a welcome before the first task.');
    if (!held || !computer.holds(held)) computer.setWeights(weights);
    this.weightsVersion = -1;
    this.hasWeights = false;
    return computer;
  }

  /**
   * Dropout masks from the task's sample position; BatchNorm as the task says, exchanging sums
   * through `bnExchange` when the task is part of a round (docs/batchnorm.md).
   */
  private trainOptions(task: SliceTask): TrainOptions {
    const bn = task.batchNorm;
    if (bn?.mode === 'local') return { position: task.position, batchNorm: { kind: 'local' } };
    if (!bn || bn.round === 0) return { position: task.position, batchNorm: { kind: 'sync' } };
    const exchange = this.bnExchange;
    if (!exchange) throw new BnSyncUnsupportedError(`Task ${task.taskId} asks for a BatchNorm exchange (round ${bn.round}), but this worker has no exchange channel.`);
    const firstSample = task.position?.firstSample ?? 0;
    return {
      position: task.position,
      batchNorm: {
        kind: 'sync',
        exchange: (layer, phase, local) =>
          exchange({ type: 'bn_sums', round: bn.round, taskId: task.taskId, firstSample, layer, phase, sums: float64ToBytes(local) }, bn.timeoutMs),
      },
    };
  }

  dispose(): void {
    this.computer?.dispose();
    this.computer = undefined;
  }
}
