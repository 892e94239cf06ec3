/**
 * The benchmark suite: writes a JSON report and renders docs/BENCHMARKS.md from it.
 *
 *   1. compute per worker process     scripts/bench-compute.ts (and scripts/bench-torch.py if torch imports)
 *   2. scaling, 1, 2 and 4 workers    coordinator + worker processes over WebSockets on loopback
 *   3. where a step's time goes       the K=2 runs' step events, split with in-process message costs
 *   4. coordinator cost               Adam and averaging over 402,250 parameters, in-process
 *   5. time to accuracy               lenet to 50% validation accuracy with 1 and 2 workers
 *   0. issue 10 (scripts/bench-peers.ts): PyTorch with OpenBLAS (one process, DDP 2×1 gloo), `dtrain
 *      train` end to end for an epoch per model (peak RSS), in-process K=1 and K=2 at a batch per
 *      worker of 32, the coordinating thread's work per step, memory over 10,000 steps, and the
 *      seed workload (4 models × 20 epochs × 40,000 images) in minutes
 *
 *   npx tsx scripts/bench.ts [--quick] [--json out.json] [--markdown docs/BENCHMARKS.md]
 *                            [--skip compute,torch,scaling,coordinator,accuracy,peers,end-to-end,inprocess,coordinator-work,memory,pair]
 *                            [--from report.json] [--no-readme]
 *
 * A full run also rewrites the README's speed table (between its bench:readme markers) from the
 * same report; --quick, --skip and --no-readme leave the README alone (a partial run once replaced it).
 *
 * --from re-renders the Markdown from an existing report without measuring anything.
 * Full run: about 20–30 minutes on a quiet 2-core machine (an estimate: the sections before issue 10
 * took 432 s on 2026-11-26; issue 10's add roughly 12 minutes). --quick checks the tooling, not for
 * citing: 624 s on 2026-11-30 on this 2-core machine at load average ~20, a few minutes when quiet.
 */
import os from 'node:os';
import { ConfigError } from '../common/errors.ts';
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { tf } from '../common/tf.ts';
import { buildModel, countParameters, parseModelName } from '../common/models.ts';
import { GC_FLAG } from '../common/gc-mode.ts';
import { killAll } from '../test/processes.ts';
import {
  BENCH_SCHEMA_VERSION,
  type BatchMode,
  type BenchReport,
  type ComputeRow,
  type ComputeSection,
  type MachineInfo,
  type MessageCosts,
  type RunSpread,
  type ScalingRun,
  type ScalingSection,
  type TimeToAccuracyRun,
  type TimeToAccuracySection,
  type TorchSection,
} from './bench-report.ts';
import { evaluateGoals, GOALS } from './bench-stats.ts';
import { renderMarkdown } from './bench-markdown.ts';
import { coordinatorCosts, messageCosts } from './bench-micro.ts';
import { runScaling, runTimeToAccuracy, WEBSOCKET_TRANSPORT } from './bench-processes.ts';
import { measureCoordinatorWork, measureEndToEnd, measureInProcess, measureMemory, measurePeers, type PeersPlan } from './bench-peers.ts';
import { renderReadmeTable, replaceReadmeTable } from './bench-readme.ts';
import { measureComputePair, type ComputePairPlan } from './bench-compute-pair.ts';
import { measureStepCeilingInChild, type StepCeilingPlan } from './bench-step-ceiling.ts';
import { parseTorchSetup } from './torch-setup.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SECTIONS = ['compute', 'torch', 'scaling', 'coordinator', 'accuracy', 'peers', 'end-to-end', 'inprocess', 'coordinator-work', 'memory', 'pair', 'ceiling'] as const;
type Section = (typeof SECTIONS)[number];

