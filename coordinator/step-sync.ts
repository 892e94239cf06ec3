/**
 * What makes a step's result independent of the worker count for models with BatchNorm or
 * Dropout: each slice is told where its samples sit in the run (seed, global step, first sample:
 * dropout masks derive from these), and how BatchNorm normalizes.
 *
 * - 'sync' (the default, --sync-bn exact): every slice normalizes with the global batch's moments,
 *   exchanged in an ExchangeRound (bn-rounds.ts). All slices of the step run at once, one per
 *   worker; if a worker leaves mid-step, the round is aborted and the step recomputed over the
 *   workers that remain (the result does not depend on their number).
 * - 'local' (--sync-bn stats, or any worker whose backend cannot read synchronously, such as
 *   webgpu or a browser): each slice normalizes with its own moments, and slices hold at least
 *   BN_MIN_SLICE samples, so no slice's statistics degenerate.
 * Either way the coordinator updates the moving statistics once, from the slices' moments
 * (moving-stats.ts).
 */
import { buildModel, type ModelName } from '../common/models.ts';
import type { Logger } from '../common/logger.ts';
import type { TaskBatchNorm } from '../common/protocol.ts';
import { BnSyncAbortedError } from '../common/bn-sync-errors.ts';
import { bytesToFloats } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';
import type { Membership } from './membership.ts';
import type { TaskSpec } from './scheduler.ts';
import { bnRounds, type ExchangeRound } from './bn-rounds.ts';
import { updateMovingStats } from './moving-stats.ts';
import type { BnBoardHost } from '../common/bn-board.ts';
import { SYNC_READ_BACKENDS } from '../common/sync-read.ts';

/** The smallest slice in 'local' mode: below it, a slice's batch statistics are too noisy to normalize with. */
export const BN_MIN_SLICE = 8;


export interface StepPlan {
  /** How many slices to cut the batch into. */
  slices: number;
  mode: 'none' | 'sync' | 'local';
}

interface ModelTraits {
  batchNormChannels: number[];
  momentum: number;
  hasDropout: boolean;
}

function modelTraits(name: ModelName): ModelTraits {
  const model = buildModel(name);
  try {
    const bns = model.layers.filter((l) => l.getClassName() === 'BatchNormalization');
    return {
      batchNormChannels: bns.map((l) => l.trainableWeights[0].shape[0] as number),
      momentum: bns.length > 0 ? (bns[0].getConfig().momentum as number) : 0.99,
      hasDropout: model.layers.some((l) => l.getClassName() === 'Dropout'),
    };
  } finally {
    model.dispose();
  }
}

export class StepSync {
  readonly batchNormChannels: readonly number[];
  private readonly momentum: number;
  private readonly hasDropout: boolean;
  /** In-process: the threads exchange BatchNorm sums in shared memory (common/bn-board.ts). */
  private board: BnBoardHost | undefined;

  constructor(model: ModelName, private readonly opts: { seed: number; mode: 'exact' | 'stats'; stepTimeoutMs: number; log: Logger }) {
    const t = modelTraits(model);
    this.batchNormChannels = t.batchNormChannels;
    this.momentum = t.momentum;
    this.hasDropout = t.hasDropout;
  }

  /** Whether rounds meet on a shared-memory board (in-process), which takes one vector per group of a reduction grain. */
  get hasBoard(): boolean {
    return this.board !== undefined;
  }

  /** From now on, rounds open and end on `board` too (the in-process threads exchange there). */
  useBoard(board: BnBoardHost): void {
    this.board = board;
  }

  get hasBatchNorm(): boolean {
    return this.batchNormChannels.length > 0;
  }

  /** Whether slices are told their sample position (Dropout's masks; BatchNorm's exchange order). */
  get needsPosition(): boolean {
    return this.hasBatchNorm || this.hasDropout;
  }

  plan(batch: number, membership: Membership): StepPlan {
    const workers = Math.max(1, membership.size);
    if (!this.hasBatchNorm) return { slices: workers, mode: 'none' };
    const syncable = this.opts.mode === 'exact' && membership.live().every((w) => SYNC_READ_BACKENDS.has(w.backend));
    if (syncable) return { slices: workers, mode: 'sync' };
    return { slices: Math.max(1, Math.min(workers, Math.floor(batch / BN_MIN_SLICE))), mode: 'local' };
  }

  /** Tells each slice where its samples sit and how to normalize; opens the step's round if it needs one. */
  annotate(tasks: TaskSpec[], step: number, plan: StepPlan): ExchangeRound | undefined {
    const round = plan.mode === 'sync' && tasks.length > 1 ? bnRounds.start(tasks.length, this.batchNormChannels, this.board) : undefined;
    const batchNorm: TaskBatchNorm | undefined =
      plan.mode === 'sync' ? { mode: 'sync', round: round?.id ?? 0, timeoutMs: this.opts.stepTimeoutMs } : plan.mode === 'local' ? { mode: 'local' } : undefined;
    let first = 0;
    for (const t of tasks) {
      if (this.needsPosition) t.position = { seed: this.opts.seed >>> 0, step, firstSample: first };
      if (batchNorm) t.batchNorm = batchNorm;
      first += t.labels.length;
    }
    return round;
  }

  /**
   * Runs the step's tasks; with a round, the first worker to leave aborts it (every slice waiting
   * on the exchange is released) and `runStep` rejects with BN_SYNC_ABORTED: the caller recomputes
   * the step. The round is closed whatever happens.
   */
  async run<T>(round: ExchangeRound | undefined, membership: Membership, signal: AbortSignal | undefined, runStep: (signal: AbortSignal | undefined) => Promise<T>): Promise<T> {
    if (!round) return runStep(signal);
    const controller = new AbortController();
    const abort = (reason: string) => {
      round.abort(reason);
      controller.abort(new BnSyncAbortedError(`BatchNorm round ${round.id} abandoned: ${reason}`));
    };
    const onRunAbort = () => abort('training is stopping');
    signal?.addEventListener('abort', onRunAbort);
    const off = membership.onEvent((e) => {
      if (e.kind === 'left' || e.kind === 'evicted') abort(`worker ${e.workerId} ${e.kind} mid-step (${e.reason})`);
    });
    try {
      return await runStep(controller.signal);
    } catch (err) {
      if (round.aborted && !signal?.aborted) {
        this.opts.log.warn({ event: 'step_recomputed', round: round.id, reason: (err as Error).message }, `step recomputed: ${(err as Error).message}`);
        throw err instanceof BnSyncAbortedError ? err : new BnSyncAbortedError((err as Error).message);
      }
      throw err;
    } finally {
      off();
      signal?.removeEventListener('abort', onRunAbort);
      round.close();
    }
  }

  /** Moves the moving statistics (`moving`: the layout's non-trainable part) once, from the results' slice moments. */
  updateMovingStats(moving: Float32Array, results: readonly ResultMessage[]): void {
    this.moveStats(moving, results.filter((r) => r.stats).map((r) => ({ count: r.count, stats: bytesToFloats(r.stats!) })));
  }

  /** The same from the slices' statistics as arrays (the shared-memory step's slots). */
  moveStats(moving: Float32Array, slices: { count: number; stats: Float32Array }[]): void {
    if (!this.hasBatchNorm) return;
    updateMovingStats(moving, this.batchNormChannels, slices, this.momentum);
  }
}
