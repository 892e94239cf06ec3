/**
 * Training throughput on the wasm backend, stock tfjs against ours and against PyTorch, in one run:
 *
 *   baseline  stock tfjs `model.fit` (Adam 0.001, categorical cross-entropy) with the stock wasm
 *             kernels plus the naive JavaScript Conv2DBackpropFilter (the minimum that lets a
 *             convolution train on wasm at all); inputs already float tensors. --skip-baseline skips it.
 *   ours      `StepComputer.trainInto` with the kernel set `backend_selected` would report (`onednn`
 *             when the native addon loads, else `wasm`): preprocessing from uint8 bytes, forward,
 *             backward and copying every gradient into arrays made once, as the shared-memory
 *             step's slot (no optimizer step: that runs on flat arrays, after).
 *   wasm      the same with our wasm kernels only, when ours is `onednn`.
 *   torch     PyTorch on one thread (scripts/bench-torch.py --serve, Adam included) where
 *             /usr/bin/python3 or python3 imports torch.
 *
 * ours, wasm and torch are measured interleaved, run by run, so that a shared machine's load hits
 * them alike; each row records the load average seen during its runs. Each measurement: warm-up
 * steps, then the median of several timed runs with their min and max. Each row also states the
 * physical limit: training FLOPs per image (forward, both gradients, less the first layer's
 * input gradient) and the GFLOP/s that ours reached.
 *
 * `--profile` instead prints, per model, where one `StepComputer.train` step spends its kernel
 * time (tf.profile, timed in CPU time) with the stock kernels, our wasm kernels and the native
 * ones, and the step's CPU time outside kernels (tfjs's engine and StepComputer): the tables in
 * docs/kernels.md.
 *
 *   npx tsx scripts/bench-compute.ts [--quick] [--models mlp,lenet] [--batch 32,128] [--json out.json]
 *                                    [--skip-baseline] [--no-torch] [--profile]
 */
import os from 'node:os';
import { spawn, spawnSync, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { tf, type Tensor } from '../common/tf.ts';
import { selectBackend } from '../common/backend.ts';
import { installWasmTrainingKernels, useStockWasmKernels } from '../common/kernels/install.ts';
import { activeKernelSet, installTrainingKernels, uninstallNativeKernels, type KernelSet } from '../common/kernels/native/install-native.ts';
import { buildModel, IMAGE_SHAPE, IMAGE_SIZE, MODEL_NAMES, MODEL_SPECS, NUM_CLASSES, parseModelName, type ModelName } from '../common/models.ts';
import { fitPreprocessing, preprocessBatch, oneHot, type Preprocessing } from '../common/data/preprocess.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { StepComputer, type GradientTarget } from '../worker/compute.ts';
import { trainingFlopsPerImage } from '../coordinator/thread-count.ts';
import { ConfigError } from '../common/errors.ts';

interface Settings {
  quick: boolean;
  profile: boolean;
  baseline: boolean;
  torch: boolean;
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
  /** Stock tfjs; absent with --skip-baseline. */
  baseline?: Throughput;
  /** The kernel set `ours` ran with. */
  kernels: KernelSet;
  ours: Throughput;
  speedup?: number;
  /** Our wasm kernels alone, measured when `ours` is onednn. */
  wasm?: Throughput;
  torch?: Throughput;
  /** ours ÷ torch, medians. */
  ratio?: number;
  /** CPU milliseconds per step of each peer's process (median over the runs), and torch's ÷ ours. */
  cpuMsPerStep: Partial<Record<Peer['name'], number>>;
  cpuRatio?: number;
  /** Training FLOPs per image, and what ours reached in GFLOP/s (median wall time; and by CPU time, ours and torch). */
  flopsPerImage: number;
  gflops: number;
  cpuGflops: Partial<Record<Peer['name'], number>>;
  /** 1-minute load average: lowest and highest seen during the interleaved runs. */
  loadAverage: [number, number];
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      'skip-baseline': { type: 'boolean', default: false },
      'no-torch': { type: 'boolean', default: false },
      models: { type: 'string' },
      batch: { type: 'string', default: '32,128' },
      json: { type: 'string' },
    },
  });
  const models = values.models ? values.models.split(',').map((m) => parseModelName(m.trim())) : [...MODEL_NAMES];
  const batches = values.batch!.split(',').map((b) => Number(b));
  if (batches.some((b) => !Number.isInteger(b) || b < 1)) throw new ConfigError(`--batch must be positive integers, got "${values.batch}".`);
  return { quick: values.quick!, profile: values.profile!, baseline: !values['skip-baseline'], torch: !values['no-torch'], models, batches, json: values.json };
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
  return fitPreprocessing(MODEL_SPECS[model].input, { images, labels: new Uint8Array(count), count });
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
  uninstallNativeKernels();
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

