/**
 * `dtrain samples`: a 10×5 sheet of training images, the first five of each class, to check that
 * the data loads and the labels match the pictures before spending time on training.
 */
import { Command } from 'commander';
import { extname, resolve } from 'node:path';
import { ConfigError } from '../../common/errors.ts';
import type { ImageSet } from '../../common/data/types.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import { envOption, oneOf } from './flags.ts';

export const DATASETS = ['cifar10', 'synthetic'] as const;
export type SamplesDataset = (typeof DATASETS)[number];

export const SAMPLES_PER_CLASS = 5;

/** The part of common/data/load.ts this command uses. */
export type LoadDataset = (options: { dataset: SamplesDataset; dataDir?: string }) => Promise<{ train: ImageSet; classNames: readonly string[] }>;

export interface SamplesOptions {
  dataset: SamplesDataset;
  dataDir?: string;
  out: string;
}

export interface SamplesDependencies {
  /** Defaults to common/data/load.ts, imported only when the command runs. */
  loadDataset?: LoadDataset;
  /** Where the "wrote ..." line goes; default stdout. */
  print?: (line: string) => void;
}

export function checkPngPath(flag: string, value: string): string {
  if (value.trim() === '' || extname(value).toLowerCase() !== '.png') {
    throw new ConfigError(`${flag} must be a file name ending in .png, got "${value}".`);
  }
  return value;
}

async function defaultLoadDataset(): Promise<LoadDataset> {
  // Imported on use: `dtrain report` and `dtrain --help` need none of the dataset code.
  const { loadDataset } = await import('../../common/data/load.ts');
  return loadDataset;
}

/** Loads the training split and writes the sample sheet; returns the path written. */
export async function runSamples(options: SamplesOptions, deps: SamplesDependencies = {}): Promise<string> {
  const loadDataset = deps.loadDataset ?? (await defaultLoadDataset());
  const data = await loadDataset(options.dataDir === undefined ? { dataset: options.dataset } : { dataset: options.dataset, dataDir: options.dataDir });
  const { renderSamples } = await import('../../common/report/grid.ts');
  const png = renderSamples(data.train, data.classNames, SAMPLES_PER_CLASS);
  const out = resolve(options.out);
  await writeFileAtomic(out, png);
  (deps.print ?? ((line: string) => process.stdout.write(`${line}\n`)))(`wrote ${out}`);
  return out;
}

export function registerSamplesCommand(program: Command, deps: SamplesDependencies = {}): Command {
  return program
    .command('samples')
    .description(`draw the first ${SAMPLES_PER_CLASS} training images of each class into one PNG`)
    .addOption(envOption('--dataset <name>', DATASETS.join(' | '), 'DTRAIN_DATASET').default('cifar10').argParser(oneOf('--dataset', DATASETS)))
    .addOption(envOption('--data-dir <dir>', 'folder holding cifar-10-batches-bin/ or cifar-10-binary.tar.gz', 'DTRAIN_DATA_DIR'))
    .requiredOption('--out <file.png>', 'where to write the PNG', (value: string) => checkPngPath('--out', value))
    .action(async (flags: SamplesOptions) => {
      await runSamples(flags, deps);
    });
}
