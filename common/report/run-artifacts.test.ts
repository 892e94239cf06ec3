import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CIFAR10_CLASSES } from '../data/types.ts';
import { RUN_PICTURE_FILES, writeRunPictures } from './run-artifacts.ts';
import { decodePng, fakeHistory, fakeImageSet, pixelStats, pngSize } from './test-fixtures.ts';

const history = fakeHistory({ model: 'cnn-bn', epochs: 4, trainAccuracy: 0.7, bestValAccuracy: 0.6, bestEpoch: 3, testAccuracy: 0.58 });

describe('writeRunPictures', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dtrain-run-pictures-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes the curves and the summary, creating the folder', async () => {
    const dir = join(root, 'a', 'run');
    const written = await writeRunPictures(dir, { history, summaryText: 'test accuracy 58.0%' });
    expect(written.map((p) => p.slice(dir.length + 1)).sort()).toEqual(['accuracy.png', 'loss.png', 'summary.txt']);
    expect(await readFile(join(dir, RUN_PICTURE_FILES.summary), 'utf8')).toBe('test accuracy 58.0%\n');
    for (const name of [RUN_PICTURE_FILES.loss, RUN_PICTURE_FILES.accuracy]) {
      const image = await decodePng(await readFile(join(dir, name)));
      expect(pixelStats(image).variance).toBeGreaterThan(10);
    }
  });

  it('adds predictions.png when predictions are given', async () => {
    const dir = join(root, 'b');
    const set = fakeImageSet(60, 3);
    const predicted = Array.from(set.labels, (l, i) => (i % 4 === 0 ? (l + 3) % 10 : l));
    await writeRunPictures(dir, { history, summaryText: 's', predictions: { images: set.images, labels: set.labels, predicted, classNames: CIFAR10_CLASSES } });
    const png = await readFile(join(dir, RUN_PICTURE_FILES.predictions));
    expect(pngSize(png).width).toBeGreaterThan(1000);
  });

  it('replaces earlier files and leaves no temporary files behind', async () => {
    const dir = join(root, 'c');
    await writeRunPictures(dir, { history: { ...history, epochs: history.epochs.slice(0, 1) }, summaryText: 'epoch 1' });
    const first = await readFile(join(dir, RUN_PICTURE_FILES.loss));
    await writeRunPictures(dir, { history, summaryText: 'epoch 4' });
    expect((await readFile(join(dir, RUN_PICTURE_FILES.loss))).equals(first)).toBe(false);
    expect(await readFile(join(dir, RUN_PICTURE_FILES.summary), 'utf8')).toBe('epoch 4\n');
    expect((await readdir(dir)).sort()).toEqual(['accuracy.png', 'loss.png', 'summary.txt']);
  });
});
