/**
 * The arithmetic of the benchmark report, kept free of timing and processes so it can be tested
 * on fixed inputs: quantiles, step-event summaries, scaling efficiency, the step-time breakdown,
 * time to accuracy, and the goals.
 */
import type {
  BenchReport,
  CoordinatorWork,
  EndToEndRun,
  EpochPoint,
  GoalResult,
  InProcessRun,
  MessageCosts,
  TorchPeerRow,
  Quantiles,
  ScalingRun,
  StepCeilingRun,
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

/**
 * The run whose images/s is the median of `runs` (the lower middle for an even count), with every
 * run's images/s, in order, as its repeats, and their second epochs' where every run had one.
 */
export function medianRun(runs: readonly EndToEndRun[]): EndToEndRun {
  if (runs.length === 0) throw new RangeError('Expected at least one run, but got none.');
  const sorted = [...runs].sort((a, b) => a.imagesPerSecond - b.imagesPerSecond);
  const seconds = runs.map((r) => r.secondEpochImagesPerSecond);
  const secondEpochRepeats = seconds.every((x) => x !== undefined) ? { secondEpochRepeats: seconds as number[] } : {};
  const paired = runs.map((r) => r.pairedTorch);
  const pairedTorchRepeats = paired.every((x) => x !== undefined) ? { pairedTorchRepeats: paired as number[] } : {};
  const brackets = runs.map((r) => r.pairedTorchBracket);
  const pairedTorchBracketRepeats = brackets.every((x) => x !== undefined) ? { pairedTorchBracketRepeats: brackets as [number, number][] } : {};
  return { ...sorted[(sorted.length - 1) >> 1], repeats: runs.map((r) => r.imagesPerSecond), ...secondEpochRepeats, ...pairedTorchRepeats, ...pairedTorchBracketRepeats };
}

/** "just before it", or "just before and just after it (their mean)". */
function pairedText(w: ReturnType<typeof pairedWhen>): string {
  return `${w.when} it${w.bracketed ? ' (their mean)' : ''}`;
}

/** When the paired PyTorch figures were measured, for the prose: around each run, or (older reports) before it. */
export function pairedWhen(runs: readonly EndToEndRun[]): { bracketed: boolean; when: string; column: string } {
  return runs.some((r) => r.pairedTorchBracketRepeats ?? r.pairedTorchBracket)
    ? { bracketed: true, when: 'just before and just after', column: 'dtrain / PyTorch around each run' }
    : { bracketed: false, when: 'just before', column: 'dtrain / PyTorch just before each run' };
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
  for (const field of ['transferMs', 'workerOverheadMs', 'aheadMs'] as const) {
    const v = line[field];
    if (typeof v === 'number' && Number.isFinite(v)) sample[field] = v;
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
      ...measuredParts(measured),
      ...aheadPart(measured),
    },
    bytesOut: median(measured.map((s) => s.bytesOut)),
    bytesIn: median(measured.map((s) => s.bytesIn)),
  };
}

/** The means of the round trip's parts, where every measured step has them (WebSocket runs since 2026-12-02). */
function measuredParts(steps: readonly StepSample[]): { transferMs?: number; workerOverheadMs?: number } {
  if (!steps.every((s) => s.transferMs !== undefined && s.workerOverheadMs !== undefined)) return {};
  return { transferMs: mean(steps.map((s) => s.transferMs!)), workerOverheadMs: mean(steps.map((s) => s.workerOverheadMs!)) };
}