/**
 * One side of an interleaved comparison: runs `steps` training steps and says how long they took,
 * in wall-clock seconds and in CPU seconds of its process (on a loaded machine the CPU time is the
 * steadier measure of the work itself; both peers run single-threaded).
 */
interface Peer {
  name: 'ours' | 'wasm' | 'torch';
  run(steps: number): Promise<{ seconds: number; cpuSeconds: number }>;
  dispose(): void;
}

/** This process's CPU milliseconds (user and system) since `since`. */
const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};

/**
 * StepComputer.trainInto with a kernel set switched in before each run (the switch is not timed):
 * the gradient sums go into arrays made once, as the shared-memory step's slot holds them. (train,
 * the message path's call, packs them into a new array each step; on a VM whose fresh pages are
 * expensive that allocation alone cost 0.4-0.9 ms per 1.6 MB, more than the MLP's compute.)
 */
function tfjsPeer(name: 'ours' | 'wasm', kernels: () => void, model: ModelName, prep: Preprocessing, data: { images: Uint8Array; labels: Uint8Array }): Peer {
  kernels();
  const computer = new StepComputer(model, prep);
  let target: GradientTarget | undefined;
  return {
    name,
    async run(steps) {
      kernels();
      if (!target) {
        const first = await computer.train(data.images, data.labels);
        target = { gradientSum: new Float32Array(first.gradientSum.length), stats: new Float32Array(first.stats.length) };
      }
      const into = target;
      const start = performance.now();
      const cpu = process.cpuUsage();
      for (let s = 0; s < steps; s++) await computer.trainInto(data.images, data.labels, () => into);
      const cpuSeconds = cpuMs(cpu) / 1000;
      return { seconds: (performance.now() - start) / 1000, cpuSeconds };
    },
    dispose: () => computer.dispose(),
  };
}

/** scripts/bench-torch.py --serve, one process for the whole benchmark. */
class TorchServer {
  private readonly lines: AsyncIterableIterator<string>;
  private constructor(private readonly child: ChildProcessByStdio<Writable, Readable, null>, readonly python: string) {
    this.lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  /** Undefined (with the reason printed) where no python imports torch: PyTorch is optional. */
  static async start(): Promise<{ server?: TorchServer; version?: string; config?: string; reason?: string }> {
    // Debian's python3-torch lives under /usr/bin/python3, which a pyenv or venv python3 may shadow.
    const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 }).status === 0);
    if (!python) return { reason: 'neither python3 nor /usr/bin/python3 can import torch (Debian: python3-torch)' };
    const child = spawn(python, ['scripts/bench-torch.py', '--serve', '--threads', '1'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const server = new TorchServer(child, python);
    const hello = JSON.parse(await server.next()) as { available: boolean; version?: string; config?: string; reason?: string };
    if (!hello.available) {
      server.dispose();
      return { reason: hello.reason };
    }
    return { server, version: hello.version, config: hello.config };
  }

  private async next(): Promise<string> {
    const { value, done } = await this.lines.next();
    if (done) throw new Error('scripts/bench-torch.py --serve exited early');
    return value;
  }

  peer(model: ModelName, batch: number): Peer {
    return {
      name: 'torch',
      run: async (steps) => {
        this.child.stdin.write(JSON.stringify({ model, batch, steps }) + '\n');
        return JSON.parse(await this.next()) as { seconds: number; cpuSeconds: number };
      },
      dispose: () => undefined,
    };
  }

  dispose(): void {
    this.child.stdin.end();
    this.child.kill();
  }
}

