import { afterEach, describe, expect, it } from 'vitest';
import type { Worker } from 'node:worker_threads';
import { maxAbsDiff, syntheticData, tempDir, testConfig, trainInProcess } from './helpers.ts';
import { DtrainProcess, killAll } from './processes.ts';
import { loadCheckpoint } from '../coordinator/checkpoint.ts';
import { CTL, OP, type StepMemory } from '../common/step-memory.ts';
import type { Membership } from '../coordinator/membership.ts';
import type { StepEvent, Trainer } from '../coordinator/trainer.ts';
import type { SharedStep } from '../coordinator/shared-step.ts';
import type { RunBoard } from '../common/step-run.ts';
import type { TrainConfig } from '../common/config.ts';
import type { DatasetSplits } from '../common/data/types.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';
import { requireNativeOrSkip } from '../common/kernels/native/native-testing.ts';

/** The step from the backend needs the native stripe kernel (built in CI, where its absence fails). */
const native = requireNativeOrSkip(loadNativeKernels());

/** What the tests reach inside a thread's handle. */
type Exposed = { id: string; run: (task: never) => unknown; thread: { thread: Worker }; shared: { mem: StepMemory; fuseRounds: boolean; command(i: number): Promise<void> } };
type Config = { model: 'mlp' | 'lenet'; batchSize: number; workers: number; maxSteps: number };

/**
 * Trains `cfg` straight, then again with `sabotage` called on the live threads so that it strikes in
 * step 3: when step 2 is reported, or when step 1 is where reports wait until the next step's tasks
 * are out (Trainer.defersReports: step 2 is then already handed off). `deferred` tells the sabotage
 * which. Returns both runs, the step events and the threads that left.
 */
async function trainWithSabotage(cfg: Config, sabotage: (live: Exposed[], deferred: boolean) => void) {
  const data = await syntheticData(640, 20);
  const straight = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data);
  let membership: Membership | undefined;
  let trainer: Trainer | undefined;
  const events: StepEvent[] = [];
  const left: string[] = [];
  const crashed = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, {
    membership: (m) => {
      membership = m;
      m.onEvent((e) => e.kind !== 'joined' && left.push(e.workerId));
    },
    trainer: (t) => (trainer = t),
    hooks: {
      onStep: (e) => {
        events.push(e);
        const deferred = trainer!.defersReports;
        if (e.step === (deferred ? 1 : 2)) sabotage(membership!.live() as unknown as Exposed[], deferred);
      },
    },
  });
  return { straight, crashed, events, left };
}

/** Makes `w` terminate its thread right after it is handed a task, once (`once` is shared). */
function dieAfterHandOff(w: Exposed, once: { done: boolean }): void {
  const run = w.run.bind(w);
  w.run = (task) => {
    const result = run(task);
    if (!once.done) {
      once.done = true;
      void w.thread.thread.terminate();
    }
    return result;
  };
}