/** The mean of the compute run ahead of each step, where every measured step reports it (in-process runs since 2026-12-03). */
function aheadPart(steps: readonly StepSample[]): { aheadMs?: number } {
  return steps.every((s) => s.aheadMs !== undefined) ? { aheadMs: mean(steps.map((s) => s.aheadMs!)) } : {};
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
  /**
   * Measured in the run, for the result each step waited for: its frames' time on the way (encoding,
   * sending, delivery, decoding, both ways), its worker's time outside compute, and the rest of
   * communication (the coordinator's own work, and the slowest compute's lead over that result's).
   */
  measured?: { transferMs: number; workerOverheadMs: number; restMs: number };
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
  if (m.transferMs !== undefined && m.workerOverheadMs !== undefined) {
    out.measured = { transferMs: m.transferMs, workerOverheadMs: m.workerOverheadMs, restMs: m.commMs - m.transferMs - m.workerOverheadMs };
  }
  if (costs) {
    const k = run.workers;
    const codecMs = (k * costs.encodeTaskUs.median + costs.decodeTaskUs.median + costs.encodeResultUs.median + k * costs.decodeResultUs.median) / 1000;
    const wireMs = costs.wireUs.median / 1000;
    const handOffMs = costs.computeThread === false ? 0 : costs.handOffUs.median / 1000;
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
const signedPct = (x: number) => `${x >= 0 ? '+' : '−'}${pct(Math.abs(x))}`;

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
      : `Compute alone (communication and optimizer free) would give ${f2(computeOnly)}×: the shortfall is communication and the optimizer, not compute.`) +
    twoCoresText(report, g.model, g.batch) +
    ceilingScalingText(report, g.model, g.workers, g.speedup);
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
  const commParts = b.measured
    ? ` Measured parts of communication, for the result each step waited for: its frames encoded, sent, delivered and decoded, both ways, ${f1(b.measured.transferMs)} ms; its worker outside compute (decoding, the hand-off to its compute thread and back) ${f1(b.measured.workerOverheadMs)} ms; the rest, ${f1(b.measured.restMs)} ms, is the coordinator's own work (gathering, dispatch, bookkeeping) and the slowest compute's lead over that result's. Each hop wakes a thread or a process, and with two workers computing on two cores a woken thread waits for a core.`
    : b.comm
    ? ` In-process estimates of communication's parts: msgpack encode and decode ${f1(b.comm.codecMs)} ms, a loopback WebSocket round trip ${f1(b.comm.wireMs)} ms, hand-off to the compute thread ${f1(b.comm.handOffMs)} ms, gathering the images ${f1(b.comm.gatherMs)} ms; they leave ${f1(b.comm.remainderMs)} ms unexplained: thread wake-ups, event-loop scheduling, garbage collection and waiting for a core.`
    : '';
  const explanation =
    `Over by ${f1(100 * (share - g.maxShare))} percentage points. ` +
    `Compute is only ${f1(b.computeMs)} ms per step for ${g.model} at ${run.summary.samplesPerStep} images, so fixed per-step costs weigh heavily: communication ${f1(b.commMs)} ms, optimizer ${f1(b.optimizerMs)} ms.` +
    commParts +
    ` With compute as it is, the goal needs communication + optimizer under ${f1(budget)} ms per step.` +
    ceilingOutsideText(report, g.model, g.workers, g.maxShare);
  return { id: 'overhead', goal, met: false, measured, explanation };
}

function adamGoal(report: BenchReport): GoalResult {
  const g = GOALS.adam;
  const goal = `Adam over ${g.parameters.toLocaleString('en-US')} parameters under ${g.maxUs / 1000} ms`;
  const adam = report.coordinator?.adam;
  if (!adam || adam.parameters !== g.parameters) return { id: 'adam', goal, explanation: 'Not measured in this run.' };
  const us = adam.us.median;
  const measured = `${us.toFixed(0)} µs median (${adam.us.p10.toFixed(0)}–${adam.us.p90.toFixed(0)} µs p10–p90)${adam.implementation ? `, ${adam.implementation} Adam` : ''}`;
  if (us < g.maxUs) return { id: 'adam', goal, met: true, measured, explanation: '' };
  const floor = adam.memoryFloorUs.median;
  const explanation =
    `Over by ${(us - g.maxUs).toFixed(0)} µs (${pct((us - g.maxUs) / g.maxUs)}): ${((1000 * us) / adam.parameters).toFixed(2)} ns per parameter. ` +
    `The same loop's reads and writes (gradient, weight, both moments) without the arithmetic take ${floor.toFixed(0)} µs; the other ${(us - floor).toFixed(0)} µs is the float64 arithmetic, which includes a square root and a division per parameter.` +
    (floor >= g.maxUs ? ' Memory traffic alone already exceeds the goal on this machine.' : '');
  return { id: 'adam', goal, met: false, measured, explanation };
}

// ---- issue 10's goals --------------------------------------------------------------------------

