import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DtrainError } from '../../common/errors.ts';
import { writeFakeRun } from '../../common/report/test-fixtures.ts';
import { registerReportCommand } from './report.ts';

describe('dtrain report', () => {
  let root: string;
  let runs: string[];
  const printed: string[] = [];

  function program(): Command {
    const p = new Command('dtrain').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerReportCommand(p, { print: (line) => printed.push(line) });
    return p;
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dtrain-report-cli-'));
    const shape = { epochs: 4, trainAccuracy: 0.7, bestValAccuracy: 0.6, bestEpoch: 3, testAccuracy: 0.59 };
    runs = [await writeFakeRun(root, 'a', { model: 'cnn-dropout', ...shape }), await writeFakeRun(root, 'b', { model: 'cnn-bn', ...shape })];
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes report.html and report.md with its PNGs beside it', async () => {
    const out = join(root, 'report.html');
    await program().parseAsync(['report', ...runs, '--out', out], { from: 'user' });
    expect(await readFile(out, 'utf8')).toContain('<td>cnn-bn</td>');
    expect(await readFile(join(root, 'report.md'), 'utf8')).toContain('![Accuracy](report-accuracy.png)');
    for (const png of ['report-accuracy.png', 'report-loss.png', 'report-gap.png']) expect((await stat(join(root, png))).size).toBeGreaterThan(1000);
    expect(printed).toContain(`wrote ${out}`);
  });

  it('rejects an --out that is not an .html file', async () => {
    const attempt = program().parseAsync(['report', ...runs, '--out', join(root, 'report.pdf')], { from: 'user' });
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(program().parseAsync(['report', ...runs, '--out', 'report.pdf'], { from: 'user' })).rejects.toThrow('--out must be a file name ending in .html, got "report.pdf".');
  });

  it('needs at least one run folder', async () => {
    await expect(program().parseAsync(['report', '--out', join(root, 'r.html')], { from: 'user' })).rejects.toThrow(/missing required argument/);
  });

  it('fails with the missing file named when a folder is not a run', async () => {
    const attempt = program().parseAsync(['report', root, '--out', join(root, 'r.html')], { from: 'user' });
    await expect(attempt).rejects.toThrow(DtrainError);
    await expect(program().parseAsync(['report', root, '--out', join(root, 'r.html')], { from: 'user' })).rejects.toThrow(`${join(root, 'history.json')}: expected the run's history.json`);
  });
});
