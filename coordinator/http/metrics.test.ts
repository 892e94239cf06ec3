import { describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import parsePrometheus, { type ParsedFamily } from 'parse-prometheus-text-format';
import { RunMetrics } from './metrics.ts';
import { epochRecord, stepEvent } from './testing.ts';

const labels = { model: 'lenet', dataset: 'synthetic', transport: 'websocket' as const };

/** A run of 3 steps, an epoch, two workers (one evicted) and two refused frames. */
async function exercised(): Promise<string> {
  const m = new RunMetrics(labels);
  m.onMembership({ kind: 'joined', workerId: 'w1', name: 'a', backend: 'wasm' }, 1);
  m.onMembership({ kind: 'joined', workerId: 'w2', name: 'b', backend: 'wasm' }, 2);
  m.onStep(stepEvent({ step: 1, ms: 40, computeMs: 30, commMs: 8, optimizerMs: 2, transferMs: 5, workerOverheadMs: 1.5 }));
  m.onStep(stepEvent({ step: 2, ms: 120, computeMs: 100, commMs: 18, optimizerMs: 2, retries: 1 }));
  m.onStep(stepEvent({ step: 3, ms: 45, batchLoss: 1.75, batchAccuracy: 0.5, samples: 30, aheadMs: 12 }));
  m.onEpochEnd(epochRecord({ val_loss: 1.8, val_accuracy: 0.42 }));
  m.onRejected('DTRAIN_ERR_AUTH', false);
  m.onRejected('DTRAIN_ERR_NON_FINITE', true);
  m.onMembership({ kind: 'evicted', workerId: 'w2', reason: 'NaN' }, 1);
  return (await m.render()).text;
}

function family(families: ParsedFamily[], name: string): ParsedFamily {
  const f = families.find((x) => x.name === name);
  if (!f) throw new Error(`no metric ${name} in: ${families.map((x) => x.name).join(', ')}`);
  return f;
}

const value = (families: ParsedFamily[], name: string, labelValues: Record<string, string> = {}) =>
  Number(family(families, name).metrics.find((m) => Object.entries(labelValues).every(([k, v]) => m.labels?.[k] === v))?.value);

describe('RunMetrics', () => {
  it('exposes counters, gauges and histograms that a Prometheus parser reads back', async () => {
    const families = parsePrometheus(await exercised());
    expect(families.every((f) => f.name.startsWith('dtrain_'))).toBe(true);
    expect(family(families, 'dtrain_steps_total').type).toBe('COUNTER');
    expect(value(families, 'dtrain_steps_total')).toBe(3);
    expect(value(families, 'dtrain_samples_total')).toBe(32 + 32 + 30);
    expect(value(families, 'dtrain_task_retries_total')).toBe(1);
    expect(value(families, 'dtrain_sent_bytes_total')).toBe(9000);
    expect(value(families, 'dtrain_received_bytes_total')).toBe(3000);
    expect(value(families, 'dtrain_rejected_frames_total', { code: 'DTRAIN_ERR_AUTH' })).toBe(1);
    expect(value(families, 'dtrain_rejected_frames_total', { code: 'DTRAIN_ERR_NON_FINITE' })).toBe(1);
    expect(value(families, 'dtrain_rejected_results_total', { code: 'DTRAIN_ERR_NON_FINITE' })).toBe(1);
    expect(family(families, 'dtrain_rejected_results_total').metrics).toHaveLength(1);
    expect(value(families, 'dtrain_membership_changes_total', { kind: 'evicted' })).toBe(1);
    expect(family(families, 'dtrain_workers').type).toBe('GAUGE');
    expect(value(families, 'dtrain_workers')).toBe(1);
    expect(value(families, 'dtrain_epoch')).toBe(1);
    expect(value(families, 'dtrain_loss')).toBe(1.75);
    expect(value(families, 'dtrain_accuracy')).toBe(0.5);
    expect(value(families, 'dtrain_validation_accuracy')).toBe(0.42);
    expect(value(families, 'dtrain_run_info', { model: 'lenet', transport: 'websocket' })).toBe(1);
  });

  it('records step phases in seconds: 40 ms, 120 ms and 45 ms fall in the 0.05, 0.25 and 0.05 buckets', async () => {
    const families = parsePrometheus(await exercised());
    const step = family(families, 'dtrain_step_duration_seconds');
    expect(step.type).toBe('HISTOGRAM');
    const h = step.metrics[0];
    expect(Number(h.count)).toBe(3);
    expect(Number(h.sum)).toBeCloseTo(0.205, 9);
    expect(Number(h.buckets!['0.025'])).toBe(0);
    expect(Number(h.buckets!['0.05'])).toBe(2);
    expect(Number(h.buckets!['0.1'])).toBe(2);
    expect(Number(h.buckets!['0.25'])).toBe(3);
    for (const name of ['compute', 'communication', 'optimizer']) expect(Number(family(families, `dtrain_${name}_duration_seconds`).metrics[0].count)).toBe(3);
    // Only step 1 came with the round trip's parts (a WebSocket result with its worker's own time).
    const transfer = family(families, 'dtrain_transfer_duration_seconds').metrics[0];
    expect([Number(transfer.count), Number(transfer.sum)]).toEqual([1, 0.005]);
    const overhead = family(families, 'dtrain_worker_overhead_duration_seconds').metrics[0];
    expect([Number(overhead.count), Number(overhead.sum)]).toEqual([1, 0.0015]);
    // Only step 3 came with a pass ahead's compute before it began (in-process).
    const ahead = family(families, 'dtrain_ahead_compute_duration_seconds').metrics[0];
    expect([Number(ahead.count), Number(ahead.sum)]).toEqual([1, 0.012]);
  });

  it('exposes no step or validation values before there are any: absent, not 0', async () => {
    const m = new RunMetrics(labels);
    m.onMembership({ kind: 'joined', workerId: 'w1', name: 'a', backend: 'wasm' }, 1);
    const before = parsePrometheus((await m.render()).text).map((f) => f.name);
    expect(before).toContain('dtrain_workers');
    for (const name of ['dtrain_epoch', 'dtrain_loss', 'dtrain_accuracy', 'dtrain_validation_loss', 'dtrain_validation_accuracy']) expect(before).not.toContain(name);
    m.onStep(stepEvent({ step: 1, batchLoss: 2.1 }));
    const afterStep = parsePrometheus((await m.render()).text);
    expect(value(afterStep, 'dtrain_loss')).toBe(2.1);
    expect(afterStep.map((f) => f.name)).not.toContain('dtrain_validation_accuracy');
    m.onEpochEnd(epochRecord({ val_loss: 1.9, val_accuracy: 0.3 }));
    expect(value(parsePrometheus((await m.render()).text), 'dtrain_validation_accuracy')).toBe(0.3);
  });

  it('keeps each run in its own registry', async () => {
    const a = new RunMetrics(labels);
    const b = new RunMetrics(labels);
    a.onStep(stepEvent());
    expect(value(parsePrometheus((await b.render()).text), 'dtrain_steps_total')).toBe(0);
    expect(value(parsePrometheus((await a.render()).text), 'dtrain_steps_total')).toBe(1);
  });

  const promtool = spawnSync('promtool', ['--version']).error ? undefined : 'promtool';
  // CI installs Debian's prometheus package (.ci/run): there the lint must run, not skip.
  it.skipIf(!promtool && !process.env.CI)('passes promtool check metrics', async () => {
    expect(promtool, 'promtool is not on PATH: apt-get install prometheus').toBeDefined();
    const text = await exercised();
    const out = execFileSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(out.trim()).toBe('');
  });
});