export const PEER_GOALS = {
  /** `dtrain train` at default threads against the best PyTorch (one process or DDP-2), per model. */
  peer: { ratio: 1 },
  inProcessScaling: { models: ['mlp', 'lenet'], workers: 2, batchPerWorker: 32, speedup: 1.8 },
  inProcessOverhead: { models: ['mlp', 'lenet'], batch: 32, maxLoss: 0.05 },
  coordinatorWork: { model: 'mlp', maxMs: 0.5 },
  /** Growth of resident memory between 10–20% and 90–100% of the steps. */
  memory: { maxGrowthBytes: 16 * 2 ** 20, maxGrowthShare: 0.02 },
  seed: { models: 4, epochs: 20, images: 40_000 },
} as const;

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

/** The best PyTorch row (one process at any thread count, or DDP) for a model. */
export function bestTorch(report: BenchReport, model: string): TorchPeerRow | undefined {
  if (!report.peers?.measured) return undefined;
  return report.peers.rows.filter((r) => r.model === model).sort((a, b) => b.imagesPerSecond - a.imagesPerSecond)[0];
}

export function torchLabel(r: TorchPeerRow): string {
  return r.mode === 'ddp' ? `DDP ${r.processes}×${r.threadsPerProcess} thread` : `1 process, ${r.threadsPerProcess} thread${r.threadsPerProcess === 1 ? '' : 's'}`;
}

/** One thread's bare compute (StepComputer.trainInto, batch 32) from the compute section, images/s. */
export function bareCompute(report: BenchReport, model: string, batch = 32): number | undefined {
  return report.compute.measured ? report.compute.rows.find((r) => r.model === model && r.batch === batch)?.ours.median : undefined;
}

function inProcessRun(report: BenchReport, model: string, workers: number): InProcessRun | undefined {
  return report.inProcess?.measured ? report.inProcess.runs.find((r) => r.model === model && r.workers === workers) : undefined;
}

function stepParts(s: InProcessRun['summary']): string {
  const m = s.mean;
  const ahead = m.aheadMs !== undefined ? ` (and ${f2(m.aheadMs)} more of compute ran ahead, before the step began)` : '';
  return `step ${f2(m.stepMs)} ms = slowest compute ${f2(m.computeMs)} + communication ${f2(m.commMs)} + reduction and Adam ${f2(m.optimizerMs)}${ahead}`;
}

/** A slice's whole compute per step: inside the step, and (since 2026-12-03) what ran ahead of it. */
function sliceComputeMs(s: InProcessRun['summary']): number {
  return s.mean.computeMs + (s.mean.aheadMs ?? 0);
}

/**
 * Each run's images/s over PyTorch's best measured around it (PeersPlan.endToEnd.pairedTorchSeconds:
 * the mean of just before and just after), in run order; undefined where the runs had no paired
 * peer. A machine whose speed drifts over minutes moves both sides of each ratio alike, and a
 * steady drift during the run itself cancels in the mean.
 */
export function pairedRatios(run: EndToEndRun): number[] | undefined {
  const torch = run.pairedTorchRepeats;
  if (torch && run.repeats && torch.length === run.repeats.length) return run.repeats.map((x, i) => x / torch[i]);
  return run.pairedTorch ? [run.imagesPerSecond / run.pairedTorch] : undefined;
}

/** dtrain against PyTorch for one model: the median paired ratio where there is one, else against the peers section's best. */
export function peerRatio(report: BenchReport, run: EndToEndRun): number | undefined {
  const paired = pairedRatios(run);
  if (paired) return median(paired);
  const torch = bestTorch(report, run.model);
  return torch ? run.imagesPerSecond / torch.imagesPerSecond : undefined;
}

