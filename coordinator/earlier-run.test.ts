import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkResumeFlags, clearEarlierRun, earlierRunMarkers, refuseEarlierRun } from './earlier-run.ts';
import { TRAIN_DEFAULTS, type TrainConfig } from '../common/config.ts';
import { ConfigError } from '../common/errors.ts';

function folder(files: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), 'dtrain-runfiles-'));
  for (const f of files) {
    mkdirSync(join(dir, f, '..'), { recursive: true });
    writeFileSync(join(dir, f), '{}');
  }
  return dir;
}

describe('an earlier run in --out', () => {
  it('is a checkpoint of ours, metrics.json or history.json; summary.txt alone or a foreign checkpoint/ is not', () => {
    expect(earlierRunMarkers(folder(['checkpoint/checkpoint.json', 'history.json']))).toEqual(['checkpoint', 'history.json']);
    expect(earlierRunMarkers(folder(['summary.txt', 'checkpoint/notes.txt', 'loss.png']))).toEqual([]);
  });

  it('refuses a fresh run, unless it resumes or overwrites', () => {
    const dir = folder(['metrics.json']);
    expect(() => refuseEarlierRun(dir, { resume: false, overwrite: false })).toThrow(ConfigError);
    expect(() => refuseEarlierRun(dir, { resume: false, overwrite: false })).toThrow(`--out ${dir} already holds a run (metrics.json): continue it with --resume, replace it with --overwrite`);
    expect(() => refuseEarlierRun(dir, { resume: true, overwrite: false })).not.toThrow();
    expect(() => refuseEarlierRun(dir, { resume: false, overwrite: true })).not.toThrow();
    expect(existsSync(join(dir, 'metrics.json'))).toBe(true);
  });

  it('is cleared with --overwrite: its own files only, and nothing in a folder that holds no run', () => {
    const dir = folder(['checkpoint/checkpoint.json', 'metrics.json', 'loss.png', 'summary.txt', 'notes.txt']);
    expect(clearEarlierRun(dir, { resume: false, overwrite: false })).toEqual([]);
    expect(clearEarlierRun(dir, { resume: false, overwrite: true }).sort()).toEqual(['checkpoint', 'loss.png', 'metrics.json', 'summary.txt']);
    for (const f of ['checkpoint', 'metrics.json', 'loss.png', 'summary.txt']) expect(existsSync(join(dir, f))).toBe(false);
    expect(existsSync(join(dir, 'notes.txt'))).toBe(true);
    // A home folder with a loss.png and a checkpoint/ of something else holds no run: nothing goes.
    const home = folder(['loss.png', 'checkpoint/model.bin']);
    expect(clearEarlierRun(home, { resume: false, overwrite: true })).toEqual([]);
    expect(existsSync(join(home, 'loss.png')) && existsSync(join(home, 'checkpoint', 'model.bin'))).toBe(true);
  });
});

describe('a --resume whose flags differ from the checkpoint\'s', () => {
  const saved = { model: 'lenet', dataset: 'synthetic', limitTrain: 5000, limitTest: 2000, epochs: 2, batchSize: 32, seed: 42 };
  const withCheckpoint = () => {
    const dir = folder([]);
    mkdirSync(join(dir, 'checkpoint'));
    writeFileSync(join(dir, 'checkpoint', 'checkpoint.json'), JSON.stringify({ model: 'lenet', config: saved }));
    return dir;
  };
  const config = (dir: string, over: Partial<TrainConfig>): TrainConfig => ({ ...TRAIN_DEFAULTS, ...saved, model: 'lenet', dataset: 'synthetic', out: dir, resume: true, ...over });

  it('is refused before any data loads, naming the flags both ways and the ones to add', () => {
    const dir = withCheckpoint();
    expect(() => checkResumeFlags(config(dir, { dataset: 'cifar10', limitTrain: undefined }))).toThrow(
      `Cannot resume ${dir}: it was trained with --dataset synthetic, --limit-train 5000, and this run has --dataset cifar10, no --limit-train. Resume with --dataset synthetic --limit-train 5000.`,
    );
    expect(() => checkResumeFlags(config(dir, { model: 'mlp' }))).toThrow(/it was trained with --model lenet, and this run has --model mlp\. Resume with --model lenet\./);
  });

  it('notes what a resume may change (more epochs, another test set), and says nothing without a checkpoint or --resume', () => {
    const dir = withCheckpoint();
    expect(checkResumeFlags(config(dir, { epochs: 20, limitTest: undefined }))).toEqual([
      '--epochs 20 where the run was started with 2: it trains to epoch 20',
      'no --limit-test where the run was started with --limit-test 2000: evaluation uses this run\'s test images',
    ]);
    expect(checkResumeFlags(config(dir, {}))).toEqual([]);
    expect(checkResumeFlags(config(dir, { resume: false, dataset: 'cifar10' }))).toEqual([]);
    expect(checkResumeFlags(config(folder([]), { dataset: 'cifar10' }))).toEqual([]);
  });
});
