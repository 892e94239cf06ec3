/**
 * The arithmetic of the benchmark report, kept free of timing and processes so it can be tested
 * on fixed inputs: quantiles, step-event summaries, scaling efficiency, the step-time breakdown,
 * time to accuracy, and the goals.
 */
import type {
  BenchReport,
  EpochPoint,
  GoalResult,
  MessageCosts,
  Quantiles,
  ScalingRun,
  StepSample,
  StepSummary,
} from './bench-report.ts';

/** The q-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics, as numpy's default. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) throw new RangeError('Expected at least one value, but got none.');
  if (!(q >= 0 && q <= 1)) throw new RangeError(`Expected a quantile in [0, 1], but got ${q}.`);
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

export function quantiles(values: readonly number[]): Quantiles {
  return { median: median(values), p10: quantile(values, 0.1), p90: quantile(values, 0.9), n: values.length };
}

function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

const STEP_FIELDS = ['step', 'workers', 'samples', 'ms', 'computeMs', 'commMs', 'optimizerMs', 'bytesOut', 'bytesIn'] as const;

/** A coordinator log line as a StepSample, or undefined if it is not a complete `step` event. */
export function parseStepEvent(line: Record<string, unknown>): StepSample | undefined {
  if (line.event !== 'step') return undefined;
  const sample: Partial<StepSample> = {};
  for (const field of STEP_FIELDS) {
    const v = line[field];
    if (typeof v !== 'number' || !Number.isFinite(v)) return undefined;
    sample[field] = v;
  }
  return sample as StepSample;
}

/** Summarises the steps after the first `warmup`; the parts' means add up to the step's mean. */
export function summariseSteps(samples: readonly StepSample[], warmup: number): StepSummary {
  const measured = samples.slice(warmup);
  if (measured.length === 0) throw new RangeError(`Expected steps after the ${warmup} warm-up steps, but the run logged ${samples.length} in all.`);
  const totalSamples = measured.reduce((a, s) => a + s.samples, 0);
  const totalMs = measured.reduce((a, s) => a + s.ms, 0);
  return {
    steps: measured.length,
    samplesPerStep: median(measured.map((s) => s.samples)),
    imagesPerSecond: (totalSamples * 1000) / totalMs,
    stepMs: quantiles(measured.map((s) => s.ms)),
    mean: {
      stepMs: totalMs / measured.length,
      computeMs: mean(measured.map((s) => s.computeMs)),
      commMs: mean(measured.map((s) => s.commMs)),
      optimizerMs: mean(measured.map((s) => s.optimizerMs)),
    },
    bytesOut: median(measured.map((s) => s.bytesOut)),
    bytesIn: median(measured.map((s) => s.bytesIn)),
  };
}

/** The K=1 run that a K-worker run of the same model and batch value is compared with. */
export function singleWorkerRun(runs: readonly ScalingRun[], model: string, batch: number): ScalingRun | undefined {
  return runs.find((r) => r.model === model && r.batch === batch && r.workers === 1);
}

/** throughput(K) / throughput(1): how many times faster than one worker. */
export function speedup(run: ScalingRun, single: ScalingRun): number {
  return run.summary.imagesPerSecond / single.summary.imagesPerSecond;
}

/** throughput(K) / (K × throughput(1)): 1 is perfect scaling. */
export function efficiency(run: ScalingRun, single: ScalingRun): number {
  return speedup(run, single) / run.workers;
}

/** Weights out to each worker and gradients back: the least a step can send, in bytes. */
export function minimumBytesPerStep(parameters: number, workers: number): number {
  return 2 * parameters * 4 * workers;
}

export interface StepBreakdown {
  stepMs: number;
  computeMs: number;
  commMs: number;
  optimizerMs: number;
  /** In-process estimates of communication's parts on the critical path; absent without costs. */
  comm?: { codecMs: number; wireMs: number; handOffMs: number; gatherMs: number; remainderMs: number };
  bytesPerStep: number;
  minimumBytes: number;
}

/**
 * Splits a run's mean step into compute, communication and optimizer (from its step events) and,
 * given the in-process message costs for the same frame sizes, communication into the parts on the
 * critical path: the coordinator encodes K task frames and decodes K results one after another;
 * the workers decode, hand off and encode in parallel, and their frames share the wire, so one of
 * each (and one round trip) counts.
 */
