/**
 * What this machine allows two computing threads, with nothing of dtrain's step around them: one
 * process computing alone, then two independent processes computing at once, each one thread of
 * `StepComputer.trainInto` (section 1's bare compute) on its own batch; then the same for PyTorch's
 * one-thread training step (scripts/bench-torch.py --serve), where a python3 imports torch. The two
 * start together (both warm up, say ready, and get "go" at the same moment) and run for the same
 * time. Each warms up for 2 s first; a dtrain process then puts Node's other threads under
 * SCHED_IDLE before it says ready, as `dtrain train` does before its first step. Alone and together alternate round by round, so the machine's drift hits both alike.
 *
 * dtrain's ratio (the two processes' images/s summed, over one process alone) says what the machine
 * gave two computing cores at the time, with no step around the compute: the in-process and
 * WebSocket steps add hand-offs, the coordinating thread and the reduction. PyTorch's ratio,
 * measured the same way, tells how much of a shortfall from 2 is the machine and how much is how
 * dtrain's compute shares it. Both move with this machine's load from round to round.
 *
 *   npx tsx scripts/bench-compute-pair.ts [--models mlp,lenet] [--batch 32] [--rounds 3] [--seconds 2] [--no-torch] [--json out.json]
 *
 * Prints one JSON line per model and peer: {peer, model, batch, alone: img/s per round, together:
 * [a, b] per round, ratios: per round, ratio: their median}.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { createInterface } from 'node:readline';
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError } from '../common/errors.ts';
import { MODEL_SPECS, parseModelName, type ModelName } from '../common/models.ts';
import { GC_FLAG } from '../common/gc-mode.ts';
import { withTimeout } from '../common/timeout.ts';
import { torchPython } from './bench-peers.ts';
import { median } from './bench-stats.ts';
import type { ComputePairRun, ComputePairSection } from './bench-report.ts';

interface Settings {
  child: boolean;
  torch: boolean;
  models: ModelName[];
  batch: number;
  rounds: number;
  seconds: number;
  json?: string;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: { child: { type: 'boolean', default: false }, 'no-torch': { type: 'boolean', default: false }, models: { type: 'string', default: 'mlp,lenet' }, batch: { type: 'string', default: '32' }, rounds: { type: 'string', default: '3' }, seconds: { type: 'string', default: '2' }, json: { type: 'string' } },
  });
  const number = (name: string, text: string, integer: boolean) => {
    const v = Number(text);
    if (!(v > 0) || (integer && !Number.isInteger(v))) throw new ConfigError(`--${name} must be a positive ${integer ? 'integer' : 'number'}, got "${text}".`);
    return v;
  };
  return {
    child: values.child!,
    torch: !values['no-torch'],
    models: values.models!.split(',').map((m) => parseModelName(m.trim())),
    batch: number('batch', values.batch!, true),
    rounds: number('rounds', values.rounds!, true),
    seconds: number('seconds', values.seconds!, false),
    json: values.json,
  };
}

/** The child: warm up, say "ready", wait for "go", compute for `seconds`, print images/s. */
async function child(model: ModelName, batch: number, seconds: number): Promise<void> {
  const { selectBackend } = await import('../common/backend.ts');
  const { StepComputer } = await import('../worker/compute.ts');
  const { generateSynthetic } = await import('../common/data/synthetic.ts');
  const { fitPreprocessing } = await import('../common/data/preprocess.ts');
  const { idleBackgroundThreads, threadIds } = await import('../common/background-threads.ts');
  await selectBackend('wasm');
  const data = generateSynthetic(Uint32Array.from({ length: batch }, (_, i) => i), 'dev', 1234 + batch);
  const prep = fitPreprocessing(MODEL_SPECS[model].input, data);
  const computer = new StepComputer(model, prep);
  const first = await computer.train(data.images, data.labels);
  const target = { gradientSum: new Float32Array(first.gradientSum.length), stats: new Float32Array(first.stats.length) };
  // Warm-up long enough for the JIT to settle, then Node's other threads yield to the compute, as
  // `dtrain train` has them do before its first step (common/background-threads.ts).
  const warm = performance.now() + WARM_UP_MS;
  for (let i = 0; i < 20 || performance.now() < warm; i++) await computer.trainInto(data.images, data.labels, () => target);
  if (process.env.DTRAIN_IDLE_BACKGROUND !== '0') await idleBackgroundThreads(threadIds());
  process.stdout.write('ready\n');
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  await lines.next();
  let steps = 0;
  const start = performance.now();
  const until = start + seconds * 1000;
  while (performance.now() < until) {
    await computer.trainInto(data.images, data.labels, () => target);
    steps++;
  }
  process.stdout.write(JSON.stringify({ imagesPerSecond: (steps * batch) / ((performance.now() - start) / 1000) }) + '\n');
  computer.dispose();
  process.exit(0);
}

