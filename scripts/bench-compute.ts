/**
 * Training throughput on the wasm backend, stock tfjs against ours, in one process and one run:
 *
 *   baseline  stock tfjs `model.fit` (Adam 0.001, categorical cross-entropy) with the stock wasm
 *             kernels plus the naive JavaScript Conv2DBackpropFilter (the minimum that lets a
 *             convolution train on wasm at all); inputs already float tensors.
 *   ours      `StepComputer.train` with our kernels installed: preprocessing from uint8 bytes,
 *             forward, backward and reading every gradient back (no optimizer step: that runs on
 *             the coordinator, on flat arrays).
 *
 * Each measurement: warm-up steps, then the median of several timed runs with their min and max.
 *
 * `--profile` instead prints, per model, where one `StepComputer.train` step spends its kernel
 * time (tf.profile) with the stock kernels and with ours: the tables in docs/kernels.md.
 *
 *   npx tsx scripts/bench-compute.ts [--quick] [--models mlp,lenet] [--batch 32,128] [--json out.json] [--profile]
 */
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { tf, type Tensor } from '../common/tf.ts';
import { selectBackend } from '../common/backend.ts';
import { installWasmTrainingKernels, useStockWasmKernels } from '../common/kernels/install.ts';
import { buildModel, IMAGE_SHAPE, IMAGE_SIZE, MODEL_NAMES, MODEL_SPECS, NUM_CLASSES, parseModelName, type ModelName } from '../common/models.ts';
import { fitStandardization, preprocessBatch, oneHot, type Preprocessing } from '../common/data/preprocess.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { StepComputer } from '../worker/compute.ts';
import { ConfigError } from '../common/errors.ts';

interface Settings {
  quick: boolean;
  profile: boolean;
  models: ModelName[];
  batches: number[];
  json?: string;
}

interface Throughput {
  /** Images per second: the median run, and the slowest and fastest. */
  median: number;
  min: number;
  max: number;
  runs: number[];
  stepsPerRun: number;
}

interface Row {
  model: ModelName;
  batch: number;
  baseline: Throughput;
  ours: Throughput;
  speedup: number;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: 'boolean', default: false }, profile: { type: 'boolean', default: false }, models: { type: 'string' }, batch: { type: 'string', default: '32' }, json: { type: 'string' } },
  });
  const models = values.models ? values.models.split(',').map((m) => parseModelName(m.trim())) : [...MODEL_NAMES];
  const batches = values.batch!.split(',').map((b) => Number(b));
  if (batches.some((b) => !Number.isInteger(b) || b < 1)) throw new ConfigError(`--batch must be positive integers, got "${values.batch}".`);
  return { quick: values.quick!, profile: values.profile!, models, batches, json: values.json };
}

/**
 * The project's synthetic CIFAR-like images (stripes, blobs, noise): timing depends a little on the
 * data (max pooling's comparisons branch on it), and these behave more like photographs than noise.
 */
function syntheticBatch(count: number, seed: number): { images: Uint8Array; labels: Uint8Array } {
  const { images, labels } = generateSynthetic(Uint32Array.from({ length: count }, (_, i) => i), 'dev', seed);
  return { images, labels };
}

function preprocessingFor(model: ModelName, images: Uint8Array, count: number): Preprocessing {
  return MODEL_SPECS[model].input === 'flat-standardized' ? fitStandardization({ images, labels: new Uint8Array(count), count }) : { kind: 'scale' };
}

function summarise(runs: number[], stepsPerRun: number): Throughput {
  const sorted = [...runs].sort((a, b) => a - b);
  return { median: sorted[Math.floor(sorted.length / 2)], min: sorted[0], max: sorted[sorted.length - 1], runs, stepsPerRun };
}

/**
 * Times `step` (one batch): warm-up, then an estimate of one step's time sets how many steps a run
 * needs to last about `runSeconds`; returns images/s per run.
 */
