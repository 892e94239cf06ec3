/**
 * Trains a few LeNet steps on one backend (webgpu by default) and prints images per second, as
 * JSON. Used by scripts/gpu-smoke.sh on a machine with a GPU.
 *   npx tsx scripts/gpu-smoke.ts [--backend webgpu] [--steps 30] [--batch 32] [--model lenet]
 */
import { parseArgs } from 'node:util';
import { selectBackend, parseBackendChoice } from '../common/backend.ts';
import { parseModelName } from '../common/models.ts';
import { StepComputer } from '../worker/compute.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { tf } from '../common/tf.ts';

const { values } = parseArgs({ options: { backend: { type: 'string', default: 'webgpu' }, steps: { type: 'string', default: '30' }, batch: { type: 'string', default: '32' }, model: { type: 'string', default: 'lenet' } } });
const steps = Number(values.steps);
const batch = Number(values.batch);
const model = parseModelName(values.model!);
const selection = await selectBackend(parseBackendChoice(values.backend!)).catch((err: Error) => {
  process.stderr.write(`gpu-smoke: ${err.message}\n`);
  process.exit(2);
});
const computer = new StepComputer(model, { kind: 'scale' });
computer.setWeights(initialWeights(computer.layout, 42));
const { images, labels } = generateSynthetic(Uint32Array.from({ length: batch }, (_, i) => i), 'dev', 42);
for (let i = 0; i < 3; i++) await computer.train(images, labels); // warm-up: shader compilation
const started = performance.now();
let loss = 0;
for (let i = 0; i < steps; i++) loss = (await computer.train(images, labels)).lossSum / batch;
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ backend: selection.name, source: selection.source, model, batch, steps, seconds: Number(seconds.toFixed(3)), images_per_second: Math.round((steps * batch) / seconds), last_loss: loss, tensors: tf.memory().numTensors, skipped: selection.skipped }));
