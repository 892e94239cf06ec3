/**
 * What the dashboard and `/api/status` show about one run: progress, throughput and ETA, the
 * workers (live and gone), recent step times, per-step and per-epoch history, and the latest events.
 * Updated by the RunMonitor; every change is also emitted as a small message (`step`, `epoch`,
 * `workers`, `event`, `finished`) that the SSE route forwards to browsers.
 *
 * Memory stays bounded on long runs: the per-step history keeps at most MAX_STEP_POINTS points by
 * halving its resolution when full (every 2nd, then every 4th step...), recent lists are capped.
 */
import { EventEmitter } from 'node:events';
import type { EpochRecord } from '../run-files.ts';
import type { MembershipEvent } from '../membership.ts';
import type { StepEvent } from '../trainer.ts';

const MAX_STEP_POINTS = 2000;
const RECENT_STEPS = 50;
const RECENT_EVENTS = 50;
const REJECTED_EVENT_INTERVAL_MS = 1000;

export interface StepPoint {
  step: number;
  epoch: number;
  /** The step's own batch. */
  loss: number;
  accuracy: number;
  /** Running means over the epoch so far. */
  epochLoss: number;
  epochAccuracy: number;
  ms: number;
  computeMs: number;
  commMs: number;
  optimizerMs: number;
  samples: number;
  workers: number;
  /** Wall-clock time the coordinator finished the step (ms since 1970), to measure display latency. */
  t: number;
}

export interface WorkerRow {
  id: string;
  name: string;
  backend: string;
  state: 'joined' | 'left' | 'evicted';
  joinedAt: string;
  leftAt?: string;
  reason?: string;
  slices: number;
  lastComputeMs?: number;
  bytesOut: number;
  bytesIn: number;
}

export interface RunEvent {
  t: string;
  kind: string;
  text: string;
}

export interface RunInfo {
  model: string;
  dataset: string;
  epochs: number;
  batchSize: number;
  parameters?: number;
  transport: 'threads' | 'websocket';
}

export interface StatusSnapshot {
  run: RunInfo & { state: 'waiting' | 'training' | 'finished' | 'stopped'; startedAt: string; finishedAt?: string; test?: { loss: number; accuracy: number } };
  progress: { epoch: number; step: number; stepInEpoch: number; stepsInEpoch: number; totalSteps: number; imagesPerSecond: number; stepsPerSecond: number; etaSeconds: number | null };
  workers: WorkerRow[];
  recentSteps: StepPoint[];
  history: { steps: StepPoint[]; stepStride: number; epochs: EpochRecord[] };
  events: RunEvent[];
  predictions?: string;
}

export type StateMessage =
  | { type: 'step'; data: { point: StepPoint; progress: StatusSnapshot['progress']; workers: WorkerRow[] } }
  | { type: 'epoch'; data: EpochRecord }
  | { type: 'workers'; data: WorkerRow[] }
  | { type: 'event'; data: RunEvent }
  | { type: 'finished'; data: { run: StatusSnapshot['run']; predictions?: string } };

export class RunState {
  private readonly emitter = new EventEmitter();
  private readonly run: StatusSnapshot['run'];
  private progress: StatusSnapshot['progress'] = { epoch: 0, step: 0, stepInEpoch: 0, stepsInEpoch: 0, totalSteps: 0, imagesPerSecond: 0, stepsPerSecond: 0, etaSeconds: null };
  private readonly workers = new Map<string, WorkerRow>();
  private readonly recent: StepPoint[] = [];
  private steps: StepPoint[] = [];
  private stride = 1;
  private readonly epochs: EpochRecord[] = [];
  private readonly events: RunEvent[] = [];
  private predictions?: string;
  private readonly lastRejected = new Map<string, { at: number; held: number }>();

  constructor(info: RunInfo, private readonly now: () => number = Date.now) {
    this.run = { ...info, state: 'waiting', startedAt: new Date(now()).toISOString() };
    this.emitter.setMaxListeners(0);
  }

  set parameters(n: number) {
    this.run.parameters = n;
  }

  /** Past epochs of a resumed run, so its curves start where the run did. */
  restoreHistory(epochs: readonly EpochRecord[]): void {
    this.epochs.splice(0, this.epochs.length, ...epochs);
  }

  /** The run continues a checkpoint: said in the events, since its step curves begin there. */
  onResumed(step: number, epoch: number): void {
    this.addEvent('resumed', `resumed from the checkpoint at step ${step} (epoch ${epoch})`);
  }

  onStep(e: StepEvent): void {
    this.run.state = 'training';
    const point: StepPoint = {
      step: e.step, epoch: e.epoch, loss: e.batchLoss, accuracy: e.batchAccuracy, epochLoss: e.loss, epochAccuracy: e.accuracy,
      ms: e.ms, computeMs: e.computeMs, commMs: e.commMs, optimizerMs: e.optimizerMs, samples: e.samples, workers: e.workers, t: this.now(),
    };
    this.recent.push(point);
    if (this.recent.length > RECENT_STEPS) this.recent.shift();
    this.recordPoint(point);
    for (const w of e.perWorker) {
      const row = this.workers.get(w.workerId);
      if (!row) continue;
      row.slices++;
      row.lastComputeMs = w.computeMs;
      row.bytesOut += w.bytesOut;
      row.bytesIn += w.bytesIn;
    }
    this.progress = this.progressAfter(e);
    this.emit({ type: 'step', data: { point, progress: this.progress, workers: this.workerRows() } });
  }