/** Everything that differs between a full and a quick run. */
interface Plan {
  computeArgs: string[];
  torchArgs: string[];
  /** WebSocket runs per model: steps discarded as warm-up, then measured. */
  scaling: { model: string; warmupSteps: number; measuredSteps: number }[];
  workerCounts: number[];
  modes: BatchMode[];
  micro: { warmup: number; iterations: number };
  accuracy: { limitTrain: number; maxEpochs: number; runs: { workers: number; mode: BatchMode }[] };
  peers: PeersPlan;
  pair: ComputePairPlan;
  ceiling: StepCeilingPlan;
}

const MODELS = ['mlp', 'lenet', 'cnn-dropout', 'cnn-bn'];

const FULL: Plan = {
  computeArgs: ['--batch', '32,128'],
  torchArgs: ['--batch', '32,128'],
  // The steady state, as in-process: over its first 5 steps and 60 more, a lenet K=1 run averaged
  // 2,190 img/s (a 14.6 ms step), against 5,232 img/s (6.1 ms) over 200 steps after 200 (worker
  // processes still compiling, faulting and tiering up their wasm). 150 + 150 steps at K=4 with 32
  // per worker stay within the 40,000 synthetic training images, so no epoch ends inside a run.
  scaling: [{ model: 'lenet', warmupSteps: 150, measuredSteps: 150 }, { model: 'cnn-dropout', warmupSteps: 60, measuredSteps: 60 }],
  workerCounts: [1, 2, 4],
  modes: ['global', 'per-worker'],
  micro: { warmup: 20, iterations: 200 },
  accuracy: { limitTrain: 1000, maxEpochs: 10, runs: [{ workers: 1, mode: 'global' }, { workers: 2, mode: 'global' }, { workers: 2, mode: 'per-worker' }] },
  peers: {
    torch: { models: MODELS, seconds: 8 },
    endToEnd: { models: MODELS, trainImages: 40_000, rounds: 3, epochs: 2, pairedTorchSeconds: 4 },
    // 200 warm-up steps: a run's first 100-160 steps still fault on growing heaps and wait for the
    // JIT (docs/shared-step.md, "Page faults"), and bare compute, which these rows are held
    // against, is measured after its own warm-up. The coordinator's work is measured over 400
    // steps: with K=2 at 32 each, 600 steps fit the synthetic training split's 40,000 images.
    inProcess: { models: ['mlp', 'lenet'], warmupSteps: 200, measuredSteps: 300, batchPerWorker: 32, workers: [1, 2], rounds: 3, bareSeconds: 2 },
    coordinatorWork: { model: 'mlp', workers: 2, warmupSteps: 200, steps: 400 },
    memory: { model: 'mlp', steps: 10_000, trainImages: 40_000 },
  },
  // About 3 minutes: each process starts (~2 s), warms up for 2 s, then computes for 2 s.
  pair: { models: ['mlp', 'lenet'], batch: 32, rounds: 3, seconds: 2, torch: true },
  // About 2 minutes: per model a first run to warm the process, then 3 rounds of 3 runs, each
  // starting its threads (~1 s), warming up for 1 s and measuring for about 1.5 s.
  ceiling: { models: ['mlp', 'lenet'], threads: [1, 2], rounds: 3, warmSeconds: 1, seconds: 1.5 },
};

const QUICK: Plan = {
  computeArgs: ['--quick', '--models', 'mlp,lenet', '--batch', '32'],
  torchArgs: ['--quick', '--models', 'lenet,cnn-dropout', '--batch', '32'],
  scaling: [{ model: 'lenet', warmupSteps: 3, measuredSteps: 15 }],
  workerCounts: [1, 2],
  modes: ['global', 'per-worker'],
  micro: { warmup: 5, iterations: 40 },
  accuracy: { limitTrain: 1000, maxEpochs: 4, runs: [{ workers: 1, mode: 'global' }, { workers: 2, mode: 'global' }] },
  peers: {
    torch: { models: MODELS, seconds: 2 },
    endToEnd: { models: MODELS, trainImages: 2_000, limitTest: 500, rounds: 1, epochs: 1, pairedTorchSeconds: 1 },
    inProcess: { models: ['mlp', 'lenet'], warmupSteps: 5, measuredSteps: 40, batchPerWorker: 32, workers: [1, 2], rounds: 1, bareSeconds: 0.5 },
    coordinatorWork: { model: 'mlp', workers: 2, warmupSteps: 5, steps: 60 },
    memory: { model: 'mlp', steps: 600, trainImages: 4_000 },
  },
  pair: { models: ['mlp'], batch: 32, rounds: 1, seconds: 0.5, torch: true },
  ceiling: { models: ['mlp'], threads: [1, 2], rounds: 1, warmSeconds: 0.3, seconds: 0.3 },
};