async function measure(step: (steps: number) => Promise<void>, batch: number, settings: Settings, prepare?: (steps: number) => void): Promise<Throughput> {
  // A full run takes about 1.5 min for the four models at one batch size; --quick about 15 s.
  const runSeconds = settings.quick ? 0.3 : 1.2;
  const runCount = settings.quick ? 3 : 7;
  const warmup = settings.quick ? 1 : 2;
  prepare?.(warmup);
  await step(warmup);
  prepare?.(1);
  const t0 = performance.now();
  await step(1);
  const stepSeconds = (performance.now() - t0) / 1000;
  const stepsPerRun = Math.max(1, Math.round(runSeconds / stepSeconds));
  prepare?.(stepsPerRun);
  const runs: number[] = [];
  for (let r = 0; r < runCount; r++) {
    const start = performance.now();
    await step(stepsPerRun);
    runs.push((stepsPerRun * batch) / ((performance.now() - start) / 1000));
  }
  return summarise(runs, stepsPerRun);
}

async function baseline(model: ModelName, batch: number, data: { images: Uint8Array; labels: Uint8Array }, prep: Preprocessing, settings: Settings): Promise<Throughput> {
  useStockWasmKernels();
  const net = buildModel(model);
  net.compile({ optimizer: tf.train.adam(0.001), loss: 'categoricalCrossentropy' });
  const shape = MODEL_SPECS[model].input === 'flat-standardized' ? [batch, IMAGE_SIZE] : [batch, ...IMAGE_SHAPE];
  const x = tf.tensor(preprocessBatch(data.images, prep), shape);
  const y = tf.tensor2d(oneHot(data.labels, NUM_CLASSES), [batch, NUM_CLASSES]);
  // One batch per fit call, repeated: every step sees the same batch, and fit's per-epoch setup is
  // part of the cost a stock training loop pays too.
  let xs: Tensor | undefined;
  let ys: Tensor | undefined;
  const prepare = (steps: number) => {
    tf.dispose([xs, ys].filter((t): t is Tensor => t !== undefined));
    xs = tf.concat(Array.from({ length: steps }, () => x));
    ys = tf.concat(Array.from({ length: steps }, () => y));
  };
  const step = async () => {
    await net.fit(xs!, ys!, { batchSize: batch, epochs: 1, shuffle: false, verbose: 0, yieldEvery: 'never' });
  };
  try {
    return await measure(step, batch, settings, prepare);
  } finally {
    tf.dispose([x, y, xs, ys].filter((t): t is Tensor => t !== undefined));
    net.dispose();
  }
}

async function ours(model: ModelName, batch: number, data: { images: Uint8Array; labels: Uint8Array }, prep: Preprocessing, settings: Settings): Promise<Throughput> {
  installWasmTrainingKernels();
  const computer = new StepComputer(model, prep);
  const step = async (steps: number) => {
    for (let s = 0; s < steps; s++) await computer.train(data.images, data.labels);
  };
  try {
    return await measure(step, batch, settings);
  } finally {
    computer.dispose();
  }
}

function fmt(t: Throughput): string {
  return `${t.median.toFixed(0)} (${t.min.toFixed(0)}–${t.max.toFixed(0)})`;
}