/** One computing process: ready once warmed up; go() computes for the agreed time and resolves to its images/s. */
export interface Contender {
  ready: Promise<void>;
  go(): Promise<number>;
  /** Ends the process (after a failure of the round). */
  stop(): void;
}

/** How long a contender may take to start and warm up, and to answer after its measured time (ms). */
const READY_MS = 180_000;
/** A child's warm-up before it says ready (ms). */
const WARM_UP_MS = 2000;
const ANSWER_MS = 60_000;

type Peer = ComputePairRun['peer'];

/** The children alive now: killed if this process exits first (the bench's SIGINT and SIGTERM exit). */
const live = new Set<ChildProcessByStdio<Writable, Readable, null>>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/** Starts a child computing process, kept in `live` until it closes; a failed spawn or a closed stdin surfaces as its end. */
function startChild(command: string, args: string[]): ChildProcessByStdio<Writable, Readable, null> {
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  live.add(child);
  child.on('close', () => live.delete(child));
  // EPIPE on writing to a child that died: its closed stdout fails the read that waits for it.
  child.stdin.on('error', () => {});
  return child;
}

/**
 * Reads a child's stdout line by line. A child that ends first fails the read: 'close' fires only
 * once its stdout is drained, so a last line written just before exiting is still read.
 */
function lineReader(child: ChildProcessByStdio<Writable, Readable, null>, what: string): () => Promise<string> {
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const ended = new Promise<{ done: true; value: string }>((resolve) => {
    child.on('close', (code) => resolve({ done: true, value: `exited with ${code}` }));
    child.on('error', (err) => resolve({ done: true, value: `failed to start (${err.message})` }));
  });
  return async () => {
    const r = await Promise.race([lines.next(), ended]);
    if (r.done) throw new Error(`${what} ${r.value ?? 'ended'} before answering.`);
    return r.value;
  };
}

/** dtrain: this script's --child mode (StepComputer.trainInto on one thread). */
function dtrainContender(model: ModelName, batch: number, seconds: number): Contender {
  const script = new URL(import.meta.url).pathname;
  const child = startChild(process.execPath, [GC_FLAG, '--import', 'tsx', script, '--child', '--models', model, '--batch', String(batch), '--seconds', String(seconds)]);
  const next = lineReader(child, `scripts/bench-compute-pair.ts --child (${model})`);
  const ready = next().then((line) => {
    if (line !== 'ready') throw new Error(`Expected "ready" from the ${model} child, got "${line}".`);
  });
  return {
    ready,
    async go() {
      child.stdin.write('go\n');
      const r = JSON.parse(await next()) as { imagesPerSecond: number };
      child.stdin.end();
      return r.imagesPerSecond;
    },
    stop: () => child.kill('SIGKILL'),
  };
}

/** PyTorch on one thread: scripts/bench-torch.py --serve (Adam included in its steps), as section 1's peer. */
function torchContender(python: string, model: ModelName, batch: number, seconds: number): Contender {
  const child = startChild(python, ['scripts/bench-torch.py', '--serve', '--threads', '1']);
  const next = lineReader(child, `scripts/bench-torch.py --serve (${model})`);
  const ask = async (req: object) => {
    child.stdin.write(JSON.stringify({ model, batch, ...req }) + '\n');
    return JSON.parse(await next()) as { seconds: number; steps: number };
  };
  const ready = (async () => {
    const header = JSON.parse(await next()) as { available: boolean; reason?: string };
    if (!header.available) throw new Error(`PyTorch is not available: ${header.reason}`);
    // The same warm-up as a dtrain child's.
    await ask({ seconds: WARM_UP_MS / 1000 });
  })();
  return {
    ready,
    async go() {
      const r = await ask({ seconds });
      child.stdin.end();
      return (r.steps * batch) / r.seconds;
    },
    stop: () => child.kill('SIGKILL'),
  };
}