const BATCH = 32;
const TARGET_ACCURACY = 0.5;

interface Options {
  quick: boolean;
  json: string;
  markdown: string;
  skip: Set<Section>;
  from?: string;
  readme: boolean;
}

const USAGE = `Usage: npx tsx scripts/bench.ts [--quick] [--json out.json] [--markdown docs/BENCHMARKS.md]
                            [--skip ${SECTIONS.join(',')}]
                            [--from report.json] [--no-readme]

Measures every section (about 25 minutes on a quiet 2-core machine), writes the JSON report and
renders the Markdown from it; a full run also rewrites the README's speed table. --quick checks the
tooling (not for citing); --from re-renders the Markdown from a report without measuring.`;

function parseOptions(argv: string[]): Options | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        help: { type: 'boolean', short: 'h', default: false },
        quick: { type: 'boolean', default: false },
        json: { type: 'string' },
        markdown: { type: 'string', default: 'docs/BENCHMARKS.md' },
        skip: { type: 'string', default: '' },
        from: { type: 'string' },
        'no-readme': { type: 'boolean', default: false },
      },
    });
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n\n${USAGE}`);
  }
  const { values } = parsed;
  if (values.help) return 'help';
  return optionsFrom(values);
}

function optionsFrom(values: { quick?: boolean; json?: string; markdown?: string; skip?: string; from?: string; 'no-readme'?: boolean }): Options {
  const skip = new Set<Section>();
  for (const s of values.skip!.split(',').map((x) => x.trim()).filter(Boolean)) {
    if (!(SECTIONS as readonly string[]).includes(s)) throw new ConfigError(`--skip takes ${SECTIONS.join(', ')}, but got "${s}".`);
    skip.add(s as Section);
  }
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
  return { quick: values.quick!, json: values.json ?? join('runs', 'bench', `bench-${stamp}${values.quick ? '-quick' : ''}.json`), markdown: values.markdown!, skip, from: values.from, readme: !values.quick && !values['no-readme'] && skip.size === 0 };
}

const say = (msg: string) => process.stdout.write(`[bench] ${msg}\n`);

function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    node: process.version,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    backend: 'wasm',
    tfjs: tf.version_core,
    loadAverageStart: os.loadavg().map((l) => Number(l.toFixed(2))),
    loadAverageEnd: [],
  };
}

function parameterCounts(model: string): { total: number; trainable: number } {
  const net = buildModel(parseModelName(model));
  const c = countParameters(net);
  net.dispose();
  return c;
}

/** Runs a child to completion, its output passed through with a prefix; rejects on a non-zero exit. */
function runChild(cmd: string, args: string[], prefix: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const relay = (chunk: Buffer) => process.stdout.write(chunk.toString().replace(/^(?=.)/gm, prefix));
    child.stdout.on('data', relay);
    child.stderr.on('data', relay);
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}`))));
  });
}

function spreadOf(v: unknown, what: string): RunSpread {
  const o = v as Partial<RunSpread> | undefined;
  if (!o || typeof o.median !== 'number' || typeof o.min !== 'number' || typeof o.max !== 'number' || !Array.isArray(o.runs)) {
    throw new TypeError(`Expected ${what} to be {median, min, max, runs}, but got ${JSON.stringify(v)}.`);
  }
  return { median: o.median, min: o.min, max: o.max, runs: o.runs };
}