function table(rows: Row[]): string {
  const lines = [
    '| model | batch | baseline: stock tfjs fit, img/s | ours: StepComputer.train, img/s | speedup |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const r of rows) lines.push(`| ${r.model} | ${r.batch} | ${fmt(r.baseline)} | ${fmt(r.ours)} | ${r.speedup.toFixed(1)}× |`);
  return lines.join('\n');
}

interface KernelCost {
  kernel: string;
  ms: number;
  calls: number;
}

/** Kernel time per step of StepComputer.train, by kernel name and input shapes, most expensive first. */
async function profileSteps(model: ModelName, batch: number, data: { images: Uint8Array; labels: Uint8Array }, prep: Preprocessing, steps: number): Promise<{ stepMs: number; kernelMs: number; costs: KernelCost[] }> {
  const computer = new StepComputer(model, prep);
  try {
    await computer.train(data.images, data.labels);
    await computer.train(data.images, data.labels);
    const t0 = performance.now();
    for (let s = 0; s < steps; s++) await computer.train(data.images, data.labels);
    const stepMs = (performance.now() - t0) / steps;
    const info = await tf.profile(async () => {
      for (let s = 0; s < steps; s++) await computer.train(data.images, data.labels);
    });
    const byKernel = new Map<string, KernelCost>();
    for (const k of info.kernels) {
      const key = `${k.name} ${k.inputShapes.map((sh) => `[${sh ?? ''}]`).join(' ')}`;
      const cost = byKernel.get(key) ?? { kernel: key, ms: 0, calls: 0 };
      cost.ms += (k.kernelTimeMs as number) / steps;
      cost.calls += 1 / steps;
      byKernel.set(key, cost);
    }
    const costs = [...byKernel.values()].sort((a, b) => b.ms - a.ms);
    return { stepMs, kernelMs: costs.reduce((a, c) => a + c.ms, 0), costs };
  } finally {
    computer.dispose();
  }
}

async function profile(settings: Settings): Promise<void> {
  const top = 8;
  for (const batch of settings.batches) {
    const data = syntheticBatch(batch, 1234 + batch);
    for (const model of settings.models) {
      const prep = preprocessingFor(model, data.images, batch);
      for (const kernels of ['stock', 'ours'] as const) {
        if (kernels === 'stock') useStockWasmKernels();
        else installWasmTrainingKernels();
        const steps = kernels === 'stock' && model.startsWith('cnn') ? 1 : 3;
        const { stepMs, kernelMs, costs } = await profileSteps(model, batch, data, prep, steps);
        console.log(`\n${model}, batch ${batch}, ${kernels} kernels: ${stepMs.toFixed(1)} ms per step, ${kernelMs.toFixed(1)} ms in ${costs.reduce((a, c) => a + c.calls, 0).toFixed(0)} kernel calls\n`);
        console.log('| kernel and input shapes | ms/step | share |\n|---|---:|---:|');
        for (const c of costs.slice(0, top)) console.log(`| ${c.kernel}${c.calls > 1 ? ` ×${c.calls.toFixed(0)}` : ''} | ${c.ms.toFixed(2)} | ${((100 * c.ms) / kernelMs).toFixed(0)}% |`);
      }
    }
  }
  installWasmTrainingKernels();
}

async function main(): Promise<void> {
  const settings = parseSettings(process.argv.slice(2));
  const backend = await selectBackend('wasm');
  const cpus = os.cpus();
  const machine = {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    node: process.version,
    backend: backend.name,
    tfjs: tf.version_core,
    loadAverageAtStart: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
  const started = new Date();
  console.log(`# bench-compute ${started.toISOString()} on ${machine.cpu} (${machine.cores} cores, load ${machine.loadAverageAtStart.join(' ')}), node ${machine.node}, tfjs ${machine.tfjs} ${machine.backend}${settings.quick ? ', quick' : ''}`);
  if (settings.profile) {
    await profile(settings);
    return;
  }
  console.log('Images/s: median of timed runs (min–max); numbers from a shared machine are noisy.\n');
  const rows: Row[] = [];
  for (const batch of settings.batches) {
    const data = syntheticBatch(batch, 1234 + batch);
    for (const model of settings.models) {
      const prep = preprocessingFor(model, data.images, batch);
      const base = await baseline(model, batch, data, prep, settings);
      const mine = await ours(model, batch, data, prep, settings);
      const row = { model, batch, baseline: base, ours: mine, speedup: mine.median / base.median };
      rows.push(row);
      console.log(`${model} batch ${batch}: baseline ${fmt(base)}, ours ${fmt(mine)} img/s (${row.speedup.toFixed(1)}×)`);
    }
  }
  installWasmTrainingKernels();
  const seconds = (Date.now() - started.getTime()) / 1000;
  const loadAverageAtEnd = os.loadavg().map((l) => Number(l.toFixed(2)));
  console.log(`\n${table(rows)}\n\n(${seconds.toFixed(0)} s; load average at the end ${loadAverageAtEnd.join(' ')})`);
  if (settings.json) {
    writeFileSync(settings.json, JSON.stringify({ date: started.toISOString(), machine: { ...machine, loadAverageAtEnd }, quick: settings.quick, seconds, results: rows }, null, 2) + '\n');
    console.log(`Wrote ${settings.json}`);
  }
}

await main();