function peerGoal(report: BenchReport): GoalResult {
  const goal = '`dtrain train` (default threads) at least as fast as the best PyTorch (one process or DDP-2) for each model, same run';
  if (!report.endToEnd?.measured || !report.peers?.measured) return { id: 'peer', goal, explanation: 'Not measured in this run.' };
  const rows = report.endToEnd.runs.map((run) => ({ run, torch: bestTorch(report, run.model) })).filter((x) => x.torch);
  if (rows.length === 0) return { id: 'peer', goal, explanation: 'No model was measured both ways.' };
  const ratio = (x: (typeof rows)[number]) => peerRatio(report, x.run)!;
  const range = (x: (typeof rows)[number]) => {
    const p = pairedRatios(x.run);
    return p && p.length > 1 ? ` (${f2(Math.min(...p))}–${f2(Math.max(...p))})` : '';
  };
  const paired = rows.some((x) => pairedRatios(x.run));
  const measured = rows.map((x) => `${x.run.model} ${f2(ratio(x))}${range(x)}`).join(', ') + (paired ? `: each run against PyTorch measured ${pairedText(pairedWhen(rows.map((x) => x.run)))}, the median of the runs (their range)` : '');
  const missed = rows.filter((x) => ratio(x) < PEER_GOALS.peer.ratio);
  if (missed.length === 0) return { id: 'peer', goal, met: true, measured, explanation: '' };
  const explanation = missed
    .map((x) => {
      const bare = bareCompute(report, x.run.model);
      const k = x.run.workers;
      const ceiling = bare ? ` One thread's bare compute is ${bare.toFixed(0)} img/s, so ${k} thread${k === 1 ? '' : 's'} could reach at most ~${(k * bare).toFixed(0)} img/s (${f2((k * bare) / x.torch!.imagesPerSecond)}× PyTorch) with a free step around them.` : '';
      const k2 = inProcessRun(report, x.run.model, 2);
      const parts = k2 ? ` In-process K=2: ${stepParts(k2.summary)}.` : '';
      const p = x.run.pairedTorchRepeats;
      const b = x.run.pairedTorchBracketRepeats;
      const around = b ? ` (before and after: ${b.map(([u, v]) => `${u.toFixed(0)} and ${v.toFixed(0)}`).join('; ')})` : '';
      const pairedText = p ? ` Paired: dtrain ${(x.run.repeats ?? []).map((v) => v.toFixed(0)).join(', ')} against PyTorch ${p.map((v) => v.toFixed(0)).join(', ')} img/s${around}.` : '';
      return `${x.run.model}: ${x.run.imagesPerSecond.toFixed(0)} img/s against PyTorch ${torchLabel(x.torch!)} ${x.torch!.imagesPerSecond.toFixed(0)} img/s in the peers section.${pairedText}${ceiling}${parts}`;
    })
    .join(' ');
  return { id: 'peer', goal, met: false, measured, explanation };
}

/**
 * What two processes computing at once gave against one alone in this run (scripts/bench-compute-pair.ts),
 * for `model` at `batch`: what the machine gave two computing cores at the time, for dtrain's compute
 * and PyTorch's. '' where not measured.
 */
export function twoCoresText(report: BenchReport, model: string, batch: number): string {
  const runs = report.computePair?.measured ? report.computePair.runs.filter((r) => r.model === model && r.batch === batch) : [];
  const ours = runs.find((r) => r.peer === 'dtrain');
  if (!ours) return '';
  const torch = runs.find((r) => r.peer === 'torch');
  const peer = torch ? `; two of PyTorch's one-thread training steps, measured the same way, gave ${f2(torch.ratio)}×` : '';
  const rounds = ours.ratios.length > 1 ? `; rounds ${ours.ratios.map(f2).join(', ')}` : '';
  return ` What this machine gave two computing cores in this run: two processes of one thread's bare compute (${model}, batch ${ours.batch}) running at once gave ${f2(ours.ratio)}× one alone (scripts/bench-compute-pair.ts, median of ${ours.ratios.length} rounds${rounds})${peer}.`;
}

/** The step ceiling's runs of one model (scripts/bench-step-ceiling.ts), round by round: the bare pass, K=1 and K=`k`. */
export interface CeilingSummary {
  model: string;
  /** Per round: K=k's images/s over K=1's. */
  scaling: number[];
  /** Per round: K=1's images/s over the bare pass's. */
  ofBare: number[];
  /** Per round: the K=k step outside its slowest thread's compute (the barriers' waits and the stripe), as a share of the step. */
  outside: number[];
  /** The runs of the round whose K=k scaling is the median's (the lower middle for an even count). */
  bare: StepCeilingRun;
  one: StepCeilingRun;
  many: StepCeilingRun;
}