/** Section 1: bench-compute in its own process (it runs on import), its JSON read back. */
async function measureCompute(plan: Plan, machine: MachineInfo): Promise<ComputeSection> {
  const dir = await mkdtemp(join(os.tmpdir(), 'dtrain-bench-compute-'));
  const out = join(dir, 'compute.json');
  try {
    // The same garbage collection as the dtrain train runs it is the reference for (common/gc-mode.ts).
    await runChild(process.execPath, [GC_FLAG, '--import', 'tsx', 'scripts/bench-compute.ts', ...plan.computeArgs, '--json', out], '  compute | ');
    const json = JSON.parse(await readFile(out, 'utf8')) as { seconds?: number; machine?: { backend?: string; kernels?: string }; results?: unknown[] };
    // The kernel set (onednn: the native addon; wasm: our wasm kernels) is part of what computed.
    if (typeof json.machine?.backend === 'string') machine.backend = json.machine.kernels ? `${json.machine.backend} (kernels: ${json.machine.kernels})` : json.machine.backend;
    const rows: ComputeRow[] = (json.results ?? []).map((r, i) => {
      const o = r as Record<string, unknown>;
      const baseline = spreadOf(o.baseline, `results[${i}].baseline`);
      const ours = spreadOf(o.ours, `results[${i}].ours`);
      return { model: String(o.model), batch: Number(o.batch), baseline, ours, speedup: ours.median / baseline.median };
    });
    return { measured: true, command: `npx tsx scripts/bench-compute.ts ${plan.computeArgs.join(' ')}`, seconds: json.seconds ?? 0, rows };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Optional: PyTorch on the same models, only where `import torch` works. */
function measureTorch(plan: Plan): TorchSection {
  // Debian's python3-torch lives under /usr/bin/python3, which a pyenv or venv python3 may shadow.
  const python = ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 }).status === 0);
  if (!python) return { measured: false, reason: 'neither python3 nor /usr/bin/python3 can import torch; it is optional (Debian: python3-torch)' };
  const args = ['scripts/bench-torch.py', ...plan.torchArgs, '--threads', '1'];
  const run = spawnSync(python, args, { cwd: ROOT, encoding: 'utf8', timeout: 600_000 });
  if (run.status !== 0) return { measured: false, reason: `scripts/bench-torch.py failed: ${(run.stderr || run.stdout).trim().split('\n').slice(-1)[0]}` };
  const json = JSON.parse(run.stdout) as { available: boolean; reason?: string; version?: string; threads?: number; setup?: unknown; results?: { model: string; batch: number; imagesPerSecond: unknown }[] };
  if (!json.available) return { measured: false, reason: json.reason ?? 'torch unavailable' };
  return {
    measured: true,
    command: `${python} ${args.join(' ')}`,
    version: json.version ?? 'unknown',
    threads: json.threads ?? 1,
    rows: (json.results ?? []).map((r) => ({ model: r.model, batch: r.batch, imagesPerSecond: spreadOf(r.imagesPerSecond, `torch ${r.model}`) })),
    ...(json.setup === undefined ? {} : { setup: parseTorchSetup(json.setup, 'scripts/bench-torch.py setup') }),
  };
}

/** Section 2: K=1 once per model (both batch modes are the same run), then K>1 in each mode. */
async function measureScaling(plan: Plan, machine: MachineInfo): Promise<ScalingSection> {
  const runs: ScalingRun[] = [];
  for (const { model, warmupSteps, measuredSteps } of plan.scaling) {
    const parameters = parameterCounts(model).total;
    for (const workers of plan.workerCounts) {
      for (const mode of workers === 1 ? (['global'] as const) : plan.modes) {
        say(`scaling: ${model}, K=${workers}, ${mode === 'global' ? 'global batch' : 'batch per worker'} ${BATCH}, ${warmupSteps} + ${measuredSteps} steps`);
        const { run, backend } = await runScaling({ model, mode, batch: BATCH, workers, warmupSteps, measuredSteps, parameters });
        if (backend) machine.backend = backend;
        say(`  ${run.summary.imagesPerSecond.toFixed(0)} images/s, step ${run.summary.stepMs.median.toFixed(1)} ms median`);
        runs.push(run);
      }
    }
  }
  return { measured: true, transport: WEBSOCKET_TRANSPORT, runs };
}