/**
 * Interleaved timing: warm-up, one step to size the runs (each about `runSeconds`), then round
 * after round one timed run of every peer, recording the load average as it goes.
 */
async function interleaved(peers: Peer[], batch: number, settings: Settings): Promise<{ results: Map<Peer['name'], Throughput>; cpuMsPerStep: Map<Peer['name'], number>; load: [number, number] }> {
  const runSeconds = settings.quick ? 0.3 : 1.2;
  const runCount = settings.quick ? 3 : 7;
  const warmup = settings.quick ? 1 : 2;
  const stepsPerRun = new Map<Peer['name'], number>();
  for (const p of peers) {
    await p.run(warmup);
    stepsPerRun.set(p.name, Math.max(1, Math.round(runSeconds / (await p.run(1)).seconds)));
  }
  const runs = new Map<Peer['name'], number[]>(peers.map((p) => [p.name, []]));
  const cpu = new Map<Peer['name'], number[]>(peers.map((p) => [p.name, []]));
  const loads: number[] = [os.loadavg()[0]];
  for (let r = 0; r < runCount; r++) {
    for (const p of peers) {
      const steps = stepsPerRun.get(p.name)!;
      const { seconds, cpuSeconds } = await p.run(steps);
      runs.get(p.name)!.push((steps * batch) / seconds);
      cpu.get(p.name)!.push((1000 * cpuSeconds) / steps);
    }
    loads.push(os.loadavg()[0]);
  }
  const results = new Map([...runs].map(([name, r]) => [name, summarise(r, stepsPerRun.get(name)!)]));
  const cpuMsPerStep = new Map([...cpu].map(([name, c]) => [name, summarise(c, stepsPerRun.get(name)!).median]));
  return { results, cpuMsPerStep, load: [Math.min(...loads), Math.max(...loads)].map((l) => Number(l.toFixed(2))) as [number, number] };
}


/** The clock /proc/cpuinfo reports, in GHz (the nominal one on a VM, where os.cpus() says 0); undefined elsewhere. */
function clockGHz(): number | undefined {
  let mhz = os.cpus()[0]?.speed || undefined;
  if (!mhz && existsSync('/proc/cpuinfo')) mhz = Number(/^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]) || undefined;
  return mhz ? mhz / 1000 : undefined;
}

/** AMD's CPU family from /proc/cpuinfo (25: Zen 3 and 4, 26: Zen 5), undefined elsewhere. */
function amdFamily(): number | undefined {
  if (!existsSync('/proc/cpuinfo')) return undefined;
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  if (!/^vendor_id\s*:\s*AuthenticAMD/m.test(info)) return undefined;
  return Number(/^cpu family\s*:\s*(\d+)/m.exec(info)?.[1]) || undefined;
}

/**
 * One core's float32 peak. AVX-512: two FMA pipes; Zen 4 (AMD family 25) runs each 512-bit FMA as
 * two 256-bit halves, 32 FLOP/cycle; Zen 5 (family 26) and Intel's server cores have full-width
 * pipes, 64 FLOP/cycle. wasm SIMD128 has no FMA: at best two 4-lane multiplies and two 4-lane adds
 * a cycle, 16 FLOP/cycle.
 */
