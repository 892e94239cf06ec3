/**
 * How much the coordinating thread works per step in-process (worker threads, the shared-memory
 * step): the CPU time the kernel charged to this thread (its schedstat, nanoseconds: the main
 * thread's /proc/self/task/<pid>/schedstat is /proc/thread-self/schedstat) over the measured steps, divided by the step count, and its event loop's active time
 * (performance.eventLoopUtilization), which also counts time lost to preemption on a busy machine.
 * The rest of the process's threads are read the same way (/proc/self/task/<tid>/schedstat): the
 * threads started with the compute pool (its worker threads) against Node's own (its platform pool,
 * which compiles JavaScript and helps the garbage collector, libuv's pool, tsx's loader), so the
 * report says how the cores' time per step was shared. Node's own threads go under SCHED_IDLE before
 * the first step, as in `dtrain train` (DTRAIN_IDLE_BACKGROUND=0 leaves them as they are).
 *
 *   npx tsx scripts/bench-coordinator-work.ts --model mlp --workers 2 --steps 300 --warmup 20
 *
 * Prints one JSON object: {model, workers, steps, cpuMsPerStep, activeMsPerStep, stepMs, threadsCpuMsPerStep: {owner, compute, background}, cores}.
 */
import { performance } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { TRAIN_DEFAULTS, type TrainConfig } from '../common/config.ts';
import { loadDataset } from '../common/data/load.ts';
import { fitPreprocessing } from '../common/data/preprocess.ts';
import { MODEL_SPECS, parseModelName } from '../common/models.ts';
import { silentLogger } from '../common/logger.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { Membership } from '../coordinator/membership.ts';
import { Trainer } from '../coordinator/trainer.ts';
import { startInProcessWorkers } from '../coordinator/inprocess.ts';
import { wirePreprocessing } from '../coordinator/job.ts';
import { idleBackgroundThreads, threadIds } from '../common/background-threads.ts';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'mlp' }, workers: { type: 'string', default: '2' }, steps: { type: 'string', default: '300' }, warmup: { type: 'string', default: '20' }, batch: { type: 'string', default: '32' } } });
const model = parseModelName(values.model!);
const workers = Number(values.workers);
const steps = Number(values.steps);
const warmup = Number(values.warmup);
const batch = Number(values.batch);
for (const [k, v] of Object.entries({ workers, steps, warmup, batch })) if (!Number.isInteger(v) || v < (k === 'warmup' ? 0 : 1)) throw new TypeError(`--${k} must be a positive integer, got ${v}.`);

const out = await mkdtemp(join(tmpdir(), 'dtrain-bench-coord-'));
const log = silentLogger();
const total = steps + warmup;
const data = await loadDataset({ dataset: 'synthetic', limitTrain: total * batch * workers + batch, limitTest: 100, splitSeed: 42 });
// One epoch only: an epoch's end would put an evaluation into the measured steps.
if (data.train.count < total * batch * workers) throw new RangeError(`--warmup ${warmup} + --steps ${steps} at ${workers} x ${batch} images need ${total * batch * workers} training images in one epoch, but the synthetic training split has ${data.train.count}.`);
const config: TrainConfig = { ...TRAIN_DEFAULTS, model, dataset: 'synthetic', backend: 'wasm', workers, batchPerWorker: batch, epochs: 1, maxSteps: total, plotEveryEpoch: false, out };
const membership = new Membership(log);
/** CPU time charged so far to each of this process's threads, ms, by thread id. */
const threadsCpuMs = (): Map<number, number> => {
  const cpu = new Map<number, number>();
  for (const tid of threadIds()) {
    try {
      cpu.set(tid, Number(readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1e6);
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return cpu;
};
let mark: { elu: ReturnType<typeof performance.eventLoopUtilization>; t: number; threads: Map<number, number> } | undefined;
let result: { activeMs: number; ms: number; threads: Map<number, number> } | undefined;
const trainer = new Trainer(config, data, membership, log, {
  onStep: (e) => {
    if (e.step === warmup) mark = { elu: performance.eventLoopUtilization(), t: performance.now(), threads: threadsCpuMs() };
    if (e.step === total && mark) {
      const threads = threadsCpuMs();
      for (const [tid, ms] of threads) threads.set(tid, ms - (mark.threads.get(tid) ?? 0));
      result = { activeMs: performance.eventLoopUtilization(mark.elu).active, ms: performance.now() - mark.t, threads };
    }
  },
});
const prep = fitPreprocessing(MODEL_SPECS[model].input, data.train);
// Threads that exist before the pool starts are Node's own; the ones after are the pool's.
const nodeThreads = new Set(threadIds());
const pool = await startInProcessWorkers(membership, {
  workers,
  backend: 'wasm',
  log,
  welcome: { type: 'welcome', protocolVersion: PROTOCOL_VERSION, model, preprocessing: wirePreprocessing(prep), weightCount: trainer.layout.totalSize },
  sharedMemory: { trainable: trainer.layout.trainableSize, stats: trainer.layout.totalSize - trainer.layout.trainableSize, slotSamples: batch, trainSet: data.train },
});
if (pool.sharedStep) trainer.useSharedStep(pool.sharedStep);
// As `dtrain train` does once its workers are ready (coordinator/job.ts): Node's own threads run on idle cores only.
if (process.env.DTRAIN_IDLE_BACKGROUND !== '0') await idleBackgroundThreads([...nodeThreads]);
try {
  await trainer.run();
} finally {
  await pool.stop();
  await rm(out, { recursive: true, force: true });
}
if (!result) throw new Error(`Expected ${total} steps, but the run stopped before.`);
const share = { owner: 0, compute: 0, background: 0 };
for (const [tid, ms] of result.threads) share[tid === process.pid ? 'owner' : nodeThreads.has(tid) ? 'background' : 'compute'] += ms / steps;
process.stdout.write(JSON.stringify({ model, workers, steps, shared: pool.sharedStep !== undefined, cpuMsPerStep: share.owner, activeMsPerStep: result.activeMs / steps, stepMs: result.ms / steps, threadsCpuMsPerStep: share, cores: availableParallelism() }) + '\n');
process.exit(0);
