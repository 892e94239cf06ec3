import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../common/errors.ts';
import { CIFAR10_CLASSES } from '../../common/data/types.ts';
import { sampleGrid, gridLayout } from '../../common/report/grid.ts';
import { decodePng, fakeImageSet, pngSize } from '../../common/report/test-fixtures.ts';
import { registerSamplesCommand, type LoadDataset } from './samples.ts';

describe('dtrain samples', () => {
  let root: string;
  const train = fakeImageSet(200, 21);
  const calls: Parameters<LoadDataset>[0][] = [];
  const loadDataset: LoadDataset = async (options) => {
    calls.push(options);
    return { train, classNames: CIFAR10_CLASSES };
  };
  const printed: string[] = [];

  function program(): Command {
    const p = new Command('dtrain').exitOverride().configureOutput({ writeErr: () => {}, writeOut: () => {} });
    registerSamplesCommand(p, { loadDataset, print: (line) => printed.push(line) });
    return p;
  }

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dtrain-samples-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('loads the training split and writes the 10×5 sheet to --out', async () => {
    calls.length = 0;
    const out = join(root, 'sheet.png');
    await program().parseAsync(['samples', '--dataset', 'synthetic', '--data-dir', '/data', '--out', out], { from: 'user' });
    expect(calls).toEqual([{ dataset: 'synthetic', dataDir: '/data' }]);
    const grid = sampleGrid(train, CIFAR10_CLASSES);
    const layout = gridLayout(grid.tiles, grid.options);
    const png = await readFile(out);
    expect(pngSize(png)).toEqual({ width: layout.width, height: layout.height });
    expect(layout.columns * layout.rows).toBe(50);
    expect((await decodePng(png)).width).toBe(layout.width);
    expect(printed.at(-1)).toBe(`wrote ${out}`);
  });

  it('defaults to CIFAR-10 without a data folder', async () => {
    calls.length = 0;
    await program().parseAsync(['samples', '--out', join(root, 'default.png')], { from: 'user' });
    expect(calls).toEqual([{ dataset: 'cifar10' }]);
  });

  it('rejects an unknown dataset with what it accepts', async () => {
    const attempt = program().parseAsync(['samples', '--dataset', 'mnist', '--out', join(root, 'x.png')], { from: 'user' });
    await expect(attempt).rejects.toThrow(ConfigError);
    await expect(program().parseAsync(['samples', '--dataset', 'mnist', '--out', join(root, 'x.png')], { from: 'user' })).rejects.toThrow(
      '--dataset must be one of cifar10, synthetic, got "mnist".',
    );
  });

  it('rejects an --out that is not a .png file', async () => {
    await expect(program().parseAsync(['samples', '--out', join(root, 'x.jpg')], { from: 'user' })).rejects.toThrow(/--out must be a file name ending in .png, got ".*x.jpg"/);
  });

  it('requires --out', async () => {
    await expect(program().parseAsync(['samples'], { from: 'user' })).rejects.toThrow(/required option '--out <file.png>' not specified/);
  });
});