function peaks(): { clockGHz?: number; avx512FlopsPerCycle: number; avx512Gflops?: number; simd128Gflops?: number } {
  const ghz = clockGHz();
  const avx512FlopsPerCycle = amdFamily() === 25 ? 32 : 64;
  return ghz ? { clockGHz: ghz, avx512FlopsPerCycle, avx512Gflops: avx512FlopsPerCycle * ghz, simd128Gflops: 16 * ghz } : { avx512FlopsPerCycle };
}

/** The lines of torch.__config__.show() that say what computes: oneDNN's version, the CPU path, the BLAS. */
function torchSummary(config: string): string {
  const dnn = /MKL-DNN v([\d.]+)/.exec(config)?.[1];
  const capability = /CPU capability usage: (\S+)/.exec(config)?.[1];
  const blas = /BLAS_INFO=([^,]+)/.exec(config)?.[1];
  return `oneDNN ${dnn ?? '?'}, CPU capability ${capability ?? '?'}, BLAS_INFO=${blas ?? '?'}`;
}

async function compare(model: ModelName, batch: number, data: { images: Uint8Array; labels: Uint8Array }, prep: Preprocessing, settings: Settings, torch?: TorchServer): Promise<Row> {
  const baselineResult = settings.baseline ? await baseline(model, batch, data, prep, settings) : undefined;
  const set = installTrainingKernels().set;
  const peers: Peer[] = [tfjsPeer('ours', () => installTrainingKernels(), model, prep, data)];
  if (set === 'onednn') peers.push(tfjsPeer('wasm', () => (uninstallNativeKernels(), installWasmTrainingKernels()), model, prep, data));
  if (torch) peers.push(torch.peer(model, batch));
  try {
    const { results, cpuMsPerStep, load } = await interleaved(peers, batch, settings);
    installTrainingKernels();
    const ours = results.get('ours')!;
    const torchResult = results.get('torch');
    const flopsPerImage = trainingFlopsPerImage(model);
    return {
      model,
      batch,
      baseline: baselineResult,
      kernels: set,
      ours,
      speedup: baselineResult ? ours.median / baselineResult.median : undefined,
      wasm: results.get('wasm'),
      torch: torchResult,
      ratio: torchResult ? ours.median / torchResult.median : undefined,
      cpuMsPerStep: Object.fromEntries(cpuMsPerStep),
      cpuRatio: cpuMsPerStep.has('torch') ? cpuMsPerStep.get('torch')! / cpuMsPerStep.get('ours')! : undefined,
      flopsPerImage,
      gflops: (ours.median * flopsPerImage) / 1e9,
      cpuGflops: Object.fromEntries([...cpuMsPerStep].map(([name, ms]) => [name, (batch * flopsPerImage) / (ms * 1e6)])),
      loadAverage: load,
    };
  } finally {
    for (const p of peers) p.dispose();
  }
}

function fmt(t: Throughput | undefined): string {
  return t ? `${t.median.toFixed(0)} (${t.min.toFixed(0)}–${t.max.toFixed(0)})` : '–';
}

function table(rows: Row[]): string {
  const peak = peaks();
  const lines = [
    '| model | batch | kernels | ours: StepComputer.trainInto, img/s | wasm kernels, img/s | PyTorch, img/s | ours ÷ PyTorch | CPU ms/step ours / wasm / PyTorch | by CPU time | MFLOP/img | ours GFLOP/s (of peak) | by CPU time: ours (of peak) / PyTorch | load | baseline: stock tfjs fit | speedup |',
    '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    const peakOf = r.kernels === 'onednn' ? peak.avx512Gflops : peak.simd128Gflops;
    const ofPeak = (gflops: number) => (peakOf ? ` (${((100 * gflops) / peakOf).toFixed(0)}%)` : '');
    lines.push(`| ${r.model} | ${r.batch} | ${r.kernels} | ${fmt(r.ours)} | ${fmt(r.wasm)} | ${fmt(r.torch)} | ${r.ratio?.toFixed(2) ?? '–'} | ${(['ours', 'wasm', 'torch'] as const).map((n) => r.cpuMsPerStep[n]?.toFixed(1) ?? '–').join(' / ')} | ${r.cpuRatio?.toFixed(2) ?? '–'} | ${(r.flopsPerImage / 1e6).toFixed(2)} | ${r.gflops.toFixed(1)}${ofPeak(r.gflops)} | ${r.cpuGflops.ours?.toFixed(1)}${r.cpuGflops.ours ? ofPeak(r.cpuGflops.ours) : ''} / ${r.cpuGflops.torch?.toFixed(1) ?? '–'} | ${r.loadAverage.join('–')} | ${fmt(r.baseline)} | ${r.speedup ? `${r.speedup.toFixed(1)}×` : '–'} |`);
  }
  return lines.join('\n');
}

