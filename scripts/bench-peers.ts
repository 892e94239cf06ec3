/**
 * Issue 10's measurements, each in its own processes: PyTorch as a peer (one process and DDP-2,
 * with the BLAS it loaded), `dtrain train` end to end for an epoch (data, evaluation, peak RSS),
 * in-process K=1 and K=2 at a fixed batch per worker, the coordinating thread's work per step, and
 * resident memory over many steps.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DtrainProcess, type LogLine } from '../test/processes.ts';
import { GC_FLAG } from '../common/gc-mode.ts';
import type {
  CoordinatorWork,
  CoordinatorWorkSection,
  EndToEndRun,
  EndToEndSection,
  InProcessRun,
  InProcessSection,
  MemorySample,
  MemorySection,
  PeersSection,
  StepSummary,
  TorchPeerRow,
} from './bench-report.ts';
import { aloneImagesPerSecond } from './bench-compute-pair.ts';
import { parseModelName } from '../common/models.ts';
import { median, medianRun, parseStepEvent, summariseSteps } from './bench-stats.ts';
import { parseTorchSetup } from './torch-setup.ts';

export interface PeersPlan {
  torch: { models: string[]; seconds: number };
  /**
   * limitTest: test images (default: the whole test split); rounds: runs per model, one round over
   * all models at a time; epochs: per run (the figure is the first; a second is reported beside it);
   * pairedTorchSeconds: before and after each run, PyTorch's best for the model (one process at 1 thread, DDP
   * 2×1) is measured for that long, so each run has a peer from the same minute (0 or absent: none).
   */
  endToEnd: { models: string[]; trainImages: number; limitTest?: number; rounds: number; epochs: number; pairedTorchSeconds?: number };
  inProcess: { models: string[]; warmupSteps: number; measuredSteps: number; batchPerWorker: number; workers: number[]; rounds: number; bareSeconds: number };
  coordinatorWork: { model: string; workers: number; warmupSteps: number; steps: number };
  memory: { model: string; steps: number; trainImages: number };
}

const say = (msg: string) => process.stdout.write(`[bench] ${msg}\n`);

/** Debian's python3-torch lives under /usr/bin/python3, which a pyenv or venv python3 may shadow. */
export function torchPython(): string | undefined {
  return ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 }).status === 0);
}

const PEER_PACKAGES = ['python3-torch', 'libopenblas0-pthread'];

/** Installs the peer's Debian packages when we can (root, apt-get present); true if apt-get succeeded. */
function installPeerPackages(): boolean {
  if (process.getuid?.() !== 0 || spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).status !== 0) return false;
  say(`peers: installing ${PEER_PACKAGES.join(' ')} with apt-get`);
  const install = () => spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...PEER_PACKAGES], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 900_000 }).status === 0;
  if (install()) return true;
  return spawnSync('apt-get', ['update'], { stdio: 'inherit', timeout: 300_000 }).status === 0 && install();
}

/** Whether /usr/lib's libblas.so.3 alternative is OpenBLAS (what python3-torch will load). */
function openblasInstalled(): boolean {
  return spawnSync('dpkg-query', ['-W', '-f=${Status}', 'libopenblas0-pthread'], { encoding: 'utf8' }).stdout?.includes('install ok installed') ?? false;
}