export function stepBreakdown(run: ScalingRun, costs?: MessageCosts): StepBreakdown {
  const { mean: m, bytesOut, bytesIn } = run.summary;
  const out: StepBreakdown = {
    stepMs: m.stepMs,
    computeMs: m.computeMs,
    commMs: m.commMs,
    optimizerMs: m.optimizerMs,
    bytesPerStep: bytesOut + bytesIn,
    minimumBytes: minimumBytesPerStep(run.parameters, run.workers),
  };
  if (costs) {
    const k = run.workers;
    const codecMs = (k * costs.encodeTaskUs.median + costs.decodeTaskUs.median + costs.encodeResultUs.median + k * costs.decodeResultUs.median) / 1000;
    const wireMs = costs.wireUs.median / 1000;
    const handOffMs = costs.handOffUs.median / 1000;
    const gatherMs = costs.gatherUs.median / 1000;
    out.comm = { codecMs, wireMs, handOffMs, gatherMs, remainderMs: m.commMs - codecMs - wireMs - handOffMs - gatherMs };
  }
  return out;
}

export interface TimedEvent {
  event?: string;
  time?: unknown;
  [key: string]: unknown;
}

function eventTime(e: TimedEvent): number {
  const t = typeof e.time === 'string' ? Date.parse(e.time) : typeof e.time === 'number' ? e.time : NaN;
  if (!Number.isFinite(t)) throw new RangeError(`Expected a log line with a time, but got ${JSON.stringify(e.time)} on a "${e.event}" event.`);
  return t;
}

export interface AccuracyTimeline {
  /** Milliseconds since the epoch at which the first step began. */
  firstStepStart: number;
  curve: EpochPoint[];
  reached: boolean;
  epochs?: number;
  steps?: number;
  seconds?: number;
}

/**
 * From a coordinator's log lines: validation accuracy after each epoch against seconds since the
 * first step began (the first step event's time less its duration), and the first epoch at which
 * validation accuracy reached `target`.
 */
export function accuracyTimeline(lines: readonly TimedEvent[], target: number): AccuracyTimeline {
  const first = lines.find((l) => l.event === 'step');
  if (!first) throw new RangeError('Expected at least one step event, but the run logged none.');
  const firstStepStart = eventTime(first) - (typeof first.ms === 'number' ? first.ms : 0);
  const curve: EpochPoint[] = [];
  let lastStep = 0;
  let hit: { epochs: number; steps: number; seconds: number } | undefined;
  for (const l of lines) {
    if (l.event === 'step' && typeof l.step === 'number') lastStep = l.step;
    if (l.event !== 'epoch' || typeof l.epoch !== 'number' || typeof l.val_accuracy !== 'number') continue;
    const point = { epoch: l.epoch, valAccuracy: l.val_accuracy, seconds: (eventTime(l) - firstStepStart) / 1000 };
    curve.push(point);
    if (!hit && point.valAccuracy >= target) hit = { epochs: point.epoch, steps: lastStep, seconds: point.seconds };
  }
  return { firstStepStart, curve, reached: hit !== undefined, ...hit };
}

// ---- goals ----------------------------------------------------------------------------------------

export const GOALS = {
  scaling: { model: 'lenet', workers: 2, mode: 'per-worker', batch: 32, speedup: 1.8 },
  overhead: { model: 'lenet', workers: 2, mode: 'per-worker', batch: 32, maxShare: 0.1 },
  adam: { parameters: 402_250, maxUs: 1000 },
} as const;

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function scalingRuns(report: BenchReport): ScalingRun[] {
  return report.scaling.measured ? report.scaling.runs : [];
}

function goalRun(report: BenchReport, g: { model: string; workers: number; mode: string; batch: number }): ScalingRun | undefined {
  return scalingRuns(report).find((r) => r.model === g.model && r.workers === g.workers && r.mode === g.mode && r.batch === g.batch);
}

function scalingGoal(report: BenchReport): GoalResult {
  const g = GOALS.scaling;
  const goal = `${g.workers} workers train ${g.model} at ${g.speedup}× one worker, batch per worker ${g.batch} (WebSockets, this machine)`;
  const run = goalRun(report, g);
  const single = singleWorkerRun(scalingRuns(report), g.model, g.batch);
  if (!run || !single) return { id: 'scaling', goal, explanation: 'Not measured in this run.' };
  const s = speedup(run, single);
  const measured = `${f2(s)}× (${run.summary.imagesPerSecond.toFixed(0)} against ${single.summary.imagesPerSecond.toFixed(0)} images/s)`;
  if (s >= g.speedup) return { id: 'scaling', goal, met: true, measured, explanation: '' };
  const a = single.summary.mean;
  const b = run.summary.mean;
  const extra = b.stepMs - a.stepMs;
  // With communication and optimizer free, K workers of the measured compute speed would give:
  const computeOnly = (run.workers * a.computeMs) / b.computeMs;
  const parts = [
    { name: 'compute on the slowest worker', from: a.computeMs, to: b.computeMs },
    { name: 'communication', from: a.commMs, to: b.commMs },
    { name: 'optimizer', from: a.optimizerMs, to: b.optimizerMs },
  ];
  const largest = [...parts].sort((x, y) => (y.to - y.from) - (x.to - x.from))[0];
  const explanation =
    `Short by ${f2(g.speedup - s)}× (${pct((g.speedup - s) / g.speedup)} below the goal). ` +
    `A ${run.workers}-worker step of ${run.summary.samplesPerStep} images takes ${f1(b.stepMs)} ms on average against ${f1(a.stepMs)} ms for ${single.summary.samplesPerStep} images with one worker; perfect scaling would keep it at ${f1(a.stepMs)} ms. ` +
    `Of the extra ${f1(extra)} ms: ${parts.map((p) => `${p.name} ${p.to - p.from >= 0 ? '+' : '−'}${f1(Math.abs(p.to - p.from))} ms (${f1(p.from)} → ${f1(p.to)})`).join(', ')}. ` +
    `The largest change is ${largest.name}. ` +
    (computeOnly < g.speedup
      ? `Compute alone (communication and optimizer free) would give ${f2(computeOnly)}×, itself short of the goal: ${run.workers} worker processes and the coordinator share ${report.machine.cores} cores, so each worker computes its ${run.batch} images more slowly than a lone worker does.`
      : `Compute alone (communication and optimizer free) would give ${f2(computeOnly)}×: the shortfall is communication and the optimizer, not compute.`);
  return { id: 'scaling', goal, met: false, measured, explanation };
}