interface KernelCost {
  kernel: string;
  ms: number;
  calls: number;
}

/**
 * CPU time, not wall time: on a shared machine a kernel's wall time includes whatever ran while it
 * was descheduled. The wasm backend times kernels for tf.profile with its `time(f)`; for the
 * profile it measures this process's CPU time instead (getrusage, microseconds).
 */
function withCpuTimer<T>(f: () => Promise<T>): Promise<T> {
  const backend = tf.backend() as unknown as { time(f: () => void): Promise<{ kernelMs: number }> };
  const wallTimer = backend.time;
  backend.time = async (g) => {
    const start = process.cpuUsage();
    g();
    return { kernelMs: cpuMs(start) };
  };
  return f().finally(() => (backend.time = wallTimer));
}

/** CPU time per step of StepComputer.train, and per kernel (by name and input shapes), most expensive first. */
async function profileSteps(model: ModelName, batch: number, data: { images: Uint8Array; labels: Uint8Array }, prep: Preprocessing, steps: number): Promise<{ stepMs: number; kernelMs: number; costs: KernelCost[] }> {
  const computer = new StepComputer(model, prep);
  try {
    await computer.train(data.images, data.labels);
    await computer.train(data.images, data.labels);
    const start = process.cpuUsage();
    for (let s = 0; s < steps; s++) await computer.train(data.images, data.labels);
    const stepMs = cpuMs(start) / steps;
    const info = await withCpuTimer(() =>
      tf.profile(async () => {
        for (let s = 0; s < steps; s++) await computer.train(data.images, data.labels);
      }),
    );
    const byKernel = new Map<string, KernelCost>();
    for (const k of info.kernels) {
      // tfjs's `op()` wrappers of fused ops (fusedConv2d__op, fusedMatMul__op) are profiled as entries
      // of their own whose time includes the kernel inside them: counting both made "outside
      // kernels" negative.
      if (k.name.endsWith('__op')) continue;
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

/** Installs one kernel set for profiling: stock tfjs (+ the naive filter gradient), our wasm kernels, or the native ones. */
function useKernels(kernels: 'stock' | KernelSet): void {
  uninstallNativeKernels();
  if (kernels === 'stock') useStockWasmKernels();
  else if (kernels === 'wasm') installWasmTrainingKernels();
  else installTrainingKernels();
}

async function profile(settings: Settings): Promise<void> {
  const top = 8;
  const sets: ('stock' | KernelSet)[] = ['stock', 'wasm'];
  if (installTrainingKernels().set === 'onednn') sets.push('onednn');
  for (const batch of settings.batches) {
    const data = syntheticBatch(batch, 1234 + batch);
    for (const model of settings.models) {
      const prep = preprocessingFor(model, data.images, batch);
      for (const kernels of sets) {
        useKernels(kernels);
        const steps = kernels === 'stock' ? (model.startsWith('cnn') ? 2 : 5) : 20;
        const { stepMs, kernelMs, costs } = await profileSteps(model, batch, data, prep, steps);
        const outside = stepMs - kernelMs;
        console.log(`\n${model}, batch ${batch}, ${kernels} kernels: ${stepMs.toFixed(2)} CPU ms per step, ${kernelMs.toFixed(1)} ms in ${costs.reduce((a, c) => a + c.calls, 0).toFixed(0)} kernel calls, ${outside.toFixed(1)} ms (${((100 * outside) / stepMs).toFixed(0)}%) outside kernels (engine, StepComputer); load ${os.loadavg()[0].toFixed(1)}\n`);
        console.log('| kernel and input shapes | CPU ms/step | share of kernel time |\n|---|---:|---:|');
        for (const c of costs.slice(0, top)) console.log(`| ${c.kernel}${c.calls > 1 ? ` ×${c.calls.toFixed(0)}` : ''} | ${c.ms.toFixed(2)} | ${((100 * c.ms) / kernelMs).toFixed(0)}% |`);
      }
    }
  }
  installTrainingKernels();
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
  const kernels = activeKernelSet();
  const peak = peaks();
  const started = new Date();
  console.log(`# bench-compute ${started.toISOString()} on ${machine.cpu} (${machine.cores} cores, load ${machine.loadAverageAtStart.join(' ')}), node ${machine.node}, tfjs ${machine.tfjs} ${machine.backend}${settings.quick ? ', quick' : ''}`);
  console.log(`# kernels: ${kernels?.set} (${kernels?.reason}); peak per core at ${peak.clockGHz?.toFixed(2)} GHz: AVX-512 ${peak.avx512Gflops?.toFixed(0)} GFLOP/s, SIMD128 ${peak.simd128Gflops?.toFixed(0)} GFLOP/s`);
  if (settings.profile) {
    await profile(settings);
    return;
  }
  const torch = settings.torch ? await TorchServer.start() : { reason: '--no-torch' };
  console.log(torch.server ? `# PyTorch ${torch.version} (${torch.server.python}), 1 thread: ${torchSummary(torch.config ?? '')}` : `# PyTorch: not measured (${torch.reason})`);
  console.log('Images/s: median of timed runs (min–max), ours, wasm and PyTorch interleaved run by run; numbers from a shared machine are noisy.\n');
  const rows: Row[] = [];
  try {
    for (const batch of settings.batches) {
      const data = syntheticBatch(batch, 1234 + batch);
      for (const model of settings.models) {
        const prep = preprocessingFor(model, data.images, batch);
        const row = await compare(model, batch, data, prep, settings, torch.server);
        rows.push(row);
        console.log(`${model} batch ${batch}: ours (${row.kernels}) ${fmt(row.ours)}, wasm ${fmt(row.wasm)}, torch ${fmt(row.torch)} img/s, ratio ${row.ratio?.toFixed(2) ?? '–'} (by CPU time ${row.cpuRatio?.toFixed(2) ?? '–'}), ${row.gflops.toFixed(1)} GFLOP/s, load ${row.loadAverage.join('–')}${row.baseline ? `; baseline ${fmt(row.baseline)} (${row.speedup!.toFixed(1)}×)` : ''}`);
      }
    }
  } finally {
    torch.server?.dispose();
  }
  installTrainingKernels();
  const seconds = (Date.now() - started.getTime()) / 1000;
  const loadAverageAtEnd = os.loadavg().map((l) => Number(l.toFixed(2)));
  console.log(`\n${table(rows)}\n\n(${seconds.toFixed(0)} s; load average at the end ${loadAverageAtEnd.join(' ')})`);
  if (settings.json) {
    const report = { date: started.toISOString(), machine: { ...machine, kernels: kernels?.set, kernelsReason: kernels?.reason, peak, loadAverageAtEnd }, torch: torch.server ? { version: torch.version, python: torch.server.python, config: torch.config } : { reason: torch.reason }, quick: settings.quick, seconds, results: rows };
    writeFileSync(settings.json, JSON.stringify(report, null, 2) + '\n');
    console.log(`Wrote ${settings.json}`);
  }
}

await main();
