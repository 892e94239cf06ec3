/**
 * Benchmark runs with real processes: a `dtrain coordinator` on loopback and K `dtrain worker`s,
 * the way a cluster runs them, read back through the coordinator's JSON log. Used for scaling (a
 * fixed number of steps) and time to accuracy (until validation accuracy reaches a target).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DtrainProcess, type LogLine } from '../test/processes.ts';
import type { BatchMode, ScalingRun, TimeToAccuracyRun } from './bench-report.ts';
import { accuracyTimeline, parseStepEvent, summariseSteps } from './bench-stats.ts';

const TOKEN = 'dtrain-bench-token';
const ENV = { DTRAIN_TOKEN: TOKEN };
export const WEBSOCKET_TRANSPORT = '`dtrain coordinator` and K `dtrain worker` processes over WebSockets on 127.0.0.1, wasm backend, synthetic data';

export interface JobSpec {
  model: string;
  mode: BatchMode;
  batch: number;
  workers: number;
}

export interface Job {
  coordinator: DtrainProcess;
  workers: DtrainProcess[];
  /** The command lines, for the report. */
  command: string;
  spawnedAt: number;
  out: string;
}

function batchFlags(spec: JobSpec): string[] {
  return spec.mode === 'global' ? ['--batch-size', String(spec.batch)] : ['--batch-per-worker', String(spec.batch)];
}

/** Polls the process's log until `found` returns a line; fails if the process exits first. */
async function until(p: DtrainProcess, found: (lines: LogLine[]) => LogLine | undefined, timeoutMs: number, what: string): Promise<LogLine> {
  let exited = false;
  void p.exited.then(() => (exited = true));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const hit = found(p.lines);
    if (hit) return hit;
    if (exited || Date.now() > deadline) {
      const tail = p.lines.slice(-6).map((l) => JSON.stringify(l)).join('\n');
      throw new Error(`${exited ? 'The coordinator exited' : `Timed out after ${timeoutMs / 1000} s`} before ${what}. Last log lines:\n${tail}\nstderr:\n${p.stderr.slice(-8).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts the coordinator, then its K workers once it listens. */
export async function startJob(spec: JobSpec, extra: string[]): Promise<Job> {
  const out = await mkdtemp(join(tmpdir(), 'dtrain-bench-'));
  const args = [
    'coordinator', '--port', '0', '--host', '127.0.0.1', '--min-workers', String(spec.workers),
    '--model', spec.model, ...batchFlags(spec), '--dataset', 'synthetic', '--backend', 'wasm', '--no-plots', ...extra,
  ];
  const spawnedAt = Date.now();
  const coordinator = new DtrainProcess([...args, '--out', out], ENV);
  const workers: DtrainProcess[] = [];
  try {
    const listening = await until(coordinator, (ls) => ls.find((l) => l.event === 'listening'), 60_000, 'listening');
    const url = `ws://127.0.0.1:${String(listening.port)}`;
    for (let i = 0; i < spec.workers; i++) workers.push(new DtrainProcess(['worker', '--connect', url, '--backend', 'wasm', '--name', `bench-${i + 1}`], ENV));
  } catch (err) {
    await stopJob({ coordinator, workers, command: '', spawnedAt, out });
    throw err;
  }
  const command = `dtrain ${args.join(' ')}  &  ${spec.workers} × dtrain worker --connect ws://127.0.0.1:PORT --backend wasm`;
  return { coordinator, workers, command, spawnedAt, out };
}

/** Asks the coordinator to stop (it checkpoints and tells the workers), then kills what is left. */
export async function stopJob(job: Job, graceMs = 10_000): Promise<void> {
  const all = [job.coordinator, ...job.workers];
  const gone = Promise.all(all.map((p) => p.exited));
  if (job.coordinator.child.exitCode === null) job.coordinator.kill('SIGTERM');
  const timer = new Promise<'late'>((r) => setTimeout(() => r('late'), graceMs).unref());
  if ((await Promise.race([gone, timer])) === 'late') for (const p of all) p.kill('SIGKILL');
  await gone;
  await rm(job.out, { recursive: true, force: true });
}

/** The backend the first worker reported, if it did. */
export function workerBackend(job: Job): string | undefined {
  const b = job.workers[0]?.lines.find((l) => l.event === 'backend_selected')?.backend;
  return typeof b === 'string' ? b : undefined;
}

export interface ScalingSpec extends JobSpec {
  warmupSteps: number;
  measuredSteps: number;
  parameters: number;
  stepTimeoutMs?: number;
}

/**
 * Runs warm-up + measured steps with exactly K workers, on a training set just large enough that
 * no epoch ends (and so no evaluation runs) inside the measured steps.
 */
export async function runScaling(spec: ScalingSpec): Promise<{ run: ScalingRun; backend?: string }> {
  const steps = spec.warmupSteps + spec.measuredSteps;
  const globalBatch = spec.mode === 'global' ? spec.batch : spec.batch * spec.workers;
  const limitTrain = (steps + 1) * globalBatch;
  const job = await startJob(spec, ['--limit-train', String(limitTrain), '--limit-test', '100', '--epochs', '1', '--max-steps', String(steps)]);
  try {
    const timeout = spec.stepTimeoutMs ?? 300_000;
    await until(job.coordinator, (ls) => ls.find((l) => l.event === 'run_stopped' || l.event === 'run_finished'), timeout, `${steps} steps`);
    const samples = job.coordinator.lines.map((l) => parseStepEvent(l)).filter((s) => s !== undefined);
    const wrongK = samples.find((s) => s.workers !== spec.workers);
    if (wrongK) throw new Error(`Expected every step of this run on ${spec.workers} worker(s), but step ${wrongK.step} ran on ${wrongK.workers}.`);
    const run: ScalingRun = {
      model: spec.model,
      mode: spec.mode,
      batch: spec.batch,
      workers: spec.workers,
      parameters: spec.parameters,
      warmupSteps: spec.warmupSteps,
      command: job.command,
      summary: summariseSteps(samples, spec.warmupSteps),
    };
    return { run, backend: workerBackend(job) };
  } finally {
    await stopJob(job);
  }
}

export interface TimeToAccuracySpec extends JobSpec {
  target: number;
  maxEpochs: number;
  limitTrain: number;
}

/** Trains until an epoch's validation accuracy reaches the target (or maxEpochs pass), then stops. */
export async function runTimeToAccuracy(spec: TimeToAccuracySpec): Promise<TimeToAccuracyRun> {
  const job = await startJob(spec, ['--limit-train', String(spec.limitTrain), '--limit-test', '100', '--epochs', String(spec.maxEpochs)]);
  try {
    await until(
      job.coordinator,
      (ls) => ls.find((l) => (l.event === 'epoch' && typeof l.val_accuracy === 'number' && l.val_accuracy >= spec.target) || l.event === 'run_finished'),
      600_000,
      `${(100 * spec.target).toFixed(0)}% validation accuracy`,
    );
    const t = accuracyTimeline(job.coordinator.lines, spec.target);
    return {
      model: spec.model,
      workers: spec.workers,
      mode: spec.mode,
      batch: spec.batch,
      target: spec.target,
      maxEpochs: spec.maxEpochs,
      limitTrain: spec.limitTrain,
      command: job.command,
      startupSeconds: (t.firstStepStart - job.spawnedAt) / 1000,
      reached: t.reached,
      epochs: t.epochs,
      steps: t.steps,
      seconds: t.seconds,
      curve: t.curve,
    };
  } finally {
    await stopJob(job);
  }
}