export function measurePeers(plan: PeersPlan): PeersSection {
  // A fair peer needs an optimized BLAS: Debian's python3-torch otherwise loads the reference one.
  if ((!torchPython() || !openblasInstalled()) && !installPeerPackages()) say(`peers: please install ${PEER_PACKAGES.join(' and ')} (apt-get install ${PEER_PACKAGES.join(' ')}) for a fair PyTorch peer`);
  const python = torchPython();
  if (!python) return { measured: false, reason: 'neither /usr/bin/python3 nor python3 can import torch: install python3-torch and libopenblas0-pthread (apt-get install python3-torch libopenblas0-pthread)' };
  const args = ['scripts/bench-torch-peers.py', '--models', plan.torch.models.join(','), '--seconds', String(plan.torch.seconds)];
  say(`peers: ${python} ${args.join(' ')}`);
  const run = spawnSync(python, args, { encoding: 'utf8', timeout: 1_800_000, stdio: ['ignore', 'pipe', 'inherit'] });
  if (run.status !== 0) return { measured: false, reason: `scripts/bench-torch-peers.py exited with ${run.status}` };
  const json = JSON.parse(run.stdout) as { available: boolean; reason?: string; version: string; blas: { buildInfo: string; loaded: string[]; openblas: boolean }; setup?: unknown; rows: TorchPeerRow[] };
  if (!json.available) return { measured: false, reason: json.reason ?? 'torch unavailable' };
  if (!json.blas.openblas) say('peers: WARNING: torch did not load OpenBLAS; install libopenblas0-pthread (apt) for a fair peer');
  const setup = json.setup === undefined ? {} : { setup: parseTorchSetup(json.setup, 'scripts/bench-torch-peers.py setup') };
  return { measured: true, command: `${python} ${args.join(' ')}`, version: json.version, blas: json.blas, rows: json.rows, ...setup };
}

/** Samples a process's resident set from /proc until it exits; returns the samples and VmHWM. */
function watchMemory(pid: number, everyMs: number): { samples: { t: number; rss: number }[]; peak: () => number; stop(): void } {
  const samples: { t: number; rss: number }[] = [];
  let peak = 0;
  const read = () => {
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
      samples.push({ t: Date.now(), rss: kb('VmRSS') });
      peak = Math.max(peak, kb('VmHWM'));
    } catch {
      // exited
    }
  };
  read();
  const timer = setInterval(read, everyMs);
  return { samples, peak: () => peak, stop: () => clearInterval(timer) };
}

const time = (l: LogLine) => (typeof l.time === 'number' ? l.time : Date.parse(String(l.time)));

/** Runs `dtrain train` to its exit; the log lines, wall seconds and memory samples. */
async function trainProcess(args: string[], memoryEveryMs = 200): Promise<{ lines: LogLine[]; wallSeconds: number; peakRssBytes: number; memory: { t: number; rss: number }[]; command: string }> {
  const out = await mkdtemp(join(tmpdir(), 'dtrain-bench-train-'));
  const full = ['train', ...args, '--no-plots', '--out', out];
  const started = Date.now();
  const p = new DtrainProcess(full);
  const mem = watchMemory(p.child.pid!, memoryEveryMs);
  try {
    const { code } = await p.exited;
    if (code !== 0) throw new Error(`dtrain ${full.join(' ')} exited with ${code}: ${p.stderr.slice(-5).join(' | ')} ${JSON.stringify(p.lines.slice(-3))}`);
    return { lines: p.lines, wallSeconds: (Date.now() - started) / 1000, peakRssBytes: mem.peak(), memory: mem.samples, command: `dtrain ${['train', ...args, '--no-plots'].join(' ')}` };
  } finally {
    mem.stop();
    await rm(out, { recursive: true, force: true });
  }
}

/**
 * `plan.endToEnd.epochs` epochs of `dtrain train` per model at default threads (one per core), synthetic data, in
 * `rounds` rounds over the models; each model's figure is its median run (medianRun).
 */