describe('the shared-memory step (worker threads)', () => {
  // cpu backend: its kernels sum in a fixed order, so both paths must agree to the last bit. The
  // conv models (sample positions for Dropout's masks; synchronized BatchNorm on the threads' board,
  // moving statistics moved from the slots) in fewer, smaller steps: the cpu backend is slow on them.
  // One thread: each step is one trainApply command, the statistics moved after it.
  for (const [model, batchSize, steps, workers] of [['mlp', 32, 20, 2], ['lenet', 8, 20, 2], ['cnn-dropout', 6, 8, 2], ['cnn-dropout', 6, 8, 1], ['cnn-bn', 8, 8, 2], ['cnn-bn', 8, 8, 1]] as const) {
    it(`gives the same ${model} weights as the message path after ${steps} steps with ${workers} thread(s) (cpu backend)`, { timeout: 300_000 }, async () => {
      const data = await syntheticData(640, 20);
      const cfg = { model, batchSize, backend: 'cpu' as const, workers, maxSteps: steps };
      const bytesIn: number[] = [];
      let trainer: Trainer | undefined;
      const shared = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { hooks: { onStep: (e) => bytesIn.push(e.bytesIn) }, trainer: (t) => (trainer = t) });
      const step = (trainer as unknown as { sharedStep: SharedStep }).sharedStep;
      if (model !== 'cnn-bn') {
        // Each thread ran the next step's pass ahead (in a fused round, once the round's stripes were
        // written; cnn-dropout's at the slice's sample position, for the same Dropout masks): step-ahead.ts.
        expect(step.ahead.hits).toBeGreaterThan(0);
      } else {
        // Its slices carry a BatchNorm mode, whose exchange a pass ahead cannot take part in: no slice is ever offered.
        expect(step.mem.ctl[step.mem.threadBase(0) + CTL.aheadSeq]).toBe(0);
        expect(step.ahead.hits).toBe(0);
      }
      const messages = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { sharedMemory: false });
      expect(shared.shared).toBe(true);
      expect(messages.shared).toBe(false);
      // No gradient came back as a message on the shared path.
      expect(bytesIn).toHaveLength(steps);
      expect(bytesIn.every((b) => b === 0)).toBe(true);
      expect(maxAbsDiff(shared.weights, messages.weights)).toBeLessThan(1e-6);
      expect(maxAbsDiff(shared.weights, messages.weights)).toBe(0);
    });
  }

  it('recomputes the slice of a thread that dies mid-step, evicts it, and ends with the same weights', { timeout: 120_000 }, async () => {
    // In step 3, thread 2's thread is terminated right after its slice was handed to it.
    const { straight, crashed, events, left } = await trainWithSabotage({ model: 'lenet', batchSize: 32, workers: 2, maxSteps: 3 }, (live) => {
      dieAfterHandOff(live.find((w) => w.id === 'thread-2')!, { done: false });
    });
    expect(crashed.outcome.status).toBe('interrupted');
    expect(left).toEqual(['thread-2']);
    expect(events.map((e) => e.samples)).toEqual([32, 32, 32]);
    // Step 3's second slice was computed again, by thread 1.
    expect(events.map((e) => e.retries)).toEqual([0, 0, 1]);
    // Slices are summed in slice order whoever computes them, so the weights do not change.
    expect(maxAbsDiff(crashed.weights, straight.weights)).toBe(0);
  });
});

describe('a thread lost during the reduction', () => {
  it('is evicted, and the reduction is redone by the others from the untouched copies', { timeout: 120_000 }, async () => {
    let killedInReduction = false;
    const { straight, crashed, left } = await trainWithSabotage({ model: 'lenet', batchSize: 32, workers: 2, maxSteps: 3 }, (live, deferred) => {
      // In step 3's reduction, thread 2 dies instead of taking its stripe (with deferred reports,
      // step 2's reduction is still ahead when step 1 is reported: it passes).
      const victim = live.find((w) => w.id === 'thread-2')!;
      const shared = victim.shared;
      // Phase 2 as commands of its own: a fused round does its stripes inside the train commands.
      shared.fuseRounds = false;
      const command = shared.command.bind(shared);
      let reductions = 0;
      shared.command = (i: number) => {
        if (i === 1 && shared.mem.ctl[shared.mem.threadBase(1) + CTL.op] === OP.reduce && ++reductions === (deferred ? 2 : 1)) {
          killedInReduction = true;
          void victim.thread.thread.terminate();
          return Promise.reject(new Error('thread 2 died during the reduction'));
        }
        return command(i);
      };
    });
    expect(killedInReduction).toBe(true);
    expect(crashed.outcome.status).toBe('interrupted');
    expect(left).toEqual(['thread-2']);
    expect(maxAbsDiff(crashed.weights, straight.weights)).toBe(0);
  });
});

/**
 * The same run in shared memory and on the message path; `ops`: the op of every command the
 * shared-memory step sent its threads from step 1's report on.
 */
async function againstMessagePath(cfg: Partial<TrainConfig>, data: DatasetSplits) {
  let membership: Membership | undefined;
  const ops: number[] = [];
  const shared = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, {
    membership: (m) => (membership = m),
    hooks: {
      onStep: (e) => {
        if (e.step !== 1) return;
        const step = (membership!.live()[0] as unknown as Exposed).shared;
        const command = step.command.bind(step);
        step.command = (i: number) => {
          ops.push(step.mem.ctl[step.mem.threadBase(i) + CTL.op]);
          return command(i);
        };
      },
    },
  });
  const messages = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { sharedMemory: false });
  return { shared, messages, ops };
}

