/**
 * Prometheus metrics for one run, in a registry of its own (never prom-client's global one: tests
 * run many coordinators in one process). Every name starts with `dtrain_` and uses base units
 * (seconds, bytes), so `promtool check metrics` passes. Fed by the RunMonitor from the trainer's
 * step events, the membership's events and the transport's rejections; nothing here parses logs.
 * prom-client's default process metrics are left out: its `nodejs_active_handles_total` and two
 * others are gauges named like counters, which `promtool check metrics` rejects.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { EpochRecord } from '../run-files.ts';
import type { MembershipEvent } from '../membership.ts';
import type { StepEvent } from '../trainer.ts';

/** Step phases from ~1 ms (mlp's optimizer) to a minute (a big CNN batch on a slow worker). */
const SECONDS_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export interface RunLabels {
  model: string;
  dataset: string;
  transport: 'threads' | 'websocket';
}

export class RunMetrics {
  readonly registry = new Registry();
  private readonly steps: Counter;
  private readonly samples: Counter;
  private readonly rejectedFrames: Counter<'code'>;
  private readonly rejectedResults: Counter<'code'>;
  private readonly retries: Counter;
  private readonly membership: Counter<'kind'>;
  private readonly bytesSent: Counter;
  private readonly bytesReceived: Counter;
  private readonly workers: Gauge;
  private readonly epoch: Gauge;
  private readonly loss: Gauge;
  private readonly accuracy: Gauge;
  private readonly valLoss: Gauge;
  private readonly valAccuracy: Gauge;
  private readonly phase: Record<'step' | 'compute' | 'communication' | 'optimizer' | 'ahead' | 'transfer' | 'workerOverhead', Histogram>;

  constructor(labels: RunLabels) {
    const registers = [this.registry];
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) => new Counter<L>({ name: `dtrain_${name}`, help, labelNames, registers });
    const gauge = (name: string, help: string) => new Gauge({ name: `dtrain_${name}`, help, registers });
    // A value that does not exist yet (no step, no finished epoch) is absent, not 0: an alert on
    // validation accuracy must not fire before the first epoch ends. Registered on its first value.
    const measured = (name: string, help: string) => new Gauge({ name: `dtrain_${name}`, help, registers: [] });
    const histogram = (name: string, help: string) => new Histogram({ name: `dtrain_${name}`, help, buckets: SECONDS_BUCKETS, registers });
    new Gauge({ name: 'dtrain_run_info', help: 'Always 1; the labels describe the run.', labelNames: ['model', 'dataset', 'transport'], registers }).set({ ...labels }, 1);
    this.steps = counter('steps_total', 'Training steps completed (global batches).');
    this.samples = counter('samples_total', 'Training samples whose gradients were applied.');
    this.rejectedFrames = counter('rejected_frames_total', 'Frames or handshakes refused by the coordinator (bad frame, wrong token or version), by stable error code.', ['code']);
    this.rejectedResults = counter('rejected_results_total', 'Results from joined workers refused (wrong size, NaN, unexpected), by stable error code.', ['code']);
    this.retries = counter('task_retries_total', 'Tasks sent again because a worker failed, left or timed out.');
    this.membership = counter('membership_changes_total', 'Workers joining, leaving or evicted.', ['kind']);
    this.bytesSent = counter('sent_bytes_total', 'Bytes of tasks sent to workers (weights, images, labels).');
    this.bytesReceived = counter('received_bytes_total', 'Bytes of gradients and statistics received from workers.');
    this.workers = gauge('workers', 'Workers taking part in training now.');
    this.epoch = measured('epoch', 'The epoch being trained (1-based).');
    this.loss = measured('loss', 'Cross-entropy loss of the last step\'s global batch.');
    this.accuracy = measured('accuracy', 'Accuracy of the last step\'s global batch (0 to 1).');
    this.valLoss = measured('validation_loss', 'Validation loss after the last finished epoch.');
    this.valAccuracy = measured('validation_accuracy', 'Validation accuracy after the last finished epoch (0 to 1).');
    this.phase = {
      step: histogram('step_duration_seconds', 'Wall time of a training step on the coordinator.'),
      compute: histogram('compute_duration_seconds', 'Compute time of the slowest worker in a step.'),
      communication: histogram('communication_duration_seconds', 'Step time outside compute and the optimizer: encode, wire, decode, waiting.'),
      optimizer: histogram('optimizer_duration_seconds', 'Gradient averaging and the Adam update on the coordinator.'),
      ahead: histogram('ahead_compute_duration_seconds', 'In-process: compute of a step\'s slices that ran before the step began (a pass ahead, during the step before); not in compute_duration_seconds.'),
      transfer: histogram('transfer_duration_seconds', 'WebSocket workers: the round trip of the result a step waited for, less its worker\'s own time (frames encoded, sent, delivered, decoded).'),
      workerOverhead: histogram('worker_overhead_duration_seconds', 'WebSocket workers: the time the worker of the result a step waited for spent outside compute (decoding, hand-off to its compute thread and back).'),
    };
  }

  onStep(e: StepEvent): void {
    this.steps.inc();
    this.samples.inc(e.samples);
    this.retries.inc(e.retries);
    this.bytesSent.inc(e.bytesOut);
    this.bytesReceived.inc(e.bytesIn);
    this.set(this.epoch, e.epoch);
    this.set(this.loss, e.batchLoss);
    this.set(this.accuracy, e.batchAccuracy);
    this.phase.step.observe(e.ms / 1000);
    this.phase.compute.observe(e.computeMs / 1000);
    this.phase.communication.observe(Math.max(0, e.commMs) / 1000);
    this.phase.optimizer.observe(e.optimizerMs / 1000);
    if (e.aheadMs !== undefined) this.phase.ahead.observe(e.aheadMs / 1000);
    if (e.transferMs !== undefined) this.phase.transfer.observe(e.transferMs / 1000);
    if (e.workerOverheadMs !== undefined) this.phase.workerOverhead.observe(e.workerOverheadMs / 1000);
  }

  onEpochEnd(r: EpochRecord): void {
    this.set(this.valLoss, r.val_loss);
    this.set(this.valAccuracy, r.val_accuracy);
  }

  /** Sets a gauge made by `measured`, exposing it from its first value on. */
  private set(g: Gauge, value: number): void {
    if (!this.exposed.has(g)) {
      this.registry.registerMetric(g);
      this.exposed.add(g);
    }
    g.set(value);
  }
  private readonly exposed = new Set<Gauge>();

  onMembership(e: MembershipEvent, liveWorkers: number): void {
    this.membership.inc({ kind: e.kind });
    this.workers.set(liveWorkers);
  }

  onRejected(code: string, joined: boolean): void {
    this.rejectedFrames.inc({ code });
    if (joined) this.rejectedResults.inc({ code });
  }

  /** The text exposition format, and its content type. */
  async render(): Promise<{ contentType: string; text: string }> {
    return { contentType: this.registry.contentType, text: await this.registry.metrics() };
  }
}