export async function measureEndToEnd(plan: PeersPlan): Promise<EndToEndSection> {
  const byModel = new Map<string, EndToEndRun[]>();
  const python = plan.endToEnd.pairedTorchSeconds ? torchPython() : undefined;
  for (let round = 1; round <= plan.endToEnd.rounds; round++) {
    for (const model of plan.endToEnd.models) {
      const before = python ? pairedTorch(python, model, plan.endToEnd.pairedTorchSeconds!) : undefined;
      say(`end to end, round ${round} of ${plan.endToEnd.rounds}: dtrain train --model ${model}, ${plan.endToEnd.epochs} epoch(s) of ${plan.endToEnd.trainImages} images`);
      const run = await endToEndRun(plan, model);
      const after = python ? pairedTorch(python, model, plan.endToEnd.pairedTorchSeconds!) : undefined;
      const paired = pairAround(before, after);
      if (paired) say(`  against PyTorch's ${paired.pairedTorch.toFixed(0)} img/s around it${paired.pairedTorchBracket ? ` (${paired.pairedTorchBracket.map((v) => v.toFixed(0)).join(' before, ')} after)` : ''}: ${(run.imagesPerSecond / paired.pairedTorch).toFixed(2)}`);
      (byModel.get(model) ?? byModel.set(model, []).get(model)!).push({ ...run, ...paired });
    }
  }
  return { measured: true, runs: plan.endToEnd.models.map((model) => medianRun(byModel.get(model)!)) };
}

/**
 * The paired peer figure of one run from PyTorch's best measured just before and just after it:
 * their mean where both exist (a drift during the run cancels), else whichever exists.
 */
export function pairAround(before: number | undefined, after: number | undefined): Pick<EndToEndRun, 'pairedTorch' | 'pairedTorchBracket'> & { pairedTorch: number } | undefined {
  if (before !== undefined && after !== undefined) return { pairedTorch: (before + after) / 2, pairedTorchBracket: [before, after] };
  const one = before ?? after;
  return one === undefined ? undefined : { pairedTorch: one };
}

/**
 * PyTorch's best images/s for `model` right now: one process at 1 thread and DDP over 2 processes
 * of 1 thread, `seconds` each (the peers section's other row, one process on every core, was never
 * the best on this machine). Undefined where the peer fails: the run then has no paired figure.
 */
function pairedTorch(python: string, model: string, seconds: number): number | undefined {
  const args = ['scripts/bench-torch-peers.py', '--models', model, '--threads', '1', '--seconds', String(seconds)];
  say(`  paired peer: ${python} ${args.join(' ')}`);
  const run = spawnSync(python, args, { encoding: 'utf8', timeout: 600_000, stdio: ['ignore', 'pipe', 'ignore'] });
  if (run.status !== 0) return undefined;
  const rows = (JSON.parse(run.stdout) as { rows?: TorchPeerRow[] }).rows ?? [];
  const best = Math.max(...rows.filter((r) => r.model === model).map((r) => r.imagesPerSecond));
  return Number.isFinite(best) ? best : undefined;
}

/** One run of `dtrain train --model model` (its first epoch the figure, the second the steady state), as measureEndToEnd runs it. */
async function endToEndRun(plan: PeersPlan, model: string): Promise<EndToEndRun> {
  const limitTest = plan.endToEnd.limitTest ? ['--limit-test', String(plan.endToEnd.limitTest)] : [];
  const r = await trainProcess(['--model', model, '--epochs', String(plan.endToEnd.epochs), '--dataset', 'synthetic', '--limit-train', String(plan.endToEnd.trainImages), ...limitTest]);
  const epochs = r.lines.filter((l) => l.event === 'epoch');
  const epoch = epochs[0];
  // The first epoch's steps: the validation after it runs from its last step to its epoch line.
  const steps = r.lines.filter((l) => l.event === 'step' && Number(l.epoch) === 1);
  const started = r.lines.find((l) => l.event === 'run_started');
  if (!epoch || steps.length === 0 || !started) throw new Error(`dtrain train --model ${model} logged no epoch or no steps`);
  const run: EndToEndRun = {
    model,
    workers: Number(started.workers),
    trainImages: plan.endToEnd.trainImages,
    command: r.command,
    wallSeconds: r.wallSeconds,
    epochSeconds: Number(epoch.seconds),
    imagesPerSecond: Number(epoch.images_per_second),
    ...(epochs[1] ? { secondEpochImagesPerSecond: Number(epochs[1].images_per_second) } : {}),
    validationSeconds: (time(epoch) - time(steps.at(-1)!)) / 1000,
    valAccuracy: Number(epoch.val_accuracy),
    peakRssBytes: r.peakRssBytes,
  };
  const second = run.secondEpochImagesPerSecond === undefined ? '' : ` (the second epoch: ${run.secondEpochImagesPerSecond.toFixed(0)} img/s)`;
  say(`  ${run.imagesPerSecond.toFixed(0)} img/s over the first epoch${second}, ${run.wallSeconds.toFixed(1)} s in all, peak RSS ${(run.peakRssBytes / 2 ** 20).toFixed(0)} MiB`);
  return run;
}