describe('a step of one slot (train, reduction and Adam in one command)', () => {

  it('runs as one trainApply command per step and ends where the message path does (cpu backend, 2 threads, batch 1)', { timeout: 300_000 }, async () => {
    const data = await syntheticData(640, 20);
    const cfg = { model: 'mlp' as const, batchSize: 1, backend: 'cpu' as const, workers: 2, maxSteps: 20 };
    const { shared, messages, ops } = await againstMessagePath(cfg, data);
    expect(shared.shared).toBe(true);
    // From the step under way when step 1 was reported (the report waits for the next step's
    // dispatch) to step 20: one command each, and no separate reduction.
    expect(ops.length).toBeGreaterThanOrEqual(18);
    expect(ops.length).toBeLessThanOrEqual(19);
    expect(ops.every((op) => op === OP.trainApply)).toBe(true);
    expect(maxAbsDiff(shared.weights, messages.weights)).toBe(0);
  });

  it('recomputes the step on the other thread when its thread dies mid-step, evicts it, and ends with the same weights', { timeout: 120_000 }, async () => {
    // In step 3, whichever thread is handed the slot is terminated right after.
    const once = { done: false };
    const { straight, crashed, events, left } = await trainWithSabotage({ model: 'mlp', batchSize: 1, workers: 2, maxSteps: 3 }, (live) => {
      for (const w of live) dieAfterHandOff(w, once);
    });
    expect(crashed.outcome.status).toBe('interrupted');
    expect(left).toHaveLength(1);
    expect(events.map((e) => e.samples)).toEqual([1, 1, 1]);
    expect(events.map((e) => e.retries)).toEqual([0, 0, 1]);
    expect(maxAbsDiff(crashed.weights, straight.weights)).toBe(0);
  });

  it('counts a pass run ahead before the step began as aheadMs, not as the step\'s compute: the parts stay within the step (cpu backend, 1 thread)', { timeout: 120_000 }, async () => {
    const events: StepEvent[] = [];
    let trainer: Trainer | undefined;
    await trainInProcess(testConfig({ model: 'mlp', batchSize: 32, backend: 'cpu', workers: 1, maxSteps: 20, out: await tempDir() }), await syntheticData(640, 20), { trainer: (t) => (trainer = t), hooks: { onStep: (e) => events.push(e) } });
    expect((trainer as unknown as { sharedStep: SharedStep }).sharedStep.ahead.hits).toBe(19);
    expect(events).toHaveLength(20);
    // The thread starts a pass ahead as soon as its command is done, before the owner begins the next step.
    expect(events.filter((e) => e.aheadMs! > 0).length).toBeGreaterThan(0);
    for (const e of events) {
      expect(e.aheadMs).toBeGreaterThanOrEqual(0);
      // commMs is the step's time less compute and optimizer, rounded to 0.01 ms; compute is timed on the thread's clock, the step on the owner's.
      expect(e.commMs).toBeGreaterThanOrEqual(-0.02);
    }
    expect(events[0].aheadMs).toBe(0);
  });
});

describe.runIf(native)('a step of one slot from the backend (wasm: the gradient read where the backend left it, the next weights written into it)', () => {
  const sharedOf = (t: Trainer) => (t as unknown as { sharedStep: SharedStep }).sharedStep;
  /** `cfg` on wasm with the path (the default) and with DTRAIN_STEP_FROM_BACKEND=0, which copies the gradient into the slot and uploads each step's weights. */
  async function withAndWithout(cfg: Config, data: DatasetSplits) {
    const on = await trainInProcess(testConfig({ ...cfg, backend: 'wasm', out: await tempDir() }), data);
    process.env.DTRAIN_STEP_FROM_BACKEND = '0';
    try {
      const off = await trainInProcess(testConfig({ ...cfg, backend: 'wasm', out: await tempDir() }), data);
      return { on, off };
    } finally {
      delete process.env.DTRAIN_STEP_FROM_BACKEND;
    }
  }

  for (const model of ['mlp', 'lenet'] as const) {
    it(`ends 20 ${model} steps on 1 thread bit for bit where the step through the slot does, every step from the backend`, { timeout: 120_000 }, async () => {
      const { on, off } = await withAndWithout({ model, batchSize: 32, workers: 1, maxSteps: 20 }, await syntheticData(640, 20));
      expect(on.shared && off.shared).toBe(true);
      expect(sharedOf(on.trainer).fromBackendSteps).toBe(20);
      expect(sharedOf(off.trainer).fromBackendSteps).toBe(0);
      // Steps 2-20 also used a pass run ahead on the weights the previous step wrote into the backend.
      expect(sharedOf(on.trainer).ahead.hits).toBe(19);
      expect(maxAbsDiff(on.weights, off.weights)).toBe(0);
    });
  }

  it('refuses a DTRAIN_STEP_FROM_BACKEND that is not a boolean, naming it', async () => {
    const { SharedStep: Step } = await import('../coordinator/shared-step.ts');
    expect(() => new Step({ trainable: 8, stats: 0, slots: 1, slotSamples: 1, threads: 1 }, true, { DTRAIN_STEP_FROM_BACKEND: 'sometimes' })).toThrow(/DTRAIN_STEP_FROM_BACKEND must be 1\/true\/yes\/on or 0\/false\/no\/off, got "sometimes"/);
  });
});