/** The mean of one part over a run's threads, ms. */
export function meanPart(run: StepCeilingRun, part: 'computeMs' | 'stripeMs' | 'waitedMs'): number {
  return run.parts.reduce((sum, p) => sum + p[part], 0) / run.parts.length;
}

/** The step outside its slowest thread's compute, as a share of the step. */
function outsideShare(run: StepCeilingRun): number {
  return (run.stepMs - Math.max(...run.parts.map((p) => p.computeMs))) / run.stepMs;
}

/** `model`'s step-ceiling rounds at K=1 and K=`k` with their bare pass; undefined where none was complete. */
export function ceilingSummary(report: BenchReport, model: string, k: number): CeilingSummary | undefined {
  const runs = report.stepCeiling?.measured ? report.stepCeiling.runs.filter((r) => r.model === model) : [];
  const rounds = [...new Set(runs.map((r) => r.round))]
    .map((round) => {
      const of = (kind: StepCeilingRun['kind'], threads: number) => runs.find((r) => r.round === round && r.kind === kind && r.threads === threads);
      return { bare: of('bare', 1), one: of('step', 1), many: of('step', k) };
    })
    .filter((x): x is { bare: StepCeilingRun; one: StepCeilingRun; many: StepCeilingRun } => !!(x.bare && x.one && x.many));
  if (rounds.length === 0) return undefined;
  const scaling = rounds.map((x) => x.many.imagesPerSecond / x.one.imagesPerSecond);
  const order = scaling.map((v, i) => ({ v, i })).sort((a, b) => a.v - b.v);
  const mid = rounds[order[Math.floor((order.length - 1) / 2)].i];
  return { model, scaling, ofBare: rounds.map((x) => x.one.imagesPerSecond / x.bare.imagesPerSecond), outside: rounds.map((x) => outsideShare(x.many)), ...mid };
}

const CEILING_STEP = "section 0b's step ceiling: threads that train, meet at a barrier, reduce and apply Adam to their stripes and meet again, with no coordinating thread, hand-off or data loading";

/** " The step's ceiling (…): K=k gave …× K=1 for model …" for a scaling goal of `goal`×; '' where not measured. */
export function ceilingScalingText(report: BenchReport, model: string, k: number, goal: number): string {
  const c = ceilingSummary(report, model, k);
  if (!c) return '';
  const r = median(c.scaling);
  const verdict = r < goal ? `: below the goal's ${goal}× even with nothing around the step's own arithmetic` : '';
  return ` The step's ceiling (${CEILING_STEP}): K=${k} gave ${f2(r)}× K=1 for ${model}${c.scaling.length > 1 ? ` (median of ${c.scaling.length} rounds: ${c.scaling.map(f2).join(', ')})` : ''}${verdict}. There each thread's compute took ${f2(meanPart(c.many, 'computeMs'))} ms at K=${k} against ${f2(meanPart(c.one, 'computeMs'))} at K=1, its stripe ${f2(meanPart(c.many, 'stripeMs'))} against ${f2(meanPart(c.one, 'stripeMs'))} ms, and it waited ${f2(meanPart(c.many, 'waitedMs'))} ms a step at the barriers.`;
}

/** " The step's ceiling (…): K=1 reached …% of its bare pass …" for a goal of at least `minShare`; '' where not measured. */
export function ceilingOverheadText(report: BenchReport, model: string, minShare: number): string {
  // Any complete round will do: K=1 against its bare pass does not depend on the other thread count.
  const c = report.stepCeiling?.measured ? ceilingSummary(report, model, Math.max(...report.stepCeiling.plan.threads)) : undefined;
  if (!c) return '';
  const r = median(c.ofBare);
  const verdict = r < minShare ? ', itself short of the goal' : '';
  return ` The step's ceiling (${CEILING_STEP}): K=1 reached ${pct(r)} of its bare pass${c.ofBare.length > 1 ? ` (median of ${c.ofBare.length} rounds: ${c.ofBare.map(pct).join(', ')})` : ''}${verdict}; its step ${f2(c.one.stepMs)} ms = compute ${f2(meanPart(c.one, 'computeMs'))} (weights in, the pass, the gradient out; bare ${f2(c.bare.stepMs)}) + the reduction and Adam over all ${model}'s parameters ${f2(meanPart(c.one, 'stripeMs'))}, which at K=1 lie on the step's path.`;
}

