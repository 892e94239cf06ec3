/**
 * The ceiling of a synchronous step on this machine: K compute threads that run the in-process
 * step's own work with no coordinating thread at all. Each thread, every step: copies the current
 * weights into its backend, trains on its 32 images (`StepComputer.trainInto`, the gradient sums
 * into its slot of a `StepMemory`), meets the others at a barrier, reduces and applies Adam to its
 * stripe of the parameters (`StripeWorker.run`, the native kernel where it is built, as the
 * trainer's), and meets them again. Nothing hands commands out, screens results, logs or gathers
 * data: the main thread sleeps. Thread 0 moves Adam's bias corrections between steps, as the owner
 * does. What is left of the in-process goals' shortfall in such a step is the machine's and the
 * step's arithmetic, not the coordination around it.
 *
 * Per model, in rounds (the order of K=1 and K=2 alternates round by round, so this machine's drift
 * hits both alike): "bare", one thread's pass alone as section 1 measures it (the same batch each
 * time, no upload, no stripe); then the step at each thread count.
 *
 *   npx tsx scripts/bench-step-ceiling.ts [--models mlp,lenet] [--threads 1,2] [--rounds 3] [--warm 1] [--seconds 1.5] [--json out.json]
 *
 * Prints one JSON line per run (StepCeilingRun).
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { GC_FLAG } from '../common/gc-mode.ts';
import { parseArgs } from 'node:util';
import { ConfigError } from '../common/errors.ts';
import { MODEL_NAMES, MODEL_SPECS, parseModelName, type ModelName } from '../common/models.ts';
import { withTimeout } from '../common/timeout.ts';
import { selectBackend } from '../common/backend.ts';
import { StepComputer } from '../worker/compute.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';
import { fitPreprocessing } from '../common/data/preprocess.ts';
import { CTL, F64, StepMemory, stripes, writeAdamScalars, type StepMemoryInit } from '../common/step-memory.ts';
import { StripeWorker } from '../common/step-stripe.ts';
import { idleBackgroundThreads, threadIds } from '../common/background-threads.ts';
import type { StepCeilingPart, StepCeilingRun, StepCeilingSection } from './bench-report.ts';

/** Images per thread and step, as the in-process goals' `--batch-per-worker 32`. */
export const CEILING_BATCH = 32;
/** Adam's settings: the trainer's defaults. */
const ADAM = { learningRate: 0.001, beta1: 0.9, beta2: 0.999, epsilon: 1e-7 };
/** The longest a run may take from its threads' start to their answers (ms). */
const RUN_MS = 180_000;

export interface StepCeilingPlan {
  models: ModelName[];
  threads: number[];
  rounds: number;
  /** Warm-up before the measured steps (s). */
  warmSeconds: number;
  /** The measured steps' time, roughly (s): the step count is set from the warm-up's pace. */
  seconds: number;
}

/** What a thread is asked to do. `bare`: one thread's pass alone (no upload, the same batch, no stripe). */
interface ThreadTask {
  init: StepMemoryInit;
  index: number;
  threads: number;
  model: ModelName;
  bare: boolean;
  /** Int32 words: 0 the barrier's arrivals, 1 the measured step count, 2 "go", 3 the warm-up is over. */
  sync: SharedArrayBuffer;
  from: number;
  to: number;
  warmSeconds: number;
  seconds: number;
}

/** The words of ThreadTask.sync. */
const SYNC = { arrivals: 0, steps: 1, go: 2, warm: 3 } as const;
/** How long a thread spins at the barrier before it sleeps (µs): every thread has a core. */
const BARRIER_SPIN_MICROS = 400;
/** A barrier that waits longer than this has lost a thread (ms). */
const BARRIER_LIMIT_MS = 30_000;

/**
 * Waits until `threads` threads have arrived `generation` times in all (the arrivals word only grows):
 * spins BARRIER_SPIN_MICROS, then sleeps. Returns the milliseconds waited.
 */
export function barrier(words: Int32Array, threads: number, generation: number, spinMicros = BARRIER_SPIN_MICROS, limitMs = BARRIER_LIMIT_MS): number {
  const goal = generation * threads;
  if (Atomics.add(words, SYNC.arrivals, 1) + 1 >= goal) {
    Atomics.notify(words, SYNC.arrivals);
    return 0;
  }
  const started = performance.now();
  const spinUntil = started + spinMicros / 1000;
  for (;;) {
    const seen = Atomics.load(words, SYNC.arrivals);
    if (seen >= goal) return performance.now() - started;
    const now = performance.now();
    if (now - started > limitMs) throw new Error(`A step-ceiling thread waited ${limitMs} ms at the barrier for ${goal - seen} of ${threads} threads: one has stopped.`);
    if (now > spinUntil) Atomics.wait(words, SYNC.arrivals, seen, 20);
  }
}