describe('a step of several slots (a fused round: train, barrier, stripe in one command per thread)', () => {
  // cnn-bn: synchronized BatchNorm's own barrier on the threads' board inside the slice, moving statistics moved on the owning thread after.
  for (const [model, steps] of [['lenet', 12], ['cnn-bn', 6]] as const) {
    it(`runs ${model} on 2 threads as one trainApply command per thread and step, and ends where the message path does (cpu backend)`, { timeout: 300_000 }, async () => {
      const data = await syntheticData(640, 20);
      const cfg = { model, batchSize: 8, backend: 'cpu' as const, workers: 2, maxSteps: steps };
      const { shared, messages, ops } = await againstMessagePath(cfg, data);
      expect(shared.shared).toBe(true);
      // From step 2 (or, where reports wait for the next dispatch, step 3) to the last: two commands a step.
      expect(ops.length).toBeGreaterThanOrEqual(2 * (steps - 2));
      expect(ops.length).toBeLessThanOrEqual(2 * (steps - 1));
      expect(ops.every((op) => op === OP.trainApply)).toBe(true);
      expect(maxAbsDiff(shared.weights, messages.weights)).toBe(0);
    });
  }
});

describe('the shared-memory step against the WebSocket path', () => {
  afterEach(() => killAll());

  it('ends 20 mlp steps with 1 thread, each after the first from a pass run ahead, exactly where 1 WebSocket worker does (cpu backend)', { timeout: 300_000 }, async () => {
    const data = await syntheticData(640, 100);
    let trainer: Trainer | undefined;
    const inProcess = await trainInProcess(testConfig({ model: 'mlp', backend: 'cpu', workers: 1, maxSteps: 20, out: await tempDir() }), data, { trainer: (t) => (trainer = t) });
    expect(inProcess.shared).toBe(true);
    // Steps 2-20 wrote out a forward and backward pass their thread had run ahead of the command (step-ahead.ts).
    expect((trainer as unknown as { sharedStep: SharedStep }).sharedStep.ahead.hits).toBe(19);
    const out = await tempDir();
    const env = { DTRAIN_TOKEN: 'shared-step-test-token' };
    const c = new DtrainProcess(['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--limit-train', '640', '--limit-test', '100', '--model', 'mlp', '--backend', 'cpu', '--no-plots', '--max-steps', '20', '--out', out], env);
    const port = (await c.waitFor('listening')).port as number;
    new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'cpu'], env);
    await c.waitFor('run_stopped', undefined, 240_000);
    const ckpt = await loadCheckpoint(out, 'mlp');
    expect(ckpt!.state.position.globalStep).toBe(20);
    // Same sums, same division, same Adam: not merely close.
    expect(maxAbsDiff(ckpt!.weights, inProcess.weights)).toBe(0);
  });
});