/** " The step's ceiling (…) spent …% of its K=k step outside its slowest thread's compute …" for a goal of under `maxShare`; '' where not measured. */
export function ceilingOutsideText(report: BenchReport, model: string, k: number, maxShare: number): string {
  const c = ceilingSummary(report, model, k);
  if (!c) return '';
  const r = median(c.outside);
  const verdict = r >= maxShare ? `: over the goal's ${pct(maxShare)} with no network at all` : '';
  return ` The step's ceiling (${CEILING_STEP}) spent ${pct(r)} of its K=${k} ${model} step outside its slowest thread's compute (the barriers' waits and the stripe${c.outside.length > 1 ? `; median of ${c.outside.length} rounds: ${c.outside.map(pct).join(', ')}` : ''})${verdict}.`;
}

/** Round by round, a[i] / b[i], where both have the same rounds (more than one); else undefined. */
export function roundRatios(a: readonly number[] | undefined, b: readonly number[] | undefined): number[] | undefined {
  if (!a || !b || a.length !== b.length || a.length < 2) return undefined;
  return a.map((x, i) => x / b[i]);
}

/** K=a's speed over K=b's: the median of their ratios within rounds where both ran in rounds, else their kept runs' ratio. */
export function inProcessSpeedup(a: InProcessRun, b: InProcessRun): number {
  return median(roundRatios(a.rounds, b.rounds) ?? [a.summary.imagesPerSecond / b.summary.imagesPerSecond]);
}

/** ' (median of N rounds: r1, r2, …)' for paired rounds, '' for none. */
function roundsText(ratios: readonly number[] | undefined, show: (x: number) => string): string {
  return ratios ? ` (median of ${ratios.length} rounds: ${ratios.map(show).join(', ')})` : '';
}

/**
 * How every thread of a coordinator-work run shared the cores per step, where the run measured it:
 * "the 2 compute threads … ms together …, … (90%)"; undefined for runs made before it was measured.
 */
export function coresShare(x: CoordinatorWork): string | undefined {
  const t = x.threadsCpuMsPerStep;
  if (!t || !x.cores) return undefined;
  const offered = x.cores * x.stepMs;
  const used = t.owner + t.compute + t.background;
  return `the ${x.workers} compute threads ${t.compute.toFixed(3)} ms together (their spins included), the coordinating thread ${t.owner.toFixed(3)} ms, Node's other threads (its platform pool's JIT compiles and GC help, libuv's pool) ${t.background.toFixed(3)} ms: ${f2(used)} ms of the ${f2(offered)} ms that ${x.cores} cores offer in a ${f2(x.stepMs)} ms step (${Math.round((100 * used) / offered)}%)`;
}

/** The coordinator-work run's split of the cores' time, for a missed in-process goal of the same model and K. */
function coresShareText(report: BenchReport, model: string, workers: number): string {
  const run = report.coordinatorWork?.measured ? report.coordinatorWork.runs.find((r) => r.model === model && r.workers === workers) : undefined;
  const share = run && coresShare(run);
  return share ? ` Where the cores' time went, per step of the coordinator-work run (section 0b): ${share}.` : '';
}

