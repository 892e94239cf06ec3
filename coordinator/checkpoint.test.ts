import { describe, expect, it } from 'vitest';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { tempDir } from '../test/helpers.ts';
import { tf } from '../common/tf.ts';
import { buildModel } from '../common/models.ts';
import { initialWeights, weightLayout } from '../common/weights.ts';
import { loadCheckpoint, saveCheckpoint, type Checkpoint, type CheckpointWriter } from './checkpoint.ts';
import { writeFileAtomic } from '../common/atomic-write.ts';
import { CheckpointError } from '../common/errors.ts';

function checkpointFor(step: number, seed: number): Checkpoint {
  const layout = weightLayout(buildModel('cnn-bn'));
  const weights = initialWeights(layout, seed);
  const m = Float32Array.from({ length: layout.trainableSize }, (_, i) => i * 1e-6);
  const v = Float32Array.from({ length: layout.trainableSize }, (_, i) => i * 1e-9);
  return {
    weights,
    adam: { step, m, v },
    state: {
      format: '', model: 'cnn-bn', weightCount: layout.totalSize, adamStep: step, weightsVersion: step,
      position: { epoch: 1, sampleOffset: 320, globalStep: step, epochLossSum: 12.5, epochCorrect: 100, epochSamples: 320, epochSeconds: 3.5 },
      files: { model: '', weights: '', optimizer: '' },
      history: { model: 'cnn-bn', epochs: [] },
      config: { batchSize: 32 },
    },
  };
}

describe('checkpoints', () => {
  it('round-trips weights, Adam state and position bit for bit', async () => {
    const dir = await tempDir();
    const saved = checkpointFor(17, 3);
    await saveCheckpoint(dir, saved);
    const loaded = (await loadCheckpoint(dir, 'cnn-bn'))!;
    expect(loaded.weights).toEqual(saved.weights);
    expect(loaded.adam.m).toEqual(saved.adam.m);
    expect(loaded.adam.v).toEqual(saved.adam.v);
    expect(loaded.adam.step).toBe(17);
    expect(loaded.state.position).toEqual(saved.state.position);
  });

  it('writes a model that tf.loadLayersModel loads with the same weights', async () => {
    const dir = await tempDir();
    const saved = checkpointFor(5, 9);
    await saveCheckpoint(dir, saved);
    const ckptDir = join(dir, 'checkpoint');
    const modelJson = JSON.parse(await readFile(join(ckptDir, 'model.json'), 'utf8'));
    const weightData = await readFile(join(ckptDir, modelJson.weightsManifest[0].paths[0]));
    const model = await tf.loadLayersModel(tf.io.fromMemory({
      modelTopology: modelJson.modelTopology,
      weightSpecs: modelJson.weightsManifest[0].weights,
      weightData: weightData.buffer.slice(weightData.byteOffset, weightData.byteOffset + weightData.byteLength),
    }));
    const layout = weightLayout(model);
    const flat = new Float32Array(layout.totalSize);
    model.weights.forEach((w, i) => flat.set(w.read().dataSync() as Float32Array, layout.entries[i].offset));
    expect(flat).toEqual(saved.weights);
    model.dispose();
  });

  it('keeps only the newest weight files, and checkpoint.json names them', async () => {
    const dir = await tempDir();
    await saveCheckpoint(dir, checkpointFor(1, 1));
    await saveCheckpoint(dir, checkpointFor(2, 2));
    const files = (await readdir(join(dir, 'checkpoint'))).sort();
    expect(files).toEqual(['checkpoint.json', 'model-00000002.json', 'model.json', 'optimizer-00000002.bin', 'weights-00000002.bin']);
    expect((await loadCheckpoint(dir, 'cnn-bn'))!.weights).toEqual(checkpointFor(2, 2).weights);
  });

  it('returns nothing when there is no checkpoint yet', async () => {
    expect(await loadCheckpoint(await tempDir(), 'lenet')).toBeUndefined();
  });

  it('refuses a checkpoint of another model, naming both', async () => {
    const dir = await tempDir();
    await saveCheckpoint(dir, checkpointFor(1, 1));
    await expect(loadCheckpoint(dir, 'lenet')).rejects.toThrow(/cnn-bn.*lenet/);
  });

  it('refuses a truncated weights file, naming the sizes', async () => {
    const dir = await tempDir();
    await saveCheckpoint(dir, checkpointFor(3, 1));
    await writeFile(join(dir, 'checkpoint', 'weights-00000003.bin'), new Uint8Array(100));
    const err = await loadCheckpoint(dir, 'cnn-bn').catch((e) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect(err.message).toMatch(/493864 bytes, but holds 100/);
  });
});

describe('a crash during a checkpoint', () => {
  const durable: CheckpointWriter = (path, data) => writeFileAtomic(path, data, { durable: true });

  /** Completes `n` writes, then "crashes" halfway through the next: half a temporary file is left, and nothing is renamed. */
  function crashAfter(n: number): CheckpointWriter {
    let done = 0;
    return async (path, data) => {
      if (done++ < n) return durable(path, data);
      await writeFile(join(dirname(path), `.${basename(path)}.crashed.tmp`), typeof data === 'string' ? data.slice(0, data.length / 2) : data.subarray(0, data.byteLength / 2));
      throw new Error('simulated crash');
    };
  }

  it('writes everything the checkpoint names before checkpoint.json, model included', async () => {
    const writes: string[] = [];
    await saveCheckpoint(await tempDir(), checkpointFor(1, 1), (path, data) => {
      writes.push(basename(path));
      return durable(path, data);
    });
    expect(writes).toEqual(['weights-00000001.bin', 'optimizer-00000001.bin', 'model-00000001.json', 'checkpoint.json', 'model.json']);
  });

  for (let n = 0; n <= 4; n++) {
    it(`resumes from the last complete checkpoint after a crash following write ${n} of the next`, async () => {
      const dir = await tempDir();
      const first = checkpointFor(10, 1);
      const second = checkpointFor(20, 2);
      await saveCheckpoint(dir, first);
      await expect(saveCheckpoint(dir, second, crashAfter(n))).rejects.toThrow('simulated crash');
      const loaded = (await loadCheckpoint(dir, 'cnn-bn'))!;
      // Writes 0-2 are the new data files; write 3 is checkpoint.json, the commit point.
      const expected = n >= 4 ? second : first;
      expect(loaded.state.position.globalStep).toBe(expected.state.position.globalStep);
      expect(loaded.weights).toEqual(expected.weights);
      expect(loaded.adam.m).toEqual(expected.adam.m);
      // Everything checkpoint.json names is there and complete.
      const modelJson = JSON.parse(await readFile(join(dir, 'checkpoint', loaded.state.files.model), 'utf8'));
      expect(modelJson.weightsManifest[0].paths).toEqual([loaded.state.files.weights]);
    });
  }
});

