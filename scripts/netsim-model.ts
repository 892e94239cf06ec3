/**
 * The network model fitted to scripts/netsim.sh's measurements:
 *
 *   step ms = compute + optimizer + α0 + α1·K + β·(bytes × 8 / rate) + γ·bytes + δ·converted
 *
 * where `bytes` is what crosses the coordinator's link per step (weights out to K workers, their
 * gradients back, plus pixels), `rate` its bandwidth, and `converted` the float32 values converted
 * to or from a narrower wire dtype per step. α0 + α1·K are the latency and per-message terms (round
 * trips, wake-ups, frames), β how close to the wire speed the transfer runs, γ the per-byte copies,
 * δ the conversion cost. The coefficients are fitted by least squares, each constrained to be >= 0
 * (a term that fits negative is dropped), on the measured communication time (step minus compute
 * minus optimizer).
 *
 * From the fit: the predicted efficiency of K workers (batch per worker fixed) against one
 * worker's bare compute, the largest K that keeps >= 90%, and the ceiling set by the coordinator's
 * link, which carries every worker's weights and gradients.
 */
import type { WireDtype } from '../common/wire-dtype.ts';
import type { StepSample } from './bench-report.ts';

/** workers, samples, ms, computeMs, commMs, optimizerMs, bytesOut, bytesIn: medians over the measured steps of the coordinator's step log. */
export interface NetsimRun extends Omit<StepSample, 'step'> {
  model: string;
  dtype: WireDtype;
  rateGbit: number;
  stepsMeasured: number;
  /** Bytes through the coordinator's interface (both ways, TCP/IP and WebSocket framing included) per step. */
  ifaceBytesPerStep: number;
  loadStart: number[];
  loadEnd: number[];
  wallSeconds: number;
}

export interface NetsimReport {
  date: string;
  finished: string;
  command: string;
  quick: boolean;
  machine: { cores: number; cpu: string; node: string };
  /** delayEmulated false: the links had no delay (no netem); the model adds 2 × delayMs per step. */
  setup: { delayMs: number; delayEmulated: boolean; batchPerWorker: number; steps: number; warmupSteps: number; dataset: string; backend: string };
  runs: NetsimRun[];
}

export const TERMS = ['alpha0', 'alpha1', 'beta', 'gamma', 'delta'] as const;
export type Term = (typeof TERMS)[number];
export type Coefficients = Record<Term, number>;

/** Parameters of each model (trainable), for the conversion term. */
export const TRAINABLE: Record<string, number> = { mlp: 402250, lenet: 62006, 'cnn-dropout': 122570, 'cnn-bn': 123018 };

/** The regressors of one run, in TERMS order; the target is its communication time. */
export function features(r: Pick<NetsimRun, 'model' | 'dtype' | 'rateGbit' | 'workers' | 'bytesOut' | 'bytesIn'>): number[] {
  const bytes = r.bytesOut + r.bytesIn;
  const wireMs = (bytes * 8) / (r.rateGbit * 1e9) * 1000;
  // Per step: weights encoded once, decoded by K workers; K gradients encoded and decoded.
  const converted = r.dtype === 'float32' ? 0 : (TRAINABLE[r.model] ?? 0) * (1 + 3 * r.workers);
  return [1, r.workers, wireMs, bytes, converted];
}

/** Ordinary least squares by the normal equations (tiny systems): returns the coefficients. */
export function leastSquares(x: number[][], y: number[]): number[] {
  const n = x[0].length;
  const a = Array.from({ length: n }, (_, i) => Array.from({ length: n + 1 }, (_, j) => (j < n ? x.reduce((s, row) => s + row[i] * row[j], 0) : x.reduce((s, row, k) => s + row[i] * y[k], 0))));
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    if (Math.abs(a[c][c]) < 1e-300) throw new Error(`singular system at column ${c}`);
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = a[r][c] / a[c][c];
      for (let k = c; k <= n; k++) a[r][k] -= f * a[c][k];
    }
  }
  return a.map((row, i) => row[n] / row[i]);
}

/**
 * Non-negative least squares over a handful of terms: every subset of the terms is fitted, and the
 * best fit whose coefficients are all >= 0 wins. Terms left out are 0.
 */
export function fitNonNegative(x: number[][], y: number[]): { coefficients: number[]; rmse: number } {
  const n = x[0].length;
  let best: { coefficients: number[]; sse: number } | undefined;
  for (let mask = 1; mask < 1 << n; mask++) {
    const cols = [...Array(n).keys()].filter((i) => mask & (1 << i));
    if (cols.length > x.length) continue;
    let c: number[];
    try {
      c = leastSquares(x.map((row) => cols.map((i) => row[i])), y);
    } catch {
      continue;
    }
    if (c.some((v) => v < 0 || !Number.isFinite(v))) continue;
    const full = new Array(n).fill(0);
    cols.forEach((col, i) => (full[col] = c[i]));
    const sse = x.reduce((s, row, k) => s + (row.reduce((t, v, i) => t + v * full[i], 0) - y[k]) ** 2, 0);
    if (!best || sse < best.sse - 1e-12) best = { coefficients: full, sse };
  }
  if (!best) return { coefficients: new Array(n).fill(0), rmse: Math.sqrt(y.reduce((s, v) => s + v * v, 0) / y.length) };
  return { coefficients: best.coefficients, rmse: Math.sqrt(best.sse / y.length) };
}