  onEpochEnd(r: EpochRecord): void {
    this.epochs.push(r);
    this.emit({ type: 'epoch', data: r });
    this.addEvent('epoch', `epoch ${r.epoch}: loss ${r.loss.toFixed(4)}, accuracy ${pct(r.accuracy)}, val_loss ${r.val_loss.toFixed(4)}, val_accuracy ${pct(r.val_accuracy)}`);
  }

  onMembership(e: MembershipEvent): void {
    const at = new Date(this.now()).toISOString();
    if (e.kind === 'joined') {
      this.workers.set(e.workerId, { id: e.workerId, name: e.name, backend: e.backend, state: 'joined', joinedAt: at, slices: 0, bytesOut: 0, bytesIn: 0 });
      this.addEvent('worker_joined', `${e.workerId} (${e.name}, ${e.backend}) joined`);
    } else {
      const row = this.workers.get(e.workerId);
      if (row) Object.assign(row, { state: e.kind, leftAt: at, reason: e.reason });
      this.addEvent(e.kind === 'evicted' ? 'worker_evicted' : 'worker_left', `${e.workerId} ${e.kind}: ${e.reason}`);
    }
    this.emit({ type: 'workers', data: this.workerRows() });
  }

  /** Shown at most once a second per kind and code (a flood of bad peers is counted in /metrics, not listed). */
  onRejected(event: string, code: string): void {
    const key = `${event}:${code}`;
    const now = this.now();
    const last = this.lastRejected.get(key);
    if (last && now - last.at < REJECTED_EVENT_INTERVAL_MS) {
      last.held++;
      return;
    }
    this.addEvent(event, `refused a peer: ${code}${last?.held ? ` (and ${last.held} more since the last one shown)` : ''}`);
    this.lastRejected.set(key, { at: now, held: 0 });
  }

  /** The run ended: `predictions` is predictions.png as a data: URL, kept so a page can show it after the server is gone. */
  onFinished(outcome: { status: 'finished'; test: { loss: number; accuracy: number } } | { status: 'stopped' }, predictions?: string): void {
    this.run.state = outcome.status;
    this.run.finishedAt = new Date(this.now()).toISOString();
    if (outcome.status === 'finished') this.run.test = outcome.test;
    this.releaseWorkers(this.run.finishedAt, outcome.status === 'finished' ? 'the run finished' : 'the run stopped');
    this.predictions = predictions;
    this.progress.etaSeconds = outcome.status === 'finished' ? 0 : null;
    this.addEvent(outcome.status === 'finished' ? 'run_finished' : 'run_stopped', outcome.status === 'finished' ? `finished: test accuracy ${pct(outcome.test.accuracy)}` : 'stopped; resume with --resume');
    this.emit({ type: 'workers', data: this.workerRows() });
    this.emit({ type: 'finished', data: { run: { ...this.run }, predictions } });
  }

  /** The run ended: no worker still trains for it, so none is shown as joined. */
  private releaseWorkers(at: string, reason: string): void {
    for (const row of this.workers.values()) if (row.state === 'joined') Object.assign(row, { state: 'left', leftAt: at, reason });
  }

  snapshot(): StatusSnapshot {
    return {
      run: { ...this.run },
      progress: { ...this.progress },
      workers: this.workerRows(),
      recentSteps: [...this.recent],
      history: { steps: [...this.steps], stepStride: this.stride, epochs: [...this.epochs] },
      events: [...this.events],
      predictions: this.predictions,
    };
  }

  /** Calls `listener` with every change; returns the unsubscribe function. */
  subscribe(listener: (m: StateMessage) => void): () => void {
    this.emitter.on('message', listener);
    return () => this.emitter.off('message', listener);
  }

  private emit(m: StateMessage): void {
    this.emitter.emit('message', m);
  }

  private addEvent(kind: string, text: string): void {
    const e = { t: new Date(this.now()).toISOString(), kind, text };
    this.events.push(e);
    if (this.events.length > RECENT_EVENTS) this.events.shift();
    this.emit({ type: 'event', data: e });
  }

  private recordPoint(p: StepPoint): void {
    if (p.step % this.stride !== 0) return;
    this.steps.push(p);
    if (this.steps.length > MAX_STEP_POINTS) {
      this.stride *= 2;
      this.steps = this.steps.filter((s) => s.step % this.stride === 0);
    }
  }

  private progressAfter(e: StepEvent): StatusSnapshot['progress'] {
    const ms = this.recent.reduce((s, p) => s + p.ms, 0);
    const samples = this.recent.reduce((s, p) => s + p.samples, 0);
    const totalSteps = Math.max(e.step, (this.run.epochs - e.epoch) * e.stepsInEpoch + e.step + (e.stepsInEpoch - e.stepInEpoch));
    const perStep = ms / this.recent.length;
    return {
      epoch: e.epoch, step: e.step, stepInEpoch: e.stepInEpoch, stepsInEpoch: e.stepsInEpoch, totalSteps,
      imagesPerSecond: ms > 0 ? round((samples * 1000) / ms) : 0,
      stepsPerSecond: ms > 0 ? round((this.recent.length * 1000) / ms) : 0,
      etaSeconds: ms > 0 ? round(((totalSteps - e.step) * perStep) / 1000) : null,
    };
  }

  private workerRows(): WorkerRow[] {
    return [...this.workers.values()].map((w) => ({ ...w }));
  }
}

function pct(x: number): string {
  return `${(x * 100).toFixed(2)}%`;
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
