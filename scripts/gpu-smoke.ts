/**
 * The GPU smoke check, as one program: scripts/gpu-smoke.sh bundles it with esbuild (with Node,
 * dawn.node and the Vulkan loader) and runs it on a lent GPU machine, or here on lavapipe
 * (--dry-run). It writes one JSON report:
 *   - the WebGPU adapter, and whether it is the one expected (a real GPU; lavapipe on a dry run);
 *   - gradients, loss and predictions of all four models against the cpu backend;
 *   - tf.memory() over 20 training steps;
 *   - images/s per model and batch on webgpu and on wasm (one worker) in the same process, and
 *     the ratio to PyTorch's (CUDA) numbers when the shell passes them in.
 *
 *   node smoke.mjs --out report.json [--dawn dawn.node] [--wasm-dir DIR] [--host host.json]
 *     [--torch torch.json] [--expect nvidia|software] [--batches 32,256,1024] [--models ...]
 *     [--seconds 4] [--grad-batch 32] [--memory-model cnn-bn]
 */
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { provideModule, releaseBackend, selectBackend, describeSelection } from '../common/backend.ts';
import { softwareAdapterReason, adapterName, type AdapterDescription } from '../common/webgpu.ts';
import { MODEL_NAMES, parseModelName, type ModelName } from '../common/models.ts';
import { StepComputer } from '../worker/compute.ts';
import { compareWithCpu, forbidSyncReads, GPU_TRAIN_OPTIONS, type Comparison } from '../worker/gpu-check.ts';
import { initialWeights } from '../common/weights.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { tf } from '../common/tf.ts';

const TOLERANCE = 1e-3;

const { values } = parseArgs({
  options: {
    out: { type: 'string' },
    dawn: { type: 'string' },
    'wasm-dir': { type: 'string' },
    host: { type: 'string' },
    torch: { type: 'string' },
    expect: { type: 'string', default: 'nvidia' },
    batches: { type: 'string', default: '32,256,1024' },
    models: { type: 'string', default: MODEL_NAMES.join(',') },
    seconds: { type: 'string', default: '4' },
    'grad-batch': { type: 'string', default: '32' },
    'memory-model': { type: 'string', default: 'cnn-bn' },
  },
});
if (!values.out) throw new Error('gpu-smoke: --out FILE is required');
const expect = values.expect === 'software' ? 'software' : 'nvidia';
const batches = values.batches!.split(',').map(Number);
const models = values.models!.split(',').map(parseModelName);
const secondsPerPoint = Number(values.seconds);
const gradBatch = Number(values['grad-batch']);
const memoryModel = parseModelName(values['memory-model']!);

// In the bundle, the optional packages come from the bundle itself, dawn.node from its own path.
if (values.dawn) {
  const dawnPath = values.dawn;
  provideModule('webgpu', async () => createRequire(import.meta.url)(dawnPath));
}
provideModule('@tensorflow/tfjs-backend-webgpu', () => import('@tensorflow/tfjs-backend-webgpu'));
provideModule('@tensorflow/tfjs-backend-wasm', async () => {
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  if (values['wasm-dir']) wasm.setWasmPaths(`${values['wasm-dir']}/`);
  return wasm;
});

interface Throughput {
  model: ModelName;
  batch: number;
  imagesPerSecond: number;
  steps: number;
}

/** Trains `model` at `batch` on the active backend for about `seconds` (after 2 warm-up steps). */
async function throughput(model: ModelName, batch: number, seconds: number, options = GPU_TRAIN_OPTIONS): Promise<Throughput> {
  const c = new StepComputer(model, { kind: 'scale' });
  try {
    c.setWeights(initialWeights(c.layout, 1));
    const { images, labels } = generateSynthetic(Uint32Array.from({ length: batch }, (_, i) => i), 'dev', 1);
    for (let i = 0; i < 2; i++) await c.train(images, labels, options); // shader compilation, buffer pools
    const started = performance.now();
    let steps = 0;
    while (steps < 3 || (performance.now() - started < seconds * 1000 && steps < 200)) {
      await c.train(images, labels, options);
      steps++;
    }
    return { model, batch, steps, imagesPerSecond: Math.round((steps * batch * 1000) / (performance.now() - started)) };
  } finally {
    c.dispose();
  }
}

/** tf.memory() after each of 20 steps (setWeights + train, as a worker does). */
async function memoryOver20Steps(model: ModelName): Promise<{ model: ModelName; numTensors: number[]; numBytes: number[]; flat: boolean }> {
  const c = new StepComputer(model, { kind: 'scale' });
  const weights = initialWeights(c.layout, 2);
  const { images, labels } = generateSynthetic(Uint32Array.from({ length: 32 }, (_, i) => i), 'dev', 2);
  const numTensors: number[] = [];
  const numBytes: number[] = [];
  for (let i = 0; i < 20; i++) {
    c.setWeights(weights);
    await c.train(images, labels, GPU_TRAIN_OPTIONS);
    numTensors.push(tf.memory().numTensors);
    numBytes.push(tf.memory().numBytes);
  }
  c.dispose();
  return { model, numTensors, numBytes, flat: numTensors.every((n) => n === numTensors[0]) && numBytes.every((n) => n === numBytes[0]) };
}