function overheadGoal(report: BenchReport): GoalResult {
  const g = GOALS.overhead;
  const goal = `communication + optimizer under ${g.maxShare * 100}% of step time at K=${g.workers} for ${g.model} (batch per worker ${g.batch})`;
  const run = goalRun(report, g);
  if (!run) return { id: 'overhead', goal, explanation: 'Not measured in this run.' };
  const costs = report.messageCosts.find((c) => c.model === run.model && c.workers === run.workers && c.samplesPerStep === run.summary.samplesPerStep);
  const b = stepBreakdown(run, costs);
  const share = (b.commMs + b.optimizerMs) / b.stepMs;
  const measured = `${pct(share)} (${f1(b.commMs)} + ${f1(b.optimizerMs)} of ${f1(b.stepMs)} ms)`;
  if (share < g.maxShare) return { id: 'overhead', goal, met: true, measured, explanation: '' };
  const budget = (b.computeMs * g.maxShare) / (1 - g.maxShare);
  const commParts = b.comm
    ? ` In-process estimates of communication's parts: msgpack encode and decode ${f1(b.comm.codecMs)} ms, a loopback WebSocket round trip ${f1(b.comm.wireMs)} ms, hand-off to the compute thread ${f1(b.comm.handOffMs)} ms, gathering the images ${f1(b.comm.gatherMs)} ms; they leave ${f1(b.comm.remainderMs)} ms unexplained: thread wake-ups, event-loop scheduling, garbage collection and waiting for a core.`
    : '';
  const explanation =
    `Over by ${f1(100 * (share - g.maxShare))} percentage points. ` +
    `Compute is only ${f1(b.computeMs)} ms per step for ${g.model} at ${run.summary.samplesPerStep} images, so fixed per-step costs weigh heavily: communication ${f1(b.commMs)} ms, optimizer ${f1(b.optimizerMs)} ms.` +
    commParts +
    ` With compute as it is, the goal needs communication + optimizer under ${f1(budget)} ms per step.`;
  return { id: 'overhead', goal, met: false, measured, explanation };
}

function adamGoal(report: BenchReport): GoalResult {
  const g = GOALS.adam;
  const goal = `Adam over ${g.parameters.toLocaleString('en-US')} parameters under ${g.maxUs / 1000} ms`;
  const adam = report.coordinator?.adam;
  if (!adam || adam.parameters !== g.parameters) return { id: 'adam', goal, explanation: 'Not measured in this run.' };
  const us = adam.us.median;
  const measured = `${us.toFixed(0)} µs median (${adam.us.p10.toFixed(0)}–${adam.us.p90.toFixed(0)} µs p10–p90)`;
  if (us < g.maxUs) return { id: 'adam', goal, met: true, measured, explanation: '' };
  const floor = adam.memoryFloorUs.median;
  const explanation =
    `Over by ${(us - g.maxUs).toFixed(0)} µs (${pct((us - g.maxUs) / g.maxUs)}): ${((1000 * us) / adam.parameters).toFixed(2)} ns per parameter. ` +
    `The same loop's reads and writes (gradient, weight, both moments) without the arithmetic take ${floor.toFixed(0)} µs; the other ${(us - floor).toFixed(0)} µs is the float64 arithmetic, which includes a square root and a division per parameter.` +
    (floor >= g.maxUs ? ' Memory traffic alone already exceeds the goal on this machine.' : '');
  return { id: 'adam', goal, met: false, measured, explanation };
}

export function evaluateGoals(report: BenchReport): GoalResult[] {
  return [scalingGoal(report), overheadGoal(report), adamGoal(report)];
}
