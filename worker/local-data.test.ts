import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { DatasetMismatchError, LocalData } from './local-data.ts';
import { loadDataset, openDataSource } from '../common/data/load.ts';
import { gatherImages } from '../common/data/split.ts';
import { FAKE_RECORDS_PER_FILE, writeFakeBatches } from '../common/data/fake-cifar.ts';
import { CIFAR10_DEV_FILES, CIFAR10_TEST_FILE } from '../common/data/cifar10.ts';
import type { TaskMessage } from '../common/protocol.ts';
import { silentLogger } from '../common/logger.ts';

function indexTask(split: 'train' | 'val' | 'test', indices: number[], labels: Uint8Array): TaskMessage {
  return { type: 'task', taskId: 1, kind: 'train', weightsVersion: 0, images: new Uint8Array(0), labels, indices: new Uint8Array(Uint32Array.from(indices).buffer), split };
}

describe('a worker with its own copy of the data', () => {
  it('fills an index task with exactly the pixels the coordinator would have sent', async () => {
    const spec = { seed: 7, limitTrain: 200, limitTest: 50 };
    const coordinator = await loadDataset({ dataset: 'synthetic', splitSeed: spec.seed, limitTrain: spec.limitTrain, limitTest: spec.limitTest });
    const local = await LocalData.open({ dataset: 'synthetic', log: silentLogger() });
    local.use({ fingerprint: coordinator.fingerprint!, ...spec });
    for (const split of ['train', 'val', 'test'] as const) {
      const indices = [3, 0, 17, 9];
      const expected = gatherImages(coordinator[split], Uint32Array.from(indices));
      const filled = local.resolve(indexTask(split, indices, expected.labels));
      expect(filled.indices).toBeUndefined();
      expect(Buffer.from(filled.images).equals(Buffer.from(expected.images))).toBe(true);
    }
  });

  it('fails the task when its labels disagree with ours, and refuses another fingerprint', async () => {
    const local = await LocalData.open({ dataset: 'synthetic', log: silentLogger() });
    expect(() => local.use({ fingerprint: 'synthetic:other', seed: 1 })).toThrow(DatasetMismatchError);
    local.use({ fingerprint: local.fingerprint, seed: 1, limitTrain: 100 });
    const data = await loadDataset({ dataset: 'synthetic', splitSeed: 1, limitTrain: 100, limitTest: 10 });
    const wrong = Uint8Array.from([(data.train.labels[5] + 1) % 10]);
    expect(() => local.resolve(indexTask('train', [5], wrong))).toThrow(/label .* the splits differ/);
    expect(() => local.resolve(indexTask('train', [100], Uint8Array.from([0])))).toThrow(/Expected train indices below 100/);
  });

  it('passes pixel tasks through untouched', async () => {
    const local = await LocalData.open({ dataset: 'synthetic', log: silentLogger() });
    const task: TaskMessage = { type: 'task', taskId: 2, kind: 'eval', weightsVersion: 0, images: new Uint8Array(3072), labels: new Uint8Array(1) };
    expect(local.resolve(task)).toBe(task);
  });

  it('fingerprints CIFAR-10 by the bytes of its six files, and the generator by its parameters', async () => {
    const dir = await writeFakeBatches(await mkdtemp(join(tmpdir(), 'dtrain-fp-')));
    const source = await openDataSource({ dataset: 'cifar10', dataDir: dir }, { recordsPerFile: FAKE_RECORDS_PER_FILE });
    const hash = createHash('sha256');
    for (const f of [...CIFAR10_DEV_FILES, CIFAR10_TEST_FILE]) hash.update(await readFile(join(dir, f)));
    expect(source.fingerprint).toBe(`cifar10:${hash.digest('hex')}`);
    const synthetic = await openDataSource({ dataset: 'synthetic' });
    expect(synthetic.fingerprint).toMatch(/^synthetic:[0-9a-f]{64}$/);
    expect((await openDataSource({ dataset: 'synthetic' })).fingerprint).toBe(synthetic.fingerprint);
  });
});
