import { describe, expect, it } from 'vitest';
import { syntheticData, tempDir, testConfig } from '../test/helpers.ts';
import { silentLogger } from '../common/logger.ts';
import { buildModel } from '../common/models.ts';
import { initialWeights, weightLayout } from '../common/weights.ts';
import { CheckpointError } from '../common/errors.ts';
import { Membership } from './membership.ts';
import { Trainer } from './trainer.ts';
import { saveCheckpoint } from './checkpoint.ts';

describe('Trainer.resume', () => {
  it('refuses a checkpoint whose optimizer state holds Infinity (it would freeze those weights for good)', async () => {
    const out = await tempDir();
    const config = testConfig({ model: 'lenet', out, resume: true });
    const layout = weightLayout(buildModel('lenet'));
    const v = new Float32Array(layout.trainableSize);
    v[123] = Number.POSITIVE_INFINITY;
    await saveCheckpoint(out, {
      weights: initialWeights(layout, 1),
      adam: { step: 3, m: new Float32Array(layout.trainableSize), v },
      state: {
        format: '', model: 'lenet', weightCount: layout.totalSize, adamStep: 3, weightsVersion: 3,
        position: { epoch: 0, sampleOffset: 96, globalStep: 3, epochLossSum: 0, epochCorrect: 0, epochSamples: 96, epochSeconds: 1 },
        files: { model: '', weights: '', optimizer: '' },
        history: { model: 'lenet', epochs: [] },
        config: { ...config },
      },
    });
    const trainer = new Trainer(config, await syntheticData(64, 10), new Membership(silentLogger()), silentLogger());
    const err = await trainer.resume().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointError);
    expect((err as Error).message).toMatch(/non-finite weights or optimizer state/);
  });
});
