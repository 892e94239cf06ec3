/**
 * The one entry point for data: `loadDataset` returns train / validation / test splits of uint8
 * images, whatever the source. Everything downstream (batching, preprocessing, sharding across
 * workers) depends only on `DatasetSplits`.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../errors.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { CIFAR10_MD5, CIFAR10_URL, loadCifar10, RECORDS_PER_FILE } from './cifar10.ts';
import { gatherImages, selectSplits } from './split.ts';
import { generateSynthetic, SYNTHETIC_DEV_COUNT, SYNTHETIC_TEST_COUNT } from './synthetic.ts';
import { CIFAR10_CLASSES, type DatasetSplits } from './types.ts';

export interface LoadOptions {
  dataset: 'cifar10' | 'synthetic';
  /** A folder holding the extracted CIFAR-10 binary files (or their parent), or the .tar.gz. No network is used. */
  dataDir?: string;
  /** Where downloads and extracted files live. Default: $DTRAIN_CACHE_DIR, else ~/.cache/dtrain. */
  cacheDir?: string;
  /** Train on the first N images of the training split; validation keeps ceil(N / 4). Default: all. */
  limitTrain?: number;
  /** Test on the first N test images. Default: all. */
  limitTest?: number;
  /** Seed of the 80/20 dev split, and for `synthetic` of the images too. Default 42. */
  splitSeed?: number;
  /** Overrides the CIFAR-10 download URL (tests, mirrors). */
  url?: string;
  logger?: Logger;
}

/**
 * Knobs that exist so tests can serve a small fake archive. Production callers never set them;
 * the defaults are the published CIFAR-10 values.
 */
export interface InternalLoadOptions {
  /** md5 the downloaded or given archive must have. Default: the published one. */
  expectedMd5?: string;
  /** Records in each .bin file. Default 10,000. */
  recordsPerFile?: number;
  /** Abort a download after this long without data. Default 30 s. */
  idleTimeoutMs?: number;
}

export const DEFAULT_SPLIT_SEED = 42;

export function defaultCacheDir(): string {
  return process.env.DTRAIN_CACHE_DIR || join(homedir(), '.cache', 'dtrain');
}

export async function loadDataset(o: LoadOptions, internal: InternalLoadOptions = {}): Promise<DatasetSplits> {
  const logger = o.logger ?? silentLogger();
  const splitSeed = o.splitSeed ?? DEFAULT_SPLIT_SEED;
  checkPositiveInteger('limitTrain', '--limit-train', o.limitTrain);
  checkPositiveInteger('limitTest', '--limit-test', o.limitTest);
  if (!Number.isSafeInteger(splitSeed)) throw new ConfigError(`splitSeed must be an integer, but got ${splitSeed}.`);
  const limits = { limitTrain: o.limitTrain, limitTest: o.limitTest };
  const started = Date.now();

  let splits: DatasetSplits;
  if (o.dataset === 'synthetic') {
    const pick = selectSplits(SYNTHETIC_DEV_COUNT, SYNTHETIC_TEST_COUNT, splitSeed, limits);
    splits = {
      train: generateSynthetic(pick.train, 'dev', splitSeed),
      val: generateSynthetic(pick.val, 'dev', splitSeed),
      test: generateSynthetic(pick.test, 'test', splitSeed),
      classNames: CIFAR10_CLASSES,
      source: `synthetic (seed ${splitSeed})`,
    };
  } else if (o.dataset === 'cifar10') {
    const data = await loadCifar10({
      dataDir: o.dataDir,
      cacheDir: o.cacheDir ?? defaultCacheDir(),
      url: o.url ?? CIFAR10_URL,
      expectedMd5: internal.expectedMd5 ?? CIFAR10_MD5,
      recordsPerFile: internal.recordsPerFile ?? RECORDS_PER_FILE,
      idleTimeoutMs: internal.idleTimeoutMs,
      logger,
    });
    const pick = selectSplits(data.dev.count, data.test.count, splitSeed, limits);
    splits = {
      train: gatherImages(data.dev, pick.train),
      val: gatherImages(data.dev, pick.val),
      test: gatherImages(data.test, pick.test),
      classNames: CIFAR10_CLASSES,
      source: data.source,
    };
  } else {
    throw new ConfigError(`Unknown dataset "${String(o.dataset)}": expected cifar10 or synthetic.`);
  }

  if (o.limitTrain !== undefined && o.limitTrain > splits.train.count) {
    logger.warn({ event: 'data_limit_clamped', limitTrain: o.limitTrain, train: splits.train.count }, 'limitTrain exceeds the training split; using all of it');
  }
  if (o.limitTest !== undefined && o.limitTest > splits.test.count) {
    logger.warn({ event: 'data_limit_clamped', limitTest: o.limitTest, test: splits.test.count }, 'limitTest exceeds the test set; using all of it');
  }
  logger.info(
    { event: 'data_loaded', source: splits.source, train: splits.train.count, val: splits.val.count, test: splits.test.count, ms: Date.now() - started },
    `Loaded ${splits.source}: ${splits.train.count} train, ${splits.val.count} validation, ${splits.test.count} test images`,
  );
  return splits;
}

function checkPositiveInteger(name: string, flag: string, value: number | undefined): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigError(`${name} (${flag}) must be a positive integer, but got ${value}.`);
  }
}