function inProcessScalingGoal(report: BenchReport): GoalResult {
  const g = PEER_GOALS.inProcessScaling;
  const goal = `in-process, --batch-per-worker ${g.batchPerWorker}: K=${g.workers} at ≥ ${g.speedup}× K=1 for ${g.models.join(' and ')}`;
  const pairs = g.models.map((m) => ({ m, one: inProcessRun(report, m, 1), two: inProcessRun(report, m, g.workers) })).filter((x) => x.one && x.two);
  if (pairs.length === 0) return { id: 'inprocess-scaling', goal, explanation: 'Not measured in this run.' };
  const s = (x: (typeof pairs)[number]) => inProcessSpeedup(x.two!, x.one!);
  const measured = pairs.map((x) => `${x.m} ${f2(s(x))}×${roundsText(roundRatios(x.two!.rounds, x.one!.rounds), (r) => `${f2(r)}×`)}`).join(', ');
  const missed = pairs.filter((x) => s(x) < g.speedup);
  if (missed.length === 0 && pairs.length === g.models.length) return { id: 'inprocess-scaling', goal, met: true, measured, explanation: '' };
  const explanation = missed.map((x) => `${x.m}: K=1 ${stepParts(x.one!.summary)}; K=${g.workers} ${stepParts(x.two!.summary)}. Compute alone would give ${f2((g.workers * sliceComputeMs(x.one!.summary)) / sliceComputeMs(x.two!.summary))}×: with ${report.machine.cores} cores, ${g.workers} compute threads and the coordinating thread share them.${coresShareText(report, x.m, g.workers)}${twoCoresText(report, x.m, g.batchPerWorker)}${ceilingScalingText(report, x.m, g.workers, g.speedup)}`).join(' ');
  return { id: 'inprocess-scaling', goal, met: missed.length === 0 ? undefined : false, measured, explanation };
}

function inProcessOverheadGoal(report: BenchReport): GoalResult {
  const g = PEER_GOALS.inProcessOverhead;
  const goal = `in-process K=1 within ${g.maxLoss * 100}% of one thread's bare compute (${g.models.join(', ')}, batch ${g.batch})`;
  const rows = g.models
    .map((m) => {
      const run = inProcessRun(report, m, 1);
      return { m, run, bare: run?.bareRounds ? median(run.bareRounds) : bareCompute(report, m, g.batch) };
    })
    .filter((x) => x.run && x.bare);
  if (rows.length === 0) return { id: 'inprocess-overhead', goal, explanation: 'Not measured in this run (needs the compute section and the in-process K=1 runs).' };
  const paired = (x: (typeof rows)[number]) => roundRatios(x.run!.rounds, x.run!.bareRounds);
  const ratio = (x: (typeof rows)[number]) => median(paired(x) ?? [x.run!.summary.imagesPerSecond / x.bare!]);
  const measured = rows
    .map((x) => {
      const p = paired(x);
      if (!p) return `${x.m} ${pct(ratio(x))} (${x.run!.summary.imagesPerSecond.toFixed(0)} of ${x.bare!.toFixed(0)} img/s)`;
      const each = x.run!.rounds!.map((r, i) => `${r.toFixed(0)} of ${x.run!.bareRounds![i].toFixed(0)}`).join(', ');
      return `${x.m} ${pct(ratio(x))}${roundsText(p, pct)}: K=1 against one thread's bare compute measured just before it, img/s ${each}`;
    })
    .join('; ');
  const missed = rows.filter((x) => ratio(x) < 1 - g.maxLoss);
  if (missed.length === 0) return { id: 'inprocess-overhead', goal, met: rows.length === g.models.length ? true : undefined, measured, explanation: '' };
  const explanation = missed
    .map((x) => {
      const bareMs = (1000 * g.batch) / x.bare!;
      const sliceMs = sliceComputeMs(x.run!.summary);
      const whole = x.run!.summary.mean.aheadMs !== undefined ? ` The slice's whole compute, inside the step and ahead of it, is ${f2(sliceMs)} ms (${signedPct(sliceMs / bareMs - 1)} against bare).` : '';
      return `${x.m}: bare compute ${f2(bareMs)} ms per ${g.batch} images; K=1 ${stepParts(x.run!.summary)}.${whole} The thread's compute time includes copying the weights in and the gradient out, except on wasm with the native kernels, where the reduction and Adam read the gradient in the backend and write the next weights into it (docs/shared-step.md); the reduction and Adam (one thread does all of it at K=1) and the two Atomics round trips are the rest.${ceilingOverheadText(report, x.m, 1 - g.maxLoss)}`;
    })
    .join(' ');
  return { id: 'inprocess-overhead', goal, met: false, measured, explanation };
}