function adapterCheck(a: AdapterDescription | undefined): { expected: string; pass: boolean; reason: string } {
  if (!a) return { expected: expect, pass: false, reason: 'no adapter' };
  const software = softwareAdapterReason(a);
  if (expect === 'software') return { expected: 'a software adapter (dry run)', pass: !!software, reason: software ?? `${adapterName(a)} is not a software adapter` };
  const nvidia = /nvidia/i.test(`${a.vendor} ${a.description} ${a.device}`);
  if (software) return { expected: 'NVIDIA GPU', pass: false, reason: `${software}: Vulkan did not find the NVIDIA driver (see icd in this report)` };
  return { expected: 'NVIDIA GPU', pass: nvidia, reason: nvidia ? `${adapterName(a)}` : `${adapterName(a)} is not NVIDIA` };
}

function readJson(path: string | undefined): unknown {
  if (!path || !existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    return { unreadable: path, error: (err as Error).message };
  }
}

interface TorchReport {
  available: boolean;
  device?: string;
  results?: { model: string; batch: number; imagesPerSecond: { median: number } }[];
}

const started = performance.now();
const report: Record<string, unknown> = { started: new Date().toISOString(), node: process.version, host: readJson(values.host) };
const failures: string[] = [];
/** Set when every check has run: a report left by a timeout never passes. */
let complete = false;
function write(): void {
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  report.failures = failures;
  report.complete = complete;
  report.pass = complete && failures.length === 0;
  writeFileSync(values.out!, `${JSON.stringify(report, null, 2)}\n`);
}

try {
  const selection = await selectBackend('webgpu');
  report.backend = describeSelection(selection);
  report.adapter = { ...selection.adapter, check: adapterCheck(selection.adapter) };
  const check = adapterCheck(selection.adapter);
  if (!check.pass) failures.push(`adapter: expected ${check.expected}, got ${check.reason}`);
  write();

  const gradients: Comparison[] = [];
  for (const model of MODEL_NAMES) {
    const allow = forbidSyncReads('webgpu');
    try {
      const c = await compareWithCpu('webgpu', model, gradBatch);
      gradients.push(c);
      const worst = Math.max(c.gradientMaxRelativeError, c.lossRelativeError, c.evalLossRelativeError);
      if (!(worst < TOLERANCE)) failures.push(`${model}: relative error ${worst} vs cpu (tolerance ${TOLERANCE})`);
    } catch (err) {
      failures.push(`${model}: ${(err as Error).message}`);
    } finally {
      allow();
    }
    report.gradients = { tolerance: TOLERANCE, batch: gradBatch, results: gradients };
    write();
  }

  await tf.setBackend('webgpu');
  const memory = await memoryOver20Steps(memoryModel);
  report.memory = memory;
  if (!memory.flat) failures.push(`tf.memory grew over 20 steps: ${memory.numTensors[0]} -> ${memory.numTensors[19]} tensors`);
  write();

  const webgpu: Throughput[] = [];
  for (const model of models) for (const batch of batches) {
    webgpu.push(await throughput(model, batch, secondsPerPoint));
    report.throughput = { webgpu };
    write();
  }
  releaseBackend('webgpu');

  const wasmSelection = await selectBackend('wasm');
  const wasm: Throughput[] = [];
  for (const model of models) for (const batch of batches) {
    // One wasm worker, as `dtrain train` runs per core; fewer seconds: it is the slow side.
    wasm.push(await throughput(model, batch, Math.min(secondsPerPoint, 2), {}));
    report.throughput = { webgpu, wasm, wasmBackend: describeSelection(wasmSelection) };
    write();
  }

  const torch = readJson(values.torch) as TorchReport | undefined;
  const torchSpeed = (m: string, b: number) => torch?.results?.find((r) => r.model === m && r.batch === b)?.imagesPerSecond.median;
  const ratios = webgpu.map((g) => {
    const w = wasm.find((x) => x.model === g.model && x.batch === g.batch)!;
    const t = torchSpeed(g.model, g.batch);
    return { model: g.model, batch: g.batch, webgpu: g.imagesPerSecond, wasm: w.imagesPerSecond, webgpuOverWasm: Math.round((g.imagesPerSecond / w.imagesPerSecond) * 100) / 100, torch: t ?? null, webgpuOverTorch: t ? Math.round((g.imagesPerSecond / t) * 1000) / 1000 : null };
  });
  report.throughput = { webgpu, wasm, wasmBackend: describeSelection(wasmSelection), wasmKernels: wasmSelection.kernels ?? null, torch: torch ?? 'not measured', ratios };
} catch (err) {
  failures.push((err as Error).stack ?? String(err));
}
complete = true;
write();
releaseBackend('webgpu');
process.stdout.write(`gpu-smoke: ${failures.length === 0 ? 'PASS' : 'FAIL'} (${values.out})\n${failures.map((f) => `  - ${f}\n`).join('')}`);
process.exitCode = failures.length === 0 ? 0 : 1;