/**
 * K=1 and K=2 (and more) worker threads at a fixed batch per worker: the shared-memory step. In
 * rounds: each round measures one thread's bare compute (a process alone, as the pair section
 * does), then each K of the model, so the K=1-against-bare and K=2-against-K=1 goals compare
 * figures taken minutes apart at most; each K keeps its median round's run.
 */
export async function measureInProcess(plan: PeersPlan): Promise<InProcessSection> {
  const runs: InProcessRun[] = [];
  const p = plan.inProcess;
  for (const model of p.models) {
    const bare: number[] = [];
    const byWorkers = new Map<number, { command: string; summary: StepSummary }[]>(p.workers.map((k) => [k, []]));
    for (let round = 1; round <= p.rounds; round++) {
      if (p.workers.includes(1)) {
        say(`in-process: ${model}, round ${round} of ${p.rounds}: one thread's bare compute alone, batch ${p.batchPerWorker}, ${p.bareSeconds} s`);
        bare.push(await aloneImagesPerSecond(parseModelName(model), p.batchPerWorker, p.bareSeconds));
        say(`  ${bare.at(-1)!.toFixed(0)} img/s`);
      }
      for (const workers of p.workers) byWorkers.get(workers)!.push(await inProcessRun(p, model, workers));
    }
    for (const [workers, done] of byWorkers) {
      const rounds = done.map((r) => r.summary.imagesPerSecond);
      // The lower median, as medianRun keeps for the end-to-end runs.
      const kept = [...done].sort((a, b) => a.summary.imagesPerSecond - b.summary.imagesPerSecond)[(done.length - 1) >> 1];
      runs.push({ model, workers, batchPerWorker: p.batchPerWorker, command: kept.command, summary: kept.summary, ...(p.rounds > 1 ? { rounds } : {}), ...(workers === 1 && bare.length > 0 ? { bareRounds: bare } : {}) });
    }
  }
  return { measured: true, runs };
}

/** One `dtrain train --workers K --batch-per-worker B --max-steps N` run, summarised after its warm-up steps. */
async function inProcessRun(p: PeersPlan['inProcess'], model: string, workers: number): Promise<{ command: string; summary: StepSummary }> {
  const steps = p.warmupSteps + p.measuredSteps;
  say(`in-process: ${model}, K=${workers}, batch per worker ${p.batchPerWorker}, ${p.warmupSteps} + ${p.measuredSteps} steps`);
  const args = ['--model', model, '--workers', String(workers), '--batch-per-worker', String(p.batchPerWorker), '--dataset', 'synthetic', '--limit-train', String(steps * workers * p.batchPerWorker + p.batchPerWorker), '--limit-test', '100', '--max-steps', String(steps)];
  const r = await trainProcess(args);
  const samples = r.lines.map(parseStepEvent).filter((s) => s !== undefined);
  const summary = summariseSteps(samples, p.warmupSteps);
  say(`  ${summary.imagesPerSecond.toFixed(0)} img/s, step ${summary.mean.stepMs.toFixed(2)} ms (compute ${summary.mean.computeMs.toFixed(2)}, comm ${summary.mean.commMs.toFixed(2)}, optimizer ${summary.mean.optimizerMs.toFixed(2)})`);
  return { command: r.command, summary };
}