/** Section 3's in-process costs, for the frame sizes of each K=1 and K=2 run. */
async function measureMessageCosts(plan: Plan, scaling: ScalingSection): Promise<MessageCosts[]> {
  if (!scaling.measured) return [];
  const costs: MessageCosts[] = [];
  for (const run of scaling.runs.filter((r) => r.workers <= 2)) {
    const counts = parameterCounts(run.model);
    costs.push(await messageCosts(run.model, run.workers, run.summary.samplesPerStep, counts.total, counts.trainable, plan.micro));
  }
  return costs;
}

async function measureAccuracy(plan: Plan): Promise<TimeToAccuracySection> {
  const runs: TimeToAccuracyRun[] = [];
  for (const { workers, mode } of plan.accuracy.runs) {
    say(`time to accuracy: lenet, K=${workers}, ${mode === 'global' ? 'global batch' : 'batch per worker'} ${BATCH}, up to ${plan.accuracy.maxEpochs} epochs`);
    const run = await runTimeToAccuracy({ model: 'lenet', workers, mode, batch: BATCH, target: TARGET_ACCURACY, maxEpochs: plan.accuracy.maxEpochs, limitTrain: plan.accuracy.limitTrain });
    say(run.reached ? `  ${(100 * TARGET_ACCURACY).toFixed(0)}% after epoch ${run.epochs}, ${run.seconds!.toFixed(1)} s` : `  not reached in ${run.maxEpochs} epochs`);
    runs.push(run);
  }
  return { measured: true, transport: WEBSOCKET_TRANSPORT, runs };
}

/** Repository-relative where the file is inside the repository, absolute elsewhere. */
function displayPath(path: string): string {
  const rel = relative(ROOT, resolve(path));
  return rel.startsWith('..') ? resolve(path) : rel;
}

