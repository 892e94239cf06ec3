/**
 * The worker's step on a real WebGPU adapter. In CI that is Mesa's lavapipe (a CPU Vulkan driver,
 * installed by scripts/install-lavapipe.sh); on a GPU machine, the GPU. Without an adapter these
 * tests skip and say why, except under CI, where they fail instead.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tf } from '../common/tf.ts';
import { releaseBackend, selectBackend, type BackendSelection } from '../common/backend.ts';
import { MODEL_NAMES } from '../common/models.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { Adam } from '../common/adam.ts';
import { StepComputer } from './compute.ts';
import { compareWithCpu, forbidSyncReads, GPU_TRAIN_OPTIONS } from './gpu-check.ts';
import { softwareAdapterReason } from '../common/webgpu.ts';

const inCi = !!process.env.CI && process.env.CI !== '0' && process.env.CI !== 'false';

async function probe(): Promise<{ selection?: BackendSelection; reason?: string }> {
  try {
    return { selection: await selectBackend('webgpu') };
  } catch (err) {
    return { reason: (err as Error).message };
  }
}

const { selection, reason } = await probe();
const TOLERANCE = 1e-3;

if (!selection) {
  describe('webgpu backend', () => {
    if (inCi) {
      it('has a WebGPU adapter (CI installs lavapipe with scripts/install-lavapipe.sh; these tests must not skip there)', () => {
        throw new Error(`No WebGPU adapter in CI: ${reason}`);
      });
    } else {
      console.warn(`worker/webgpu.test.ts skipped: no WebGPU adapter (${reason}). Install one with scripts/install-lavapipe.sh.`);
      it.skip(`skipped: no WebGPU adapter (${reason})`, () => {});
    }
  });
} else {
  describe(`webgpu backend (${selection.adapter?.description || selection.adapter?.device || 'adapter'})`, () => {
    afterAll(() => releaseBackend('webgpu'));

    it('runs on the adapter that was checked', () => {
      expect(selection.name).toBe('webgpu');
      expect(selection.adapter).toBeDefined();
    });

    for (const model of MODEL_NAMES) {
      it(`${model}: gradients, loss and predictions match the cpu backend from the same weights, with no synchronous read`, async () => {
        const allowSyncReads = forbidSyncReads('webgpu');
        try {
          const c = await compareWithCpu('webgpu', model, 8);
          expect(c.gradientMaxRelativeError, `worst weight ${c.worstWeight}`).toBeLessThan(TOLERANCE);
          expect(c.lossRelativeError).toBeLessThan(TOLERANCE);
          expect(c.evalLossRelativeError).toBeLessThan(TOLERANCE);
          expect(c.predictionsAgree).toBe(1);
          expect(c.correct.backend).toBe(c.correct.cpu);
        } finally {
          allowSyncReads();
        }
      });
    }

    it('fails a step that reads synchronously (the guard above can fail)', async () => {
      await tf.setBackend('webgpu');
      const allowSyncReads = forbidSyncReads('webgpu');
      try {
        const t = tf.add(tf.ones([300, 300]), 1);
        expect(() => t.dataSync()).toThrow(/synchronous read .* on the webgpu backend/);
        t.dispose();
      } finally {
        allowSyncReads();
      }
    });

    it('lenet learns: 30 Adam steps of 32 images reach above-chance validation accuracy, with tf.memory flat', async () => {
      await tf.setBackend('webgpu');
      const allowSyncReads = forbidSyncReads('webgpu');
      const c = new StepComputer('lenet', { kind: 'scale' });
      try {
        const weights = initialWeights(c.layout, 42);
        const trainable = weights.subarray(0, c.layout.trainableSize);
        const adam = new Adam(c.layout.trainableSize);
        const batch = 32;
        const steps = 30;
        const train = generateSynthetic(Uint32Array.from({ length: batch * steps }, (_, i) => i), 'dev', 42);
        let tensorsAfterFirst = 0;
        const losses: number[] = [];
        for (let s = 0; s < steps; s++) {
          c.setWeights(weights);
          const r = await c.train(train.images.subarray(s * batch * 3072, (s + 1) * batch * 3072), train.labels.subarray(s * batch, (s + 1) * batch), GPU_TRAIN_OPTIONS);
          losses.push(r.lossSum / batch);
          const mean = Float32Array.from(r.gradientSum, (g) => g / batch);
          adam.apply(trainable, mean);
          if (s === 0) tensorsAfterFirst = tf.memory().numTensors;
        }
        expect(tf.memory().numTensors).toBe(tensorsAfterFirst);
        const held = generateSynthetic(Uint32Array.from({ length: 256 }, (_, i) => i), 'test', 42);
        c.setWeights(weights);
        const e = await c.evaluate(held.images, held.labels);
        expect(e.correct / e.count).toBeGreaterThan(0.2); // chance is 0.1
        expect(losses.slice(-5).reduce((a, b) => a + b) / 5).toBeLessThan(losses[0]);
      } finally {
        c.dispose();
        allowSyncReads();
      }
    });

    it.runIf(selection.adapter && softwareAdapterReason(selection.adapter))('auto-selection in a fresh process skips this adapter without Dawn\'s warnings on stderr', () => {
      // Dawn prints two warnings about lavapipe's limits (and, with no GPU, one about the loader)
      // while it enumerates devices; auto-selection looks in a child process whose stderr nobody
      // shows. With Dawn loaded here, as --backend webgpu does, they appear: checked first.
      const run = (choice: string) =>
        spawnSync(process.execPath, ['--input-type=module', '-e', `import { register } from 'tsx/esm/api'; register(); const { selectBackend } = await import('./common/backend.ts'); const s = await selectBackend(process.argv[1]); process.stdout.write(JSON.stringify(s.skipped)); process.exit(0);`, choice], {
          cwd: fileURLToPath(new URL('..', import.meta.url)),
          encoding: 'utf8',
          env: { ...process.env, DTRAIN_WEBGPU_PROBE: '' },
          timeout: 120_000,
        });
      const forced = run('webgpu');
      expect(forced.status).toBe(0);
      expect(forced.stderr).toMatch(/Warning:/);
      const auto = run('auto');
      expect(auto.status).toBe(0);
      expect(auto.stderr).not.toMatch(/Warning|Loader Message|Error/);
      const skipped = (JSON.parse(auto.stdout) as { backend: string; reason: string }[]).find((s) => s.backend.startsWith('webgpu'));
      expect(skipped?.reason).toMatch(/(fallback|software) \(CPU\).*--backend webgpu forces it/);
    });

    // Last: it moves this process to another backend.
    it.runIf(selection.adapter && softwareAdapterReason(selection.adapter))('auto-selection skips this software adapter and says why', async () => {
      const auto = await selectBackend('auto');
      expect(auto.name).not.toBe('webgpu');
      const skipped = auto.skipped.find((s) => s.backend.startsWith('webgpu'));
      expect(skipped?.reason).toMatch(/(fallback|software) \(CPU\).*--backend webgpu forces it/);
    });
  });
}
