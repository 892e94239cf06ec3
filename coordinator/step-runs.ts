/**
 * The trainer's side of runs of steps the compute threads drive themselves (SharedStep.runSteps,
 * worker/step-run.ts): when a run may go, how long it is, and each committed step's report, made
 * from the threads' records after the owner's screen has judged them again as the threads did.
 */
import { DtrainError } from '../common/errors.ts';
import { MODEL_SPECS, type ModelName } from '../common/models.ts';
import { MAX_RUN_STEPS } from '../common/step-run.ts';
import type { ResultMessage } from '../common/protocol.ts';
import { envBool } from './cli/train.ts';
import { stepTotals, type RunOutcome } from './shared-step.ts';
import type { ScheduleStats } from './scheduler.ts';
import type { GradientScreen } from './result-check.ts';
import { judgeStep, screenWithHistory, slotSummaries } from './step-judge.ts';

/** Whether DTRAIN_STEP_RUNS leaves runs of steps on (the default; 0 turns them off, every step then goes through the owner). */
export function stepRunsOn(env: NodeJS.ProcessEnv = process.env): boolean {
  return envBool('DTRAIN_STEP_RUNS', env) ?? true;
}

/**
 * Whether the compute threads of `dtrain train` will drive runs of steps for a job so configured:
 * runs on, no BatchNorm, the mean, no reduction grain (the parts of Trainer.runSteps' conditions that
 * the configuration decides before any thread starts).
 */
export function stepsRunFor(config: { model: ModelName; aggregation?: string; reduceGrain?: number }, env: NodeJS.ProcessEnv = process.env): boolean {
  return stepRunsOn(env) && !MODEL_SPECS[config.model].batchNorm && (config.aggregation ?? 'mean') === 'mean' && (config.reduceGrain ?? 0) === 0;
}

/** Where the run may start and what bounds it. */
export interface RunRoom {
  /** Samples left in the epoch from the current offset. */
  samplesLeft: number;
  batch: number;
  /** Steps left before --max-steps (Infinity: none). */
  stepsLeft: number;
  /** Steps left before the next --checkpoint-every checkpoint (Infinity: none). */
  toCheckpoint: number;
}

/** How many steps the next run covers: whole batches only, up to MAX_RUN_STEPS, stopping at max-steps and checkpoints; 0 or 1 means no run. */
export function runLength(room: RunRoom): number {
  return Math.max(0, Math.min(MAX_RUN_STEPS, Math.floor(room.samplesLeft / room.batch), room.stepsLeft, room.toCheckpoint));
}

/**
 * Why the threads did not accept the step after the run's last committed one, judged again on a copy
 * of the owner's `screen` (left as it is); undefined where the run did not stop on a refusal.
 */
export function refusalReason(run: RunOutcome, counts: readonly number[], screen: GradientScreen): string | undefined {
  if (!run.refused) return undefined;
  return judgeStep(screenWithHistory(screen.history), slotSummaries(run.refused, counts));
}

/** A committed step as the trainer reports it. */
export interface RunStep {
  totals: { count: number; lossSum: number; correct: number };
  outcome: { results: ResultMessage[]; stats: ScheduleStats };
  ms: number;
  optimizerMs: number;
}

/**
 * The run's committed steps, in order, each judged again on the owner's `screen` (which then holds
 * their norms, as if the owner had stepped them). A step the owner would not have accepted means the
 * threads judged differently: the run stops with an error rather than keep weights nobody checked.
 */
export function runStepReports(run: RunOutcome, counts: readonly number[], screen: GradientScreen, threadId: (index: number) => string): RunStep[] {
  let previousEnd = run.startedAt;
  return run.steps.map((records, j) => {
    const why = judgeStep(screen, slotSummaries(records, counts));
    if (why !== undefined) throw new DtrainError('DTRAIN_ERR_SHARED_STEP', `The compute threads committed step ${j + 1} of a run, but the owner's screen refuses it (${why}); the run stops rather than keep weights it did not accept.`, { expected: false });
    const results: ResultMessage[] = records.map((r, k) => ({ type: 'result', taskId: 0, count: counts[k], lossSum: r.lossSum, correct: r.correct, computeMs: r.computeMs }));
    const totals = stepTotals(results);
    const endedAt = Math.max(...records.map((r) => r.endedAt));
    const ms = Math.max(0, endedAt - previousEnd);
    previousEnd = endedAt;
    const perWorker = records.map((r, k) => ({ workerId: threadId(run.threads[k]), computeMs: r.computeMs, bytesOut: 0, bytesIn: 0 }));
    const stats: ScheduleStats = { maxComputeMs: Math.max(...records.map((r) => r.computeMs)), bytesSent: 0, retries: 0, perWorker };
    return { totals, outcome: { results, stats }, ms, optimizerMs: Math.max(...records.map((r) => r.optimizerMs)) };
  });
}