async function writeOutputs(report: BenchReport, opts: Options): Promise<void> {
  await mkdir(dirname(opts.json), { recursive: true });
  await writeFile(opts.json, JSON.stringify(report, null, 2) + '\n');
  await mkdir(dirname(opts.markdown), { recursive: true });
  await writeFile(opts.markdown, renderMarkdown(report, displayPath(opts.json)));
  say(`wrote ${opts.json} and ${opts.markdown}`);
  if (opts.readme) {
    const readme = join(ROOT, 'README.md');
    await writeFile(readme, replaceReadmeTable(await readFile(readme, 'utf8'), renderReadmeTable(report, displayPath(opts.json))));
    say('rewrote the README speed table from this run');
  }
}

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (opts === 'help') {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (opts.from) {
    const report = JSON.parse(await readFile(opts.from, 'utf8')) as BenchReport;
    if (report.schema !== BENCH_SCHEMA_VERSION) throw new TypeError(`Expected a bench report of schema ${BENCH_SCHEMA_VERSION}, but ${opts.from} has ${report.schema}.`);
    await writeFile(opts.markdown, renderMarkdown(report, displayPath(opts.from)));
    say(`rendered ${opts.markdown} from ${opts.from}`);
    return;
  }
  const plan = opts.quick ? QUICK : FULL;
  const started = new Date();
  const machine = machineInfo();
  say(`${machine.cpu}, ${machine.cores} cores, node ${machine.node}, load ${machine.loadAverageStart.join(' ')}${opts.quick ? ', quick' : ''}`);
  const skipped = (s: Section) => ({ measured: false as const, reason: `skipped with --skip ${s}` });

  // In-process timings first, while no child process competes for the cores.
  let coordinator;
  if (!opts.skip.has('coordinator')) {
    say(`coordinator: Adam and averaging over ${GOALS.adam.parameters} parameters`);
    coordinator = coordinatorCosts(GOALS.adam.parameters, [1, 2, 4], plan.micro);
    say(`  Adam ${coordinator.adam.us.median.toFixed(0)} µs median`);
  }
  // A section that fails is reported as not measured, so one failure does not lose a long run.
  let failures = 0;
  const section = async <T>(name: Section, measure: () => Promise<T> | T): Promise<T | { measured: false; reason: string }> => {
    if (opts.skip.has(name)) return skipped(name);
    try {
      return await measure();
    } catch (err) {
      failures++;
      killAll();
      say(`${name} failed: ${(err as Error).stack ?? String(err)}`);
      return { measured: false, reason: `failed: ${(err as Error).message.split('\n')[0]}` };
    }
  };
  const compute: ComputeSection = await section('compute', () => {
    say(`compute: scripts/bench-compute.ts ${plan.computeArgs.join(' ')}`);
    return measureCompute(plan, machine);
  });
  const torch: TorchSection = await section('torch', () => measureTorch(plan));
  say(torch.measured ? `torch ${torch.version}: ${torch.rows.length} rows` : `torch: not measured (${torch.reason})`);
  const scaling: ScalingSection = await section('scaling', () => measureScaling(plan, machine));
  const costs = await measureMessageCosts(plan, scaling);
  const timeToAccuracy: TimeToAccuracySection = await section('accuracy', () => measureAccuracy(plan));
  const peers = await section('peers', () => measurePeers(plan.peers));
  const endToEnd = await section('end-to-end', () => measureEndToEnd(plan.peers));
  const inProcess = await section('inprocess', () => measureInProcess(plan.peers));
  const coordinatorWork = await section('coordinator-work', () => measureCoordinatorWork(plan.peers));
  const memory = await section('memory', () => measureMemory(plan.peers));
  const computePair = await section('pair', () => {
    say(`pair: scripts/bench-compute-pair.ts, one process computing alone against two at once (${plan.pair.models.join(', ')}, batch ${plan.pair.batch})`);
    return measureComputePair(plan.pair, say);
  });
  const stepCeiling = await section('ceiling', () => {
    say(`ceiling: scripts/bench-step-ceiling.ts, the step with no coordinating thread (${plan.ceiling.models.join(', ')}, K=${plan.ceiling.threads.join(', ')})`);
    return measureStepCeilingInChild(plan.ceiling, say);
  });

  machine.loadAverageEnd = os.loadavg().map((l) => Number(l.toFixed(2)));
  const report: BenchReport = {
    schema: BENCH_SCHEMA_VERSION,
    date: started.toISOString(),
    quick: opts.quick,
    command: ['npx tsx scripts/bench.ts', ...process.argv.slice(2)].join(' '),
    seconds: (Date.now() - started.getTime()) / 1000,
    machine,
    compute,
    torch,
    scaling,
    messageCosts: costs,
    coordinator,
    timeToAccuracy,
    peers,
    endToEnd,
    inProcess,
    coordinatorWork,
    memory,
    computePair,
    stepCeiling,
    goals: [],
  };
  report.goals = evaluateGoals(report);
  await writeOutputs(report, opts);
  for (const g of report.goals) say(`goal ${g.id}: ${g.met === undefined ? 'not measured' : g.met ? 'met' : 'missed'}${g.measured ? ` — ${g.measured}` : ''}`);
  say(`done in ${report.seconds.toFixed(0)} s${failures > 0 ? `; ${failures} section(s) failed` : ''}`);
  if (failures > 0) process.exitCode = 1;
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}
try {
  await main();
} catch (err) {
  killAll();
  if (!(err instanceof ConfigError)) throw err;
  process.stderr.write(`bench: ${err.message}\n`);
  process.exitCode = 2;
}
