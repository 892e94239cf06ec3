/**
 * A run folder that already holds a run: refused for a fresh run, continued with --resume, replaced
 * with --overwrite. Kept apart from run-files.ts, which the CLI loads before any command runs: this
 * module reads the checkpoint's names, and loading the checkpoint module loads TensorFlow.js.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../common/errors.ts';
import type { TrainConfig } from '../common/config.ts';
import { RUN_PICTURE_FILES } from '../common/report/run-artifacts.ts';
import { CHECKPOINT_DIR, CHECKPOINT_FILE } from './checkpoint.ts';

/** What a run writes into its folder. */
export const RUN_FILES = [CHECKPOINT_DIR, 'metrics.json', 'history.json', ...Object.values(RUN_PICTURE_FILES)] as const;

/**
 * What shows that `dir` holds a run worth keeping: a checkpoint of ours (checkpoint/ with its
 * checkpoint.json), or an epoch's or the run's results. A run stopped before its first checkpoint
 * leaves only summary.txt, which does not hold a rerun back.
 */
export function earlierRunMarkers(dir: string): string[] {
  const found: string[] = [];
  if (existsSync(join(dir, CHECKPOINT_DIR, CHECKPOINT_FILE))) found.push(CHECKPOINT_DIR);
  for (const f of ['metrics.json', 'history.json']) if (existsSync(join(dir, f))) found.push(f);
  return found;
}

/**
 * A fresh run into a folder that holds one must say what to do with it, as Hugging Face's
 * --overwrite_output_dir does: continue it (`resume`) or replace it (`overwrite`). Otherwise a
 * ConfigError names the folder and both ways on. Checked before any work; nothing is removed here.
 */
export function refuseEarlierRun(dir: string, how: { resume: boolean; overwrite: boolean }): void {
  if (how.resume || how.overwrite) return;
  const found = earlierRunMarkers(dir);
  if (found.length > 0) {
    throw new ConfigError(`--out ${dir} already holds a run (${found.join(', ')}): continue it with --resume, replace it with --overwrite, or give another folder (without --out each run gets runs/<model>-<time>/).`);
  }
}

/**
 * With --overwrite, the earlier run's own files go, just before the new run writes its first one
 * (after its data loaded and its workers started, so a run that fails to start replaces nothing).
 * Only a folder that holds a run is cleared; a checkpoint/ folder that is not ours stays.
 */
export function clearEarlierRun(dir: string, how: { resume: boolean; overwrite: boolean }): string[] {
  if (how.resume || !how.overwrite) return [];
  const markers = earlierRunMarkers(dir);
  if (markers.length === 0) return [];
  const ours = RUN_FILES.filter((f) => (f === CHECKPOINT_DIR ? markers.includes(CHECKPOINT_DIR) : existsSync(join(dir, f))));
  for (const f of ours) rmSync(join(dir, f), { recursive: true, force: true });
  return ours;
}

/** What a resumed run must share with the run it continues, and the flag that sets each. */
const RESUME_FLAGS = [
  ['model', '--model'],
  ['dataset', '--dataset'],
  ['limitTrain', '--limit-train'],
  ['batchSize', '--batch-size'],
  ['batchPerWorker', '--batch-per-worker'],
  ['seed', '--seed'],
  ['reduceGrain', '--reduce-grain'],
] as const;

/** A flag's value as set, or undefined where it was left unset (a grain of 0 is unset too). */
function setValue(flag: string, value: unknown): unknown {
  return value === null || (flag === '--reduce-grain' && value === 0) ? undefined : value;
}

/** `--flag value`, or `no --flag` for a value left unset. */
function flagText(flag: string, value: unknown): string {
  const v = setValue(flag, value);
  return v === undefined ? `no ${flag}` : `${flag} ${String(v)}`;
}

/**
 * Before any data is loaded: a --resume whose flags would make another run than the checkpoint's
 * is refused with the flags to give, instead of failing after the data loaded (or a download was
 * tried). Returns notes on what a resume may change (more epochs) for the log; nothing without a
 * checkpoint. The trainer checks the same again against the checkpoint it loads.
 */
export function checkResumeFlags(config: TrainConfig): string[] {
  if (!config.resume) return [];
  const path = join(config.out, CHECKPOINT_DIR, CHECKPOINT_FILE);
  if (!existsSync(path)) return [];
  let saved: Record<string, unknown>;
  try {
    const state = JSON.parse(readFileSync(path, 'utf8')) as { model?: string; config?: Record<string, unknown> };
    saved = { ...state.config, model: state.model ?? state.config?.model };
  } catch {
    return []; // the trainer's load says what is wrong with it
  }
  const differ = RESUME_FLAGS.filter(([key, flag]) => setValue(flag, saved[key]) !== setValue(flag, config[key]));
  if (differ.length > 0) {
    const theirs = differ.map(([key, flag]) => flagText(flag, saved[key])).join(', ');
    const ours = differ.map(([key, flag]) => flagText(flag, config[key])).join(', ');
    const add = differ.filter(([key, flag]) => setValue(flag, saved[key]) !== undefined).map(([key, flag]) => flagText(flag, saved[key]));
    throw new ConfigError(`Cannot resume ${config.out}: it was trained with ${theirs}, and this run has ${ours}.${add.length > 0 ? ` Resume with ${add.join(' ')}.` : ''}`);
  }
  const notes: string[] = [];
  if (saved.epochs !== undefined && saved.epochs !== config.epochs) notes.push(`--epochs ${config.epochs} where the run was started with ${saved.epochs}: it trains to epoch ${config.epochs}`);
  if (saved.limitTest !== config.limitTest) notes.push(`${flagText('--limit-test', config.limitTest)} where the run was started with ${flagText('--limit-test', saved.limitTest)}: evaluation uses this run's test images`);
  return notes;
}
