/** The numbers a report compares runs by, worked out once from each run's files. */
import { basename } from 'node:path';
import type { EpochRecord, RunFiles } from './run-files.ts';

/** The final gap is averaged over this many last epochs, so one noisy epoch does not decide it. */
export const GAP_EPOCHS = 3;

export interface RunSummary {
  dir: string;
  /** Unique within one report: the model name, or "model (folder)" when models repeat. */
  label: string;
  model: string;
  parameters: number;
  /** Epochs the run was configured for (metrics.json). */
  epochs: number;
  /** Epochs recorded in history.json. */
  epochsRun: number;
  workers: number;
  backend: string;
  dataset: string | undefined;
  testLoss: number;
  testAccuracy: number;
  /** NaN when no epoch has a validation accuracy. */
  bestValAccuracy: number;
  bestValEpoch: number;
  /** Mean of (train accuracy − validation accuracy) over the last GAP_EPOCHS epochs; NaN if none has both. */
  finalGap: number;
  gapEpochs: number;
  wallSeconds: number;
  imagesPerSecond: number;
  /** Optimizer steps, where metrics.json says. */
  steps?: number;
  history: readonly EpochRecord[];
}

export function bestValidation(epochs: readonly EpochRecord[]): { accuracy: number; epoch: number } {
  let best = { accuracy: Number.NaN, epoch: Number.NaN };
  for (const e of epochs) {
    // Strictly greater: a tie keeps the earlier epoch, where the model first got that good.
    if (Number.isFinite(e.val_accuracy) && !(e.val_accuracy <= best.accuracy)) best = { accuracy: e.val_accuracy, epoch: e.epoch };
  }
  return best;
}

export function accuracyGap(e: EpochRecord): number {
  return e.accuracy - e.val_accuracy;
}

export function finalGap(epochs: readonly EpochRecord[], count = GAP_EPOCHS): { gap: number; epochs: number } {
  const gaps = epochs.slice(-count).map(accuracyGap).filter(Number.isFinite);
  if (gaps.length === 0) return { gap: Number.NaN, epochs: 0 };
  return { gap: gaps.reduce((a, b) => a + b, 0) / gaps.length, epochs: gaps.length };
}

export function summarizeRuns(runs: readonly RunFiles[]): RunSummary[] {
  const modelCounts = new Map<string, number>();
  for (const run of runs) modelCounts.set(run.metrics.model, (modelCounts.get(run.metrics.model) ?? 0) + 1);
  const names = runs.map((run) => basename(run.dir) || run.dir);
  return runs.map((run, i) => {
    const { metrics, history } = run;
    const best = bestValidation(history.epochs);
    const gap = finalGap(history.epochs);
    const repeated = (modelCounts.get(metrics.model) ?? 0) > 1;
    const folderRepeated = names.filter((n) => n === names[i]).length > 1;
    return {
      dir: run.dir,
      label: repeated ? `${metrics.model} (${folderRepeated ? run.dir : names[i]})` : metrics.model,
      model: metrics.model,
      parameters: metrics.parameters.total,
      epochs: metrics.epochs,
      epochsRun: history.epochs.length,
      workers: metrics.workers,
      backend: metrics.backend,
      dataset: metrics.dataset,
      testLoss: metrics.test_loss,
      testAccuracy: metrics.test_accuracy,
      bestValAccuracy: best.accuracy,
      bestValEpoch: best.epoch,
      finalGap: gap.gap,
      gapEpochs: gap.epochs,
      wallSeconds: metrics.wall_seconds,
      imagesPerSecond: metrics.images_per_second,
      ...(metrics.steps !== undefined ? { steps: metrics.steps } : {}),
      history: history.epochs,
    };
  });
}