describe('runs of steps driven by the threads (real threads, the training set shared as `dtrain train` shares it)', () => {
  /** Makes `trainer` record the steps each of its runs committed. */
  const countRuns = (runs: number[]) => (trainer: Trainer) => {
    const use = trainer.useSharedStep.bind(trainer);
    trainer.useSharedStep = (shared: SharedStep) => {
      const runSteps = shared.runSteps.bind(shared);
      shared.runSteps = async (...args) => {
        const run = await runSteps(...args);
        runs.push(run.steps.length);
        return run;
      };
      use(shared);
    };
  };

  // cnn-dropout: each thread sets its slices' sample positions itself (Dropout's masks).
  for (const [model, batchSize, steps, workers] of [['mlp', 32, 20, 2], ['lenet', 8, 20, 2], ['cnn-dropout', 6, 8, 2], ['cnn-dropout', 6, 8, 1]] as const) {
    it(`gives the message path's ${model} weights bit for bit after ${steps} steps on ${workers} thread(s), all but the first in runs (cpu backend)`, { timeout: 300_000 }, async () => {
      const data = await syntheticData(640, 20);
      const cfg = { model, batchSize, backend: 'cpu' as const, workers, maxSteps: steps };
      const runs: number[] = [];
      const ran = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { shareTrainSet: true, trainer: countRuns(runs) });
      const messages = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { sharedMemory: false });
      expect(runs.reduce((a, b) => a + b, 0)).toBe(steps - 1);
      expect(maxAbsDiff(ran.weights, messages.weights)).toBe(0);
    });
  }

  it('reports no bytes sent or received for steps whose slices lie in shared memory, in runs or through the scheduler; the message path reports them (cpu backend, 2 threads)', { timeout: 300_000 }, async () => {
    const data = await syntheticData(640, 20);
    // 20 steps of 32 over 640 images: the first goes through the scheduler, the rest in runs.
    const cfg = { model: 'mlp' as const, batchSize: 32, backend: 'cpu' as const, workers: 2, maxSteps: 20 };
    const shared: StepEvent[] = [];
    const messages: StepEvent[] = [];
    await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { shareTrainSet: true, hooks: { onStep: (e) => shared.push(e) } });
    await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { sharedMemory: false, hooks: { onStep: (e) => messages.push(e) } });
    expect(shared).toHaveLength(20);
    expect(shared.map((e) => e.bytesOut + e.bytesIn)).toEqual(shared.map(() => 0));
    // Messages carry each slice's pixels and the gradient back, and the weights where they changed.
    expect(messages.every((e) => e.bytesOut > 16 * 3072 && e.bytesIn > 402_250 * 4)).toBe(true);
  });

  it('fails over when a thread dies mid-run: the thread is evicted, its run ends, and training goes on with the other', { timeout: 120_000 }, async () => {
    const data = await syntheticData(640, 20);
    const cfg = { model: 'mlp' as const, batchSize: 32, backend: 'cpu' as const, workers: 2, maxSteps: 20 };
    const straight = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, { shareTrainSet: true });
    const runs: number[] = [];
    const left: string[] = [];
    const events: StepEvent[] = [];
    const told: string[] = [];
    let membership: Membership | undefined;
    const crashed = await trainInProcess(testConfig({ ...cfg, out: await tempDir() }), data, {
      shareTrainSet: true,
      trainer: countRuns(runs),
      membership: (m) => {
        membership = m;
        m.onEvent((e) => {
          if (e.kind === 'joined') return;
          left.push(e.workerId);
          told.push(`left:${e.workerId}`);
        });
      },
      hooks: {
        onStep: (e) => {
          events.push(e);
          told.push(`step:${e.step}`);
          // Step 1 goes through the owner, and is reported once the run of the next 19 is under way:
          // thread 2 is terminated as soon as that run has committed 3 steps.
          if (e.step === 1) {
            const victim = membership!.live().find((w) => w.id === 'thread-2') as unknown as Exposed;
            const board = (victim.shared as unknown as { runBoard: RunBoard }).runBoard;
            const poll = setInterval(() => {
              if (Atomics.load(board.words, board.threadWord(0, 'committed')) < 3) return;
              clearInterval(poll);
              void victim.thread.thread.terminate();
            }, 0);
          }
        },
      },
    });
    // 20 steps of 32 are the epoch of 640 images: the run finishes.
    expect(crashed.outcome.status).toBe('finished');
    expect(left).toEqual(['thread-2']);
    expect(events.map((e) => e.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(events.every((e) => e.samples === 32)).toBe(true);
    // The first run ended when the thread died, uncommitted from there on; later runs went on one thread.
    expect(runs[0]).toBeLessThan(19);
    expect(runs.length).toBeGreaterThan(1);
    // The thread's leave is told after the steps the run committed before it (step 1, then the run's).
    expect(runs[0]).toBeGreaterThanOrEqual(3);
    expect(told.indexOf('left:thread-2')).toBe(1 + runs[0]);
    expect(told.filter((t) => t.startsWith('step:'))).toEqual(events.map((e) => `step:${e.step}`));
    // Steps on one thread sum one slice instead of two: the same gradient up to rounding.
    expect(crashed.weights.every(Number.isFinite)).toBe(true);
    expect(maxAbsDiff(crashed.weights, straight.weights)).toBeLessThan(1e-5);
  });
});
