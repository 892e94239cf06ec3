/**
 * The one entry point for data: `loadDataset` returns train / validation / test splits of uint8
 * images, whatever the source. Everything downstream (batching, preprocessing, sharding across
 * workers) depends only on `DatasetSplits`.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, ShapeError } from '../errors.ts';
import type { SplitName } from '../protocol.ts';
import { silentLogger, type Logger } from '../logger.ts';
import { CIFAR10_MD5, CIFAR10_URL, loadCifar10, RECORDS_PER_FILE } from './cifar10.ts';
import { gatherImages, selectSplits } from './split.ts';
import { generateSynthetic, syntheticFingerprint, SYNTHETIC_DEV_COUNT, SYNTHETIC_TEST_COUNT } from './synthetic.ts';
import { CIFAR10_CLASSES, type DatasetSplits, type ImageSet } from './types.ts';

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
  const splits = (await openDataSource(o, internal)).select(splitSeed, limits);

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

/**
 * A dataset before it is split: its content fingerprint, and how to cut the train / validation /
 * test splits from it. Equal fingerprints, seeds and limits give identical splits, which is how a
 * worker with its own copy of the data (`dtrain worker --data-dir`) can be sent sample indices.
 */
export interface DataSource {
  /** "cifar10:<sha256 of the .bin files>" or "synthetic:<sha256 of the generator's parameters>". */
  fingerprint: string;
  /** Every split, materialized (what the coordinator trains from). */
  select(splitSeed: number, limits: SplitLimits): DatasetSplits;
  /** The same splits, read a few samples at a time (what a worker with local data needs per task). */
  sampler(splitSeed: number, limits: SplitLimits): SplitSampler;
}

export interface SplitLimits {
  limitTrain?: number;
  limitTest?: number;
}

export interface SplitSampler {
  counts: Record<SplitName, number>;
  /** Samples `indices` of `split`, in that order; an index past the split is a ShapeError. `shared`: see newImageSet. */
  gather(split: SplitName, indices: Uint32Array, shared?: boolean): ImageSet;
}

/** The two parts a dataset comes in, each readable by index (synthetic images are drawn on demand). */
interface Parts {
  devCount: number;
  testCount: number;
  /** `splitSeed` also seeds the synthetic generator: every part of synthetic data follows --seed. `shared`: see newImageSet. */
  dev(indices: Uint32Array, splitSeed: number, shared?: boolean): ImageSet;
  test(indices: Uint32Array, splitSeed: number): ImageSet;
  source(splitSeed: number): string;
  classNames: readonly string[];
}

function sourceFromParts(fingerprint: string, parts: Parts): DataSource {
  const sampler = (splitSeed: number, limits: SplitLimits): SplitSampler => {
    const pick = selectSplits(parts.devCount, parts.testCount, splitSeed, limits);
    const byName: Record<SplitName, Uint32Array> = { train: pick.train, val: pick.val, test: pick.test };
    return {
      counts: { train: pick.train.length, val: pick.val.length, test: pick.test.length },
      gather(split, indices, shared = false) {
        const within = byName[split];
        const mapped = new Uint32Array(indices.length);
        for (let i = 0; i < indices.length; i++) {
          if (indices[i] >= within.length) throw new ShapeError(`Expected ${split} indices below ${within.length}, but index ${i} is ${indices[i]}.`);
          mapped[i] = within[indices[i]];
        }
        return split === 'test' ? parts.test(mapped, splitSeed) : parts.dev(mapped, splitSeed, shared);
      },
    };
  };
  return {
    fingerprint,
    sampler,
    select(splitSeed, limits) {
      const s = sampler(splitSeed, limits);
      // The training split lies in shared memory: the shared-memory step's threads read its slices there (coordinator/step-ahead.ts).
      const all = (split: SplitName) => s.gather(split, Uint32Array.from({ length: s.counts[split] }, (_, i) => i), split === 'train');
      return { train: all('train'), val: all('val'), test: all('test'), classNames: parts.classNames, source: parts.source(splitSeed), fingerprint };
    },
  };
}

/** Reads (or prepares to generate) a dataset once; splits are cut from it as often as needed. */
export async function openDataSource(o: Pick<LoadOptions, 'dataset' | 'dataDir' | 'cacheDir' | 'url' | 'logger'>, internal: InternalLoadOptions = {}): Promise<DataSource> {
  if (o.dataset === 'synthetic') {
    return sourceFromParts(syntheticFingerprint(), {
      devCount: SYNTHETIC_DEV_COUNT,
      testCount: SYNTHETIC_TEST_COUNT,
      dev: (indices, splitSeed, shared) => generateSynthetic(indices, 'dev', splitSeed, shared),
      test: (indices, splitSeed) => generateSynthetic(indices, 'test', splitSeed),
      source: (splitSeed) => `synthetic (seed ${splitSeed})`,
      classNames: CIFAR10_CLASSES,
    });
  }
  if (o.dataset === 'cifar10') {
    const data = await loadCifar10({
      dataDir: o.dataDir,
      cacheDir: o.cacheDir ?? defaultCacheDir(),
      url: o.url ?? CIFAR10_URL,
      expectedMd5: internal.expectedMd5 ?? CIFAR10_MD5,
      recordsPerFile: internal.recordsPerFile ?? RECORDS_PER_FILE,
      idleTimeoutMs: internal.idleTimeoutMs,
      logger: o.logger ?? silentLogger(),
    });
    return sourceFromParts(data.fingerprint, {
      devCount: data.dev.count,
      testCount: data.test.count,
      dev: (indices, _splitSeed, shared) => gatherImages(data.dev, indices, shared),
      test: (indices) => gatherImages(data.test, indices),
      source: () => data.source,
      classNames: data.classNames,
    });
  }
  throw new ConfigError(`Unknown dataset "${String(o.dataset)}": expected cifar10 or synthetic.`);
}

function checkPositiveInteger(name: string, flag: string, value: number | undefined): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw new ConfigError(`${name} (${flag}) must be a positive integer, but got ${value}.`);
  }
}