export async function measureCoordinatorWork(plan: PeersPlan): Promise<CoordinatorWorkSection> {
  const c = plan.coordinatorWork;
  // With the flag dtrain runs with: garbage collection then runs on the owning thread and counts in its CPU time, as in a real run.
  const args = [GC_FLAG, '--import', 'tsx', 'scripts/bench-coordinator-work.ts', '--model', c.model, '--workers', String(c.workers), '--steps', String(c.steps), '--warmup', String(c.warmupSteps)];
  say(`coordinator work: node ${GC_FLAG} ${args.slice(3).join(' ')}`);
  const runs: CoordinatorWork[] = [];
  // Three runs, the median kept: one number per run, each from hundreds of steps.
  for (let i = 0; i < 3; i++) {
    const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 600_000 });
    if (r.status !== 0) throw new Error(`scripts/bench-coordinator-work.ts exited with ${r.status}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    runs.push(JSON.parse(r.stdout.trim().split('\n').at(-1)!) as CoordinatorWork);
  }
  const mid = median(runs.map((r) => r.cpuMsPerStep));
  const kept = runs.find((r) => r.cpuMsPerStep === mid) ?? runs[0];
  say(`  ${kept.cpuMsPerStep.toFixed(3)} ms of the owning thread's CPU per step (median of ${runs.map((r) => r.cpuMsPerStep.toFixed(3)).join(', ')}; event-loop active ${kept.activeMsPerStep.toFixed(3)} ms)`);
  return { measured: true, runs: [kept] };
}

/** Resident memory of `dtrain train` over many steps (evaluations included), against the step count. */
export async function measureMemory(plan: PeersPlan): Promise<MemorySection> {
  const m = plan.memory;
  const stepsPerEpoch = Math.ceil(m.trainImages / 32);
  const epochs = Math.ceil(m.steps / stepsPerEpoch);
  say(`memory: dtrain train --model ${m.model}, ${m.steps} steps (${epochs} epochs of ${m.trainImages} images), RSS every second`);
  const args = ['--model', m.model, '--epochs', String(epochs), '--max-steps', String(m.steps), '--dataset', 'synthetic', '--limit-train', String(m.trainImages), '--limit-test', '100'];
  // Every 250 ms: a 10,000-step mlp run lasts about 12 s, and each window below spans a tenth of it.
  const r = await trainProcess(args, 250);
  const steps = r.lines.filter((l) => l.event === 'step').map((l) => ({ t: time(l), step: Number(l.step) }));
  if (steps.length === 0) throw new Error('the memory run logged no steps');
  // Each RSS sample is placed at the last step logged before it; samples after the last step (the
  // test evaluation, the exit) and from a process already gone (no VmRSS) are left out.
  const samples: MemorySample[] = [];
  let j = 0;
  const lastStep = steps.at(-1)!.t;
  for (const s of r.memory.filter((x) => x.rss > 0 && x.t <= lastStep)) {
    while (j + 1 < steps.length && steps[j + 1].t <= s.t) j++;
    if (steps[j].t <= s.t) samples.push({ step: steps[j].step, rssBytes: s.rss });
  }
  const window = (from: number, to: number) => samples.filter((s) => s.step >= from * m.steps && s.step <= to * m.steps).map((s) => s.rssBytes);
  const early = window(0.1, 0.2);
  const late = window(0.9, 1);
  if (early.length === 0 || late.length === 0) throw new Error(`too few RSS samples (${samples.length}) over ${m.steps} steps`);
  const run = { model: m.model, workers: Number(r.lines.find((l) => l.event === 'run_started')?.workers ?? 0), steps: m.steps, command: r.command, samples, earlyRssBytes: median(early), lateRssBytes: median(late) };
  say(`  RSS ${(run.earlyRssBytes / 2 ** 20).toFixed(1)} MiB at 10–20% of the steps, ${(run.lateRssBytes / 2 ** 20).toFixed(1)} MiB at 90–100%`);
  return { measured: true, run };
}