/** Runs `count` processes of the same peer and model at once, started together; their images/s. */
async function together(count: number, make: () => Contender, seconds: number): Promise<number[]> {
  const contenders = Array.from({ length: count }, make);
  try {
    await withTimeout(Promise.all(contenders.map((c) => c.ready)), READY_MS, 'a computing process\'s start-up and warm-up');
    return await withTimeout(Promise.all(contenders.map((c) => c.go())), seconds * 1000 + ANSWER_MS, 'a computing process\'s measurement');
  } catch (err) {
    for (const c of contenders) c.stop();
    throw err;
  }
}

/** `rounds` rounds of one contender alone and two at once, alternating which goes first round by round. */
export async function pairRounds(rounds: number, make: () => Contender, seconds: number): Promise<{ alone: number[]; together: [number, number][] }> {
  const alone: number[] = [];
  const pairs: [number, number][] = [];
  for (let r = 0; r < rounds; r++) {
    const one = async () => alone.push((await together(1, make, seconds))[0]);
    const two = async () => {
      const [a, b] = await together(2, make, seconds);
      pairs.push([a, b]);
    };
    if (r % 2 === 0) {
      await one();
      await two();
    } else {
      await two();
      await one();
    }
  }
  return { alone, together: pairs };
}

/** One thread's bare compute of `model` in a process alone (this script's child, warmed up), images/s over `seconds`. */
export async function aloneImagesPerSecond(model: ModelName, batch: number, seconds: number): Promise<number> {
  return (await together(1, () => dtrainContender(model, batch, seconds), seconds))[0];
}

export async function measurePair(peer: Peer, model: ModelName, batch: number, rounds: number, seconds: number, python?: string): Promise<ComputePairRun> {
  const make = (): Contender => (peer === 'torch' ? torchContender(python!, model, batch, seconds) : dtrainContender(model, batch, seconds));
  const { alone, together: pairs } = await pairRounds(rounds, make, seconds);
  const ratios = pairs.map(([a, b], r) => (a + b) / alone[r]);
  return { peer, model, batch, seconds, alone, together: pairs, ratios, ratio: median(ratios) };
}

export interface ComputePairPlan {
  models: ModelName[];
  batch: number;
  rounds: number;
  seconds: number;
  /** Also PyTorch, where a python3 imports torch. */
  torch: boolean;
}

/** The bench's section: dtrain, then PyTorch where a python3 imports torch, for each model. */
export async function measureComputePair(plan: ComputePairPlan, say: (msg: string) => void = () => {}): Promise<Extract<ComputePairSection, { measured: true }>> {
  const python = plan.torch ? torchPython() : undefined;
  const runs: ComputePairRun[] = [];
  for (const model of plan.models) {
    for (const peer of python ? (['dtrain', 'torch'] as const) : (['dtrain'] as const)) {
      const run = await measurePair(peer, model, plan.batch, plan.rounds, plan.seconds, python);
      say(`  ${peer} ${model}: two processes at once ${run.ratio.toFixed(2)}× one alone (rounds ${run.ratios.map((x) => x.toFixed(2)).join(', ')})`);
      runs.push(run);
    }
  }
  if (plan.torch && !python) say('  PyTorch left out: no python3 imports torch');
  return { measured: true, runs };
}

async function main(): Promise<void> {
  const s = parseSettings(process.argv.slice(2));
  if (s.child) return child(s.models[0], s.batch, s.seconds);
  const { runs } = await measureComputePair(s, (msg) => process.stderr.write(msg + '\n'));
  for (const run of runs) process.stdout.write(JSON.stringify(run) + '\n');
  if (s.json) writeFileSync(s.json, JSON.stringify(runs, null, 2) + '\n');
}

if (process.argv[1] && new URL(import.meta.url).pathname === process.argv[1]) await main();
