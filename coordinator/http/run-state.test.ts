import { describe, expect, it } from 'vitest';
import { RunState, type StateMessage } from './run-state.ts';
import { epochRecord, stepEvent } from './testing.ts';

const info = { model: 'lenet', dataset: 'synthetic', epochs: 2, batchSize: 32, transport: 'websocket' as const };

function joinTwo(state: RunState): void {
  state.onMembership({ kind: 'joined', workerId: 'w1', name: 'alpha', backend: 'wasm' });
  state.onMembership({ kind: 'joined', workerId: 'w2', name: 'beta', backend: 'cpu' });
}

describe('RunState', () => {
  it('starts waiting, with no steps and no ETA', () => {
    const s = new RunState(info).snapshot();
    expect(s.run.state).toBe('waiting');
    expect(s.progress.step).toBe(0);
    expect(s.progress.etaSeconds).toBeNull();
    expect(s.history.steps).toEqual([]);
  });

  it('records a step: progress, the batch and epoch-mean values, and each worker\'s compute and bytes', () => {
    const state = new RunState(info, () => 1_000);
    joinTwo(state);
    state.onStep(stepEvent({ step: 3, stepInEpoch: 3, stepsInEpoch: 10, batchLoss: 1.5, loss: 2.0 }));
    const s = state.snapshot();
    expect(s.run.state).toBe('training');
    expect(s.progress).toMatchObject({ epoch: 1, step: 3, stepInEpoch: 3, stepsInEpoch: 10, totalSteps: 20 });
    expect(s.history.steps[0]).toMatchObject({ step: 3, loss: 1.5, epochLoss: 2.0, t: 1_000 });
    expect(s.workers.map((w) => [w.name, w.backend, w.slices, w.lastComputeMs, w.bytesOut, w.bytesIn])).toEqual([
      ['alpha', 'wasm', 1, 30, 1500, 500],
      ['beta', 'cpu', 1, 25, 1500, 500],
    ]);
  });

  it('computes throughput and ETA from the recent steps', () => {
    const state = new RunState(info);
    // 2 steps of 40 ms, 32 samples each: 64 samples in 80 ms = 800 img/s, 25 steps/s.
    state.onStep(stepEvent({ step: 1, stepInEpoch: 1 }));
    state.onStep(stepEvent({ step: 2, stepInEpoch: 2 }));
    const p = state.snapshot().progress;
    expect(p.imagesPerSecond).toBe(800);
    expect(p.stepsPerSecond).toBe(25);
    // 20 steps in all, 18 left at 40 ms each.
    expect(p.etaSeconds).toBeCloseTo(0.72, 5);
  });

  it('keeps a worker that left or was evicted in the table, with why', () => {
    const state = new RunState(info);
    joinTwo(state);
    state.onMembership({ kind: 'evicted', workerId: 'w2', reason: 'DTRAIN_ERR_NON_FINITE: NaN' });
    const rows = state.snapshot().workers;
    expect(rows.map((w) => w.state)).toEqual(['joined', 'evicted']);
    expect(rows[1].reason).toContain('NON_FINITE');
    expect(state.snapshot().events.map((e) => e.kind)).toEqual(['worker_joined', 'worker_joined', 'worker_evicted']);
  });

  it('shows no worker as joined once the run has ended, keeping an evicted one as evicted', () => {
    const state = new RunState(info, () => 5_000);
    joinTwo(state);
    state.onMembership({ kind: 'evicted', workerId: 'w2', reason: 'DTRAIN_ERR_NON_FINITE: NaN' });
    const messages: StateMessage[] = [];
    state.subscribe((m) => messages.push(m));
    state.onFinished({ status: 'stopped' });
    const rows = state.snapshot().workers;
    expect(messages.map((m) => m.type)).toEqual(['event', 'workers', 'finished']);
    expect(messages[1].data).toEqual(rows);
    expect(rows.map((w) => [w.state, w.reason])).toEqual([['left', 'the run stopped'], ['evicted', 'DTRAIN_ERR_NON_FINITE: NaN']]);
    expect(rows[0].leftAt).toBe(new Date(5_000).toISOString());
  });

  it('lists refused peers at most once a second per code, saying how many it held back', () => {
    let now = 0;
    const state = new RunState(info, () => now);
    for (let i = 0; i < 5; i++) state.onRejected('auth_failed', 'DTRAIN_ERR_AUTH');
    state.onRejected('frame_rejected', 'DTRAIN_ERR_NON_FINITE');
    now = 1500;
    state.onRejected('auth_failed', 'DTRAIN_ERR_AUTH');
    expect(state.snapshot().events.map((e) => e.text)).toEqual([
      'refused a peer: DTRAIN_ERR_AUTH',
      'refused a peer: DTRAIN_ERR_NON_FINITE',
      'refused a peer: DTRAIN_ERR_AUTH (and 4 more since the last one shown)',
    ]);
  });

  it('thins the per-step history on long runs, keeping at most 2000 points over the whole run', () => {
    const state = new RunState(info);
    for (let step = 1; step <= 10_000; step++) state.onStep(stepEvent({ step, stepInEpoch: step, stepsInEpoch: 10_000 }));
    const h = state.snapshot().history;
    expect(h.steps.length).toBeLessThanOrEqual(2000);
    expect(h.steps.length).toBeGreaterThan(1000);
    expect(h.stepStride).toBe(8);
    expect(h.steps.every((p) => p.step % h.stepStride === 0)).toBe(true);
    expect(h.steps[h.steps.length - 1].step).toBe(10_000);
    expect(state.snapshot().recentSteps).toHaveLength(50);
  });

  it('emits a message for every change, in order', () => {
    const state = new RunState(info);
    const seen: StateMessage['type'][] = [];
    const off = state.subscribe((m) => seen.push(m.type));
    joinTwo(state);
    state.onStep(stepEvent());
    state.onEpochEnd(epochRecord());
    state.onFinished({ status: 'finished', test: { loss: 1, accuracy: 0.5 } }, 'data:image/png;base64,AAAA');
    off();
    state.onStep(stepEvent({ step: 2 }));
    expect(seen).toEqual(['event', 'workers', 'event', 'workers', 'step', 'epoch', 'event', 'event', 'workers', 'finished']);
  });

  it('shows the test result and the prediction grid once the run finishes', () => {
    const state = new RunState(info);
    state.onFinished({ status: 'finished', test: { loss: 1.2, accuracy: 0.61 } }, 'data:image/png;base64,AAAA');
    const s = state.snapshot();
    expect(s.run.state).toBe('finished');
    expect(s.run.test).toEqual({ loss: 1.2, accuracy: 0.61 });
    expect(s.predictions).toBe('data:image/png;base64,AAAA');
  });

  it('starts a resumed run\'s epoch curves from its history', () => {
    const state = new RunState(info);
    state.restoreHistory([epochRecord({ epoch: 1 }), epochRecord({ epoch: 2 })]);
    expect(state.snapshot().history.epochs.map((e) => e.epoch)).toEqual([1, 2]);
  });
});