/** A thread's side: warm up, tell the main thread, wait for "go", run the measured steps, answer. */
async function threadMain(task: ThreadTask): Promise<void> {
  await selectBackend('wasm');
  const mem = StepMemory.attach(task.init);
  const stripe = new StripeWorker(mem, true);
  const words = new Int32Array(task.sync);
  // Each thread its own images, a new batch each step (the bare pass: the first batch each time).
  const count = 32 * CEILING_BATCH;
  const data = generateSynthetic(Uint32Array.from({ length: count }, (_, i) => i + task.index * count), 'dev', 1234);
  const computer = new StepComputer(task.model, fitPreprocessing(MODEL_SPECS[task.model].input, data));
  const { trainable } = mem.shape;
  const target = () => ({ gradientSum: mem.gradients[task.index], stats: mem.statSums[task.index] });
  let generation = 0;
  let step = 0;
  const parts: StepCeilingPart = { computeMs: 0, stripeMs: 0, waitedMs: 0 };
  const one = async (): Promise<void> => {
    const parity = (step & 1) as 0 | 1;
    const at = task.bare ? 0 : (step % 32) * CEILING_BATCH;
    const t0 = performance.now();
    if (!task.bare || step === 0) computer.setWeights(mem.weights[parity].subarray(0, trainable));
    await computer.trainInto(data.images.subarray(at * 3072, (at + CEILING_BATCH) * 3072), data.labels.subarray(at, at + CEILING_BATCH), target);
    const t1 = performance.now();
    parts.computeMs += t1 - t0;
    step++;
    if (task.bare) return;
    parts.waitedMs += barrier(words, task.threads, ++generation);
    const t2 = performance.now();
    stripe.run({ from: task.from, to: task.to, parity, doStats: false }, false);
    parts.stripeMs += performance.now() - t2;
    // Thread 0 ends the warm-up for all: it says so before it arrives, and nobody leaves the barrier before that.
    if (task.index === 0) endWarmUp();
    parts.waitedMs += barrier(words, task.threads, ++generation);
    // Thread 0 moves Adam's bias corrections for the next step: every stripe of this one is done, and
    // none of the next starts before thread 0 arrives at its barrier.
    if (task.index === 0) writeAdamScalars(mem.f64, ADAM, step + 1);
  };
  const warmStart = performance.now();
  const warmUntil = warmStart + task.warmSeconds * 1000;
  // The warm-up lasts at least 20 steps and warmSeconds, counted by thread 0; then the measured steps
  // last about `seconds` at the warm-up's pace.
  function endWarmUp(): void {
    if (Atomics.load(words, SYNC.warm) === 1 || step < 20 || performance.now() < warmUntil) return;
    Atomics.store(words, SYNC.steps, Math.max(20, Math.round((task.seconds * 1000 * step) / (performance.now() - warmStart))));
    Atomics.store(words, SYNC.warm, 1);
  }
  while (Atomics.load(words, SYNC.warm) === 0) {
    await one();
    if (task.bare) endWarmUp();
  }
  parentPort!.postMessage({ type: 'warm' });
  while (Atomics.load(words, SYNC.go) === 0) Atomics.wait(words, SYNC.go, 0, 1000);
  const steps = Atomics.load(words, SYNC.steps);
  Object.assign(parts, { computeMs: 0, stripeMs: 0, waitedMs: 0 });
  const started = performance.now();
  for (let i = 0; i < steps; i++) await one();
  const ms = (performance.now() - started) / steps;
  parentPort!.postMessage({ type: 'done', steps, stepMs: ms, part: { computeMs: parts.computeMs / steps, stripeMs: parts.stripeMs / steps, waitedMs: parts.waitedMs / steps } });
}

/** The weights a run started from and ended with (tests check the stripes ran). */
export interface CeilingWeights {
  before: Float32Array;
  after: Float32Array;
}