export interface Fit {
  coefficients: Coefficients;
  /** Root mean square error of the communication time, ms. */
  rmseMs: number;
  runs: number;
  /** Leave the coordinator's optimizer time out of the step (a bound where Adam overlaps or is striped). */
  withoutOptimizer?: boolean;
}

/**
 * Fits the terms on the runs' communication time. `beta: 'fixed'` holds β at 1 (the shaper enforces
 * the rate, so the wire time is known) and fits the CPU terms on what is left; `'free'` fits β too,
 * which needs the wire time to stand out of the noise.
 */
export function fitModel(runs: readonly NetsimRun[], beta: 'fixed' | 'free' = 'fixed'): Fit {
  const used = runs.filter((r) => Number.isFinite(r.commMs) && r.stepsMeasured > 0);
  const x = used.map(features);
  if (beta === 'free') {
    const { coefficients, rmse } = fitNonNegative(x, used.map((r) => r.commMs));
    return { coefficients: Object.fromEntries(TERMS.map((t, i) => [t, coefficients[i]])) as Coefficients, rmseMs: rmse, runs: used.length };
  }
  const b = TERMS.indexOf('beta');
  const rest = fitNonNegative(x.map((row) => row.filter((_, i) => i !== b)), used.map((r, k) => r.commMs - x[k][b]));
  const coefficients = [...rest.coefficients.slice(0, b), 1, ...rest.coefficients.slice(b)];
  return { coefficients: Object.fromEntries(TERMS.map((t, i) => [t, coefficients[i]])) as Coefficients, rmseMs: rest.rmse, runs: used.length };
}

export function predictCommMs(fit: Fit, r: Parameters<typeof features>[0]): number {
  const f = features(r);
  return TERMS.reduce((s, t, i) => s + fit.coefficients[t] * f[i], 0);
}

/** What one model needs for a projection: measured on this machine by netsim. */
export interface ModelProfile {
  model: string;
  /** One worker's compute for one step of batchPerWorker samples (the K=1 run). */
  computeMs: number;
  optimizerMs: number;
  /** Bytes per worker per step, both ways, per dtype (from the K-worker runs). */
  bytesPerWorker: Partial<Record<WireDtype, number>>;
}

export function profiles(runs: readonly NetsimRun[]): ModelProfile[] {
  const models = [...new Set(runs.map((r) => r.model))];
  return models.map((model) => {
    const mine = runs.filter((r) => r.model === model);
    const single = mine.find((r) => r.workers === 1) ?? mine[0];
    const bytesPerWorker: Partial<Record<WireDtype, number>> = {};
    for (const r of mine) if (r.workers > 1 || bytesPerWorker[r.dtype] === undefined) bytesPerWorker[r.dtype] = (r.bytesOut + r.bytesIn) / r.workers;
    return { model, computeMs: single.computeMs, optimizerMs: single.optimizerMs, bytesPerWorker };
  });
}

/** Predicted step time of K workers (batch per worker fixed) at `rateGbit` in `dtype`. */
export function predictStepMs(fit: Fit, p: ModelProfile, dtype: WireDtype, rateGbit: number, workers: number): number {
  const perWorker = p.bytesPerWorker[dtype] ?? NaN;
  const comm = predictCommMs(fit, { model: p.model, dtype, rateGbit, workers, bytesOut: perWorker * workers, bytesIn: 0 });
  return p.computeMs + (fit.withoutOptimizer ? 0 : p.optimizerMs) + comm;
}

/** Efficiency against bare compute: a worker's compute over the whole step. */
export function efficiencyAt(fit: Fit, p: ModelProfile, dtype: WireDtype, rateGbit: number, workers: number): number {
  return p.computeMs / predictStepMs(fit, p, dtype, rateGbit, workers);
}

/** The largest K (up to `limit`) whose efficiency is still >= `target`; 0 if not even one worker. */
export function largestK(fit: Fit, p: ModelProfile, dtype: WireDtype, rateGbit: number, target = 0.9, limit = 1 << 20): number {
  if (efficiencyAt(fit, p, dtype, rateGbit, 1) < target) return 0;
  let lo = 1;
  let hi = 2;
  while (hi <= limit && efficiencyAt(fit, p, dtype, rateGbit, hi) >= target) {
    lo = hi;
    hi *= 2;
  }
  if (hi > limit) return limit;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (efficiencyAt(fit, p, dtype, rateGbit, mid) >= target) lo = mid;
    else hi = mid;
  }
  return lo;
}

/**
 * The coordinator's link as the ceiling: it carries K × bytesPerWorker per step, so no number of
 * workers trains faster than rate / bytesPerWorker steps' worth of slices a second; `crossoverK` is
 * where its transfer time alone equals one worker's compute (efficiency is then below 50%).
 */
export function coordinatorCeiling(p: ModelProfile, dtype: WireDtype, rateGbit: number, batchPerWorker: number): { imagesPerSecond: number; crossoverK: number } {
  const perWorkerMs = ((p.bytesPerWorker[dtype] ?? NaN) * 8) / (rateGbit * 1e9) * 1000;
  return { imagesPerSecond: (batchPerWorker / perWorkerMs) * 1000, crossoverK: p.computeMs / perWorkerMs };
}