function coordinatorWorkGoal(report: BenchReport): GoalResult {
  const g = PEER_GOALS.coordinatorWork;
  const goal = `coordinator work per step for ${g.model} under ${g.maxMs} ms (in-process: the owning thread's CPU time per step)`;
  const run = report.coordinatorWork?.measured ? report.coordinatorWork.runs.find((r) => r.model === g.model) : undefined;
  if (!run) return { id: 'coordinator-work', goal, explanation: 'Not measured in this run.' };
  const adamUs = report.coordinator?.adam.us.median;
  const pathUs = report.coordinator?.messagePathUs?.median;
  const ws =
    pathUs !== undefined
      ? `; over WebSockets, a result's gradient work on the coordinator (decode check, screen, fold, mean and guard, Adam; one worker) is ${(pathUs / 1000).toFixed(3)} ms`
      : adamUs !== undefined
        ? `; over WebSockets the coordinator's Adam alone is ${(adamUs / 1000).toFixed(3)} ms`
        : '';
  const measured = `${run.cpuMsPerStep.toFixed(3)} ms of CPU per step in-process (K=${run.workers}, step ${f2(run.stepMs)} ms; event-loop active ${run.activeMsPerStep.toFixed(3)} ms)${ws}`;
  if (run.cpuMsPerStep < g.maxMs) return { id: 'coordinator-work', goal, met: true, measured, explanation: '' };
  return {
    id: 'coordinator-work', goal, met: false, measured,
    explanation: `The owning thread does no work proportional to the parameters (the threads reduce and apply Adam); what it does per step is gather the slices' images into shared memory (one native copy per image where the addon loads), publish one Atomics command per thread (its slice and its stripe of the reduction, fused), resolve as many waits, and run the step loop's bookkeeping, result checks and log line. Each Atomics.notify that wakes a thread waiting asynchronously posts a task to it (an eventfd write), and each completion wakes the owning thread's event loop (epoll): system calls, costly on this VM.`,
  };
}

function memoryGoal(report: BenchReport): GoalResult {
  const g = PEER_GOALS.memory;
  const goal = `no memory growth over many steps (resident set at 90–100% of the steps within ${mib(g.maxGrowthBytes)} or ${g.maxGrowthShare * 100}% of its value at 10–20%); peak RSS reported per model`;
  if (!report.memory?.measured) return { id: 'memory', goal, explanation: 'Not measured in this run.' };
  const r = report.memory.run;
  const growth = r.lateRssBytes - r.earlyRssBytes;
  const peaks = report.endToEnd?.measured ? `; peak RSS ${report.endToEnd.runs.map((x) => `${x.model} ${mib(x.peakRssBytes)}`).join(', ')}` : '';
  const measured = `${r.model} over ${r.steps.toLocaleString('en-US')} steps: ${mib(r.earlyRssBytes)} → ${mib(r.lateRssBytes)} (${growth >= 0 ? '+' : '−'}${mib(Math.abs(growth))})${peaks}`;
  const ok = growth <= Math.max(g.maxGrowthBytes, g.maxGrowthShare * r.earlyRssBytes);
  return { id: 'memory', goal, met: ok, measured, explanation: ok ? '' : `Resident memory grew by ${mib(growth)} over the run; see the samples in the JSON report for where.` };
}

/** The seed workload (4 models × 20 epochs × 40,000 images) in minutes of training, dtrain and PyTorch. */
export function seedWorkload(report: BenchReport): { model: string; dtrainMinutes: number; dtrainWithValidationMinutes: number; torchMinutes?: number }[] {
  if (!report.endToEnd?.measured) return [];
  const { epochs, images } = PEER_GOALS.seed;
  return report.endToEnd.runs.map((r) => {
    // PyTorch as the runs saw it (the median of the paired measurements) where there is one.
    const torch = r.pairedTorchRepeats ? median(r.pairedTorchRepeats) : bestTorch(report, r.model)?.imagesPerSecond;
    const validationPerImage = r.validationSeconds / r.trainImages;
    return {
      model: r.model,
      dtrainMinutes: (epochs * images) / r.imagesPerSecond / 60,
      dtrainWithValidationMinutes: (epochs * images * (1 / r.imagesPerSecond + validationPerImage)) / 60,
      torchMinutes: torch ? (epochs * images) / torch / 60 : undefined,
    };
  });
}

export function evaluateGoals(report: BenchReport): GoalResult[] {
  return [scalingGoal(report), overheadGoal(report), adamGoal(report), peerGoal(report), inProcessScalingGoal(report), inProcessOverheadGoal(report), coordinatorWorkGoal(report), memoryGoal(report)];
}