/** One run: `threads` threads (or the bare pass on one) for `model`; its weights before and after. */
export async function measureCeilingRun(model: ModelName, threads: number, bare: boolean, plan: Pick<StepCeilingPlan, 'warmSeconds' | 'seconds'>, round = 0): Promise<{ run: StepCeilingRun; weights: CeilingWeights }> {
  if (bare && threads !== 1) throw new ConfigError(`The bare pass runs on one thread, but ${threads} were asked for.`);
  const nodeThreads = threadIds();
  // The model's layout and first weights only: the cpu backend, so this thread keeps no wasm module.
  await selectBackend('cpu');
  const data = generateSynthetic(Uint32Array.from({ length: CEILING_BATCH }, (_, i) => i), 'dev', 1234);
  const computer = new StepComputer(model, fitPreprocessing(MODEL_SPECS[model].input, data));
  const trainable = computer.layout.trainableSize;
  const mem = StepMemory.create({ trainable, stats: 0, slots: threads, slotSamples: CEILING_BATCH, threads });
  let at = 0;
  for (const w of computer.model.getWeights()) {
    if (at >= trainable) break;
    const values = w.dataSync() as Float32Array;
    mem.weights[0].set(values, at);
    at += values.length;
  }
  computer.dispose();
  const before = mem.weights[0].slice(0, trainable);
  mem.ctl[CTL.slotsUsed] = threads;
  for (let k = 0; k < threads; k++) mem.ctl[CTL.slotCounts + k] = CEILING_BATCH;
  const f = mem.f64;
  f[F64.inv] = 1 / (CEILING_BATCH * threads);
  f[F64.beta1] = ADAM.beta1;
  f[F64.beta2] = ADAM.beta2;
  f[F64.epsilon] = ADAM.epsilon;
  writeAdamScalars(f, ADAM, 1);
  const sync = new SharedArrayBuffer(64);
  const words = new Int32Array(sync);
  const entry = new URL('./bench-step-ceiling-entry.mjs', import.meta.url);
  const workers: Worker[] = [];
  const answers = stripes(mem.adamSpan, threads).map((s, index) => {
    const task: ThreadTask = { init: mem.init, index, threads, model, bare, sync, from: s.from, to: s.to, warmSeconds: plan.warmSeconds, seconds: plan.seconds };
    const w = new Worker(entry, { workerData: { stepCeiling: task } });
    workers.push(w);
    let warm!: () => void;
    const warmed = new Promise<void>((resolve) => (warm = resolve));
    const done = new Promise<{ steps: number; stepMs: number; part: StepCeilingPart }>((resolve, reject) => {
      w.on('message', (m: { type: string }) => (m.type === 'warm' ? warm() : resolve(m as never)));
      w.on('error', reject);
      w.on('exit', (code) => reject(new Error(`step-ceiling thread ${index} exited with ${code} before answering`)));
    });
    return { warmed, done };
  });
  try {
    const results = await withTimeout(
      (async () => {
        await Promise.race([Promise.all(answers.map((a) => a.warmed)), Promise.all(answers.map((a) => a.done))]);
        // Node's own threads yield to the compute from here on, as `dtrain train` has them do.
        if (process.env.DTRAIN_IDLE_BACKGROUND !== '0') await idleBackgroundThreads(nodeThreads);
        Atomics.store(words, SYNC.go, 1);
        Atomics.notify(words, SYNC.go);
        return Promise.all(answers.map((a) => a.done));
      })(),
      RUN_MS,
      `the step-ceiling run (${model}, ${threads} thread${threads === 1 ? '' : 's'})`,
    );
    const stepMs = Math.max(...results.map((r) => r.stepMs));
    const run: StepCeilingRun = { model, batch: CEILING_BATCH, kind: bare ? 'bare' : 'step', threads, round, steps: results[0].steps, stepMs, imagesPerSecond: (threads * CEILING_BATCH * 1000) / stepMs, parts: results.map((r) => r.part) };
    const parity = (Atomics.load(words, SYNC.arrivals) / threads / 2) % 2;
    return { run, weights: { before, after: mem.weights[bare ? 0 : parity].slice(0, trainable) } };
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** What the section records of its plan (the models are in its runs). */
function recordedPlan(plan: StepCeilingPlan): Extract<StepCeilingSection, { measured: true }>['plan'] {
  return { threads: plan.threads, rounds: plan.rounds, warmSeconds: plan.warmSeconds, seconds: plan.seconds };
}

/** The bench's section: per model and round, the bare pass, then each thread count (alternating order). */
export async function measureStepCeiling(plan: StepCeilingPlan, say: (msg: string) => void = () => {}): Promise<Extract<StepCeilingSection, { measured: true }>> {
  const runs: StepCeilingRun[] = [];
  for (const model of plan.models) {
    // A first run on one thread, not kept. The process's first threads of a model ran slower (lenet's
    // bare pass 2.16-2.26 ms in the first round against 1.71-1.75 in the later ones): V8 compiles
    // the wasm kernels' optimized code once per process, on Node's background threads, which get a
    // core only where a thread leaves one free (they are put under SCHED_IDLE as `dtrain train` does).
    await measureCeilingRun(model, 1, false, { warmSeconds: 2 * plan.warmSeconds, seconds: plan.seconds });
    for (let round = 0; round < plan.rounds; round++) {
      const counts = round % 2 === 0 ? plan.threads : [...plan.threads].reverse();
      for (const [threads, bare] of [[1, true] as const, ...counts.map((k) => [k, false] as const)]) {
        const { run } = await measureCeilingRun(model, threads, bare, plan, round);
        say(`  ${model} ${bare ? 'bare pass' : `K=${threads}`}: ${run.stepMs.toFixed(3)} ms a step (${run.imagesPerSecond.toFixed(0)} img/s)`);
        runs.push(run);
      }
    }
  }
  return { measured: true, plan: recordedPlan(plan), runs };
}

/** The longest the section's child process may take (ms): about 2 minutes planned. */
const SECTION_MS = 15 * 60_000;

/**
 * The bench's section, in a process of its own started as `dtrain train` is (GC_FLAG): a run inside
 * the long-lived benchmark process, after its other sections, read lenet's K=2 step at 3.0-3.3 ms
 * against 2.1-2.5 in a fresh one at the same hour. Its progress lines go to `say`.
 */
export async function measureStepCeilingInChild(plan: StepCeilingPlan, say: (msg: string) => void = () => {}): Promise<Extract<StepCeilingSection, { measured: true }>> {
  const dir = mkdtempSync(join(tmpdir(), 'dtrain-ceiling-'));
  const json = join(dir, 'runs.json');
  const args = ['--models', plan.models.join(','), '--threads', plan.threads.join(','), '--rounds', String(plan.rounds), '--warm', String(plan.warmSeconds), '--seconds', String(plan.seconds), '--json', json];
  const child = spawn(process.execPath, [GC_FLAG, '--import', 'tsx', new URL(import.meta.url).pathname, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.on('exit', killOnExit);
  const tail: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => {
    tail.push(line);
    if (tail.length > 20) tail.shift();
    if (line.startsWith('  ')) say(line);
  });
  try {
    const code = await withTimeout(
      new Promise<number | null>((resolve, reject) => {
        child.on('error', reject);
        child.on('close', resolve);
      }),
      SECTION_MS,
      'the step-ceiling process',
    );
    if (code !== 0) throw new Error(`scripts/bench-step-ceiling.ts exited with ${code}: ${tail.slice(-5).join(' | ')}`);
    const runs = JSON.parse(readFileSync(json, 'utf8')) as StepCeilingRun[];
    return { measured: true, plan: recordedPlan(plan), runs };
  } finally {
    child.kill('SIGKILL');
    process.off('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
  }
}

export const USAGE = 'Usage: npx tsx scripts/bench-step-ceiling.ts [--models mlp,lenet] [--threads 1,2] [--rounds 3] [--warm 1] [--seconds 1.5] [--json out.json]';

export function parseSettings(argv: string[]): StepCeilingPlan & { json?: string } {
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { models: { type: 'string', default: 'mlp,lenet' }, threads: { type: 'string', default: '1,2' }, rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '1.5' }, warm: { type: 'string', default: '1' }, json: { type: 'string' } } }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message}\n${USAGE}`);
  }
  const positive = (name: string, text: string, integer: boolean): number => {
    const v = Number(text);
    if (!(v > 0) || (integer && !Number.isInteger(v))) throw new ConfigError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got "${text}".`);
    return v;
  };
  const models = values.models!.split(',').map((m) => parseModelName(m.trim()));
  // cnn-bn's step also exchanges BatchNorm's batch statistics between the threads, which this step does not model.
  if (models.includes('cnn-bn')) throw new ConfigError(`--models takes models without BatchNorm (${MODEL_NAMES.filter((m) => m !== 'cnn-bn').join(', ')}), got "${values.models}".`);
  return {
    models,
    threads: values.threads!.split(',').map((t) => positive('threads', t.trim(), true)),
    rounds: positive('rounds', values.rounds!, true),
    seconds: positive('seconds', values.seconds!, false),
    warmSeconds: positive('warm', values.warm!, false),
    json: values.json,
  };
}

async function main(): Promise<void> {
  let s: ReturnType<typeof parseSettings>;
  try {
    s = parseSettings(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`bench-step-ceiling: ${err.message}\n`);
    process.exit(2);
  }
  const { runs } = await measureStepCeiling(s, (msg) => process.stderr.write(msg + '\n'));
  for (const run of runs) process.stdout.write(JSON.stringify(run) + '\n');
  if (s.json) writeFileSync(s.json, JSON.stringify(runs, null, 2) + '\n');
  process.exit(0);
}

if (!isMainThread && (workerData as { stepCeiling?: ThreadTask } | null)?.stepCeiling) await threadMain((workerData as { stepCeiling: ThreadTask }).stepCeiling);
else if (isMainThread && process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) await main();
