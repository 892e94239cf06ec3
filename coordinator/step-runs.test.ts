import { describe, expect, it } from 'vitest';
import { GradientScreen } from './result-check.ts';
import { refusalReason, runLength, runStepReports, stepRunsOn, stepsRunFor } from './step-runs.ts';
import type { RunOutcome } from './shared-step.ts';
import type { SlotRecord } from '../common/step-run.ts';

const record = (norm: number, endedAt: number, over: Partial<SlotRecord> = {}): SlotRecord => ({ lossSum: 4, correct: 2, squares: (norm * 16) ** 2, computeMs: 1, optimizerMs: 0.25, fromBackend: false, endedAt, ...over });
const seeded = () => {
  const s = new GradientScreen({ entries: [], totalSize: 0, trainableSize: 0 });
  s.seedHistory([1, 1]);
  return s;
};

describe('how long a run of steps is', () => {
  it('covers whole batches only, up to 32 steps, and stops at --max-steps and at the next checkpoint', () => {
    const room = { samplesLeft: 10_000, batch: 64, stepsLeft: Infinity, toCheckpoint: Infinity };
    expect(runLength(room)).toBe(32);
    expect(runLength({ ...room, samplesLeft: 64 * 5 + 63 })).toBe(5);
    expect(runLength({ ...room, stepsLeft: 3 })).toBe(3);
    expect(runLength({ ...room, toCheckpoint: 7 })).toBe(7);
    expect(runLength({ ...room, samplesLeft: 10 })).toBe(0);
  });

  it('reads DTRAIN_STEP_RUNS, on by default', () => {
    expect(stepRunsOn({})).toBe(true);
    expect(stepRunsOn({ DTRAIN_STEP_RUNS: '0' })).toBe(false);
    expect(() => stepRunsOn({ DTRAIN_STEP_RUNS: 'sometimes' })).toThrow(/DTRAIN_STEP_RUNS/);
  });
});

describe('the reports of a run\'s steps', () => {
  const run: RunOutcome = { steps: [[record(1, 12), record(1, 11, { computeMs: 2 })], [record(1, 15), record(1, 16)]], threads: [0, 1], startedAt: 10 };

  it('times each step from the end of the one before, sums its slots and names the threads', () => {
    const screen = seeded();
    const steps = runStepReports(run, [16, 16], screen, (i) => `thread-${i + 1}`);
    expect(steps.map((s) => s.ms)).toEqual([2, 4]);
    expect(steps[0].totals).toEqual({ count: 32, lossSum: 8, correct: 4 });
    expect(steps[0].outcome.stats.maxComputeMs).toBe(2);
    expect(steps[0].outcome.stats.perWorker.map((w) => w.workerId)).toEqual(['thread-1', 'thread-2']);
    expect(steps[1].optimizerMs).toBe(0.25);
    // The owner's screen now holds the run's norms, as if it had stepped them.
    expect(screen.history).toHaveLength(6);
  });

  it('stops the run with an error where the owner\'s screen refuses a step the threads committed', () => {
    const bad: RunOutcome = { ...run, steps: [[record(1, 12), record(1e9, 12)]] };
    expect(() => runStepReports(bad, [16, 16], seeded(), String)).toThrow(/committed step 1 of a run, but the owner's screen refuses it \(slot 1: gradient norm/);
  });

  it('says why a run stopped early, without touching the owner\'s screen', () => {
    const screen = seeded();
    expect(refusalReason({ ...run, refused: [record(1, 20), record(1e9, 20)] }, [16, 16], screen)).toMatch(/^slot 1: gradient norm/);
    expect(refusalReason(run, [16, 16], screen)).toBeUndefined();
    expect(screen.history).toEqual([1, 1]);
  });
});

describe('whether a job\'s threads will drive runs of steps', () => {
  it('says yes for a model without BatchNorm, the mean and no reduction grain, with runs on', () => {
    for (const model of ['mlp', 'lenet', 'cnn-dropout'] as const) expect(stepsRunFor({ model, aggregation: 'mean', reduceGrain: 0 }, {})).toBe(true);
    expect(stepsRunFor({ model: 'lenet' }, {})).toBe(true);
  });

  it('says no for BatchNorm, a robust aggregation, a reduction grain or DTRAIN_STEP_RUNS=0', () => {
    expect(stepsRunFor({ model: 'cnn-bn' }, {})).toBe(false);
    expect(stepsRunFor({ model: 'lenet', aggregation: 'median' }, {})).toBe(false);
    expect(stepsRunFor({ model: 'lenet', reduceGrain: 8 }, {})).toBe(false);
    expect(stepsRunFor({ model: 'lenet' }, { DTRAIN_STEP_RUNS: '0' })).toBe(false);
  });
});

