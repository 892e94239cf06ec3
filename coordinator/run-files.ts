/**
 * Writing the run folder's JSON files, atomically, so a reader or a crash never sees half a file.
 * The shapes are the ones the report reads (common/report/run-files.ts), with what the trainer adds.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../common/atomic-write.ts';
import type { EpochRecord, RunMetrics, TrainingHistory } from '../common/report/run-files.ts';

export type { EpochRecord };
export type History = TrainingHistory;

export interface Metrics extends RunMetrics {
  steps: number;
  dataset: string;
  config: Record<string, unknown>;
  finished_at: string;
}

export function writeJson(runDir: string, name: string, value: unknown): Promise<void> {
  return writeFileAtomic(join(runDir, name), JSON.stringify(value, null, 2) + '\n');
}

/** runs/<model>-<time>: where a run goes without --out. */
export function defaultRunDir(model: string): string {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return join('runs', `${model}-${stamp}`);
}
