/**
 * Writing the run folder's JSON files, atomically, so a reader or a crash never sees half a file.
 * The shapes are the ones the report reads (common/report/run-files.ts), with what the trainer adds.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../common/errors.ts';
import { RUN_PICTURE_FILES } from '../common/report/run-artifacts.ts';
import { CHECKPOINT_DIR } from './checkpoint.ts';
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

/** What a run writes into its folder. */
export const RUN_FILES = [CHECKPOINT_DIR, 'metrics.json', 'history.json', ...Object.values(RUN_PICTURE_FILES)] as const;
/**
 * Those that make it a run worth keeping: trained weights, or an epoch's or the run's results. A
 * run stopped before its first checkpoint leaves only summary.txt, which does not hold a rerun back.
 */
export const RUN_MARKERS = [CHECKPOINT_DIR, 'metrics.json', 'history.json'] as const;

function present(dir: string, names: readonly string[]): string[] {
  return names.filter((f) => existsSync(join(dir, f)));
}

/**
 * A fresh run into a folder that holds one must say what to do with it, as Hugging Face's
 * --overwrite_output_dir does: continue it (`resume`), or replace it (`overwrite`: the earlier run's
 * own files are removed first, so no file of it outlives the new run's start; anything else in the
 * folder stays). Otherwise a ConfigError names the folder and both ways out.
 */
export function settleEarlierRun(dir: string, how: { resume: boolean; overwrite: boolean }): void {
  if (how.resume) return;
  const found = present(dir, RUN_MARKERS);
  if (found.length === 0) return;
  if (!how.overwrite) {
    throw new ConfigError(`--out ${dir} already holds a run (${found.join(', ')}): continue it with --resume, replace it with --overwrite, or give another folder (without --out each run gets runs/<model>-<time>/).`);
  }
  for (const f of present(dir, RUN_FILES)) rmSync(join(dir, f), { recursive: true, force: true });
}
