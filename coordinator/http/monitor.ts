/**
 * One run, observed: the trainer's step and epoch hooks, the membership's events and the
 * transport's rejections feed both the dashboard's RunState and the Prometheus RunMetrics. The job
 * (coordinator/job.ts) calls `attach` once the membership and trainer exist and `finished` at the end.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Membership } from '../membership.ts';
import type { RunOutcome, Trainer, TrainerHooks } from '../trainer.ts';
import { HISTORY_FILE, parseHistory } from '../../common/report/run-files.ts';
import { RUN_PICTURE_FILES } from '../../common/report/run-artifacts.ts';
import { RunMetrics } from './metrics.ts';
import { RunState, type RunInfo } from './run-state.ts';

export class RunMonitor {
  readonly state: RunState;
  readonly metrics: RunMetrics;
  private detach: () => void = () => {};
  private readonly out: string;

  constructor(info: RunInfo & { out: string }) {
    const { out: _out, ...shown } = info; // the run folder's path is not for the page
    this.state = new RunState(shown);
    this.metrics = new RunMetrics({ model: info.model, dataset: info.dataset, transport: info.transport });
    this.out = info.out;
  }

  /** The trainer hooks to pass on (compose them with any others the caller has). */
  readonly hooks: Required<Pick<TrainerHooks, 'onStep' | 'onEpochEnd'>> = {
    onStep: (e) => {
      this.state.onStep(e);
      this.metrics.onStep(e);
    },
    onEpochEnd: (r) => {
      this.state.onEpochEnd(r);
      this.metrics.onEpochEnd(r);
    },
  };

  /** Called by the job once the trainer has resumed (if it did), before any worker starts. */
  async attach(membership: Membership, trainer: Pick<Trainer, 'parameters' | 'currentPosition'>, resumed: boolean): Promise<void> {
    this.state.parameters = trainer.parameters.total;
    if (resumed) this.state.onResumed(trainer.currentPosition.globalStep, trainer.currentPosition.epoch + 1);
    // A resumed run's curves start where the run did: history.json is written at every epoch end.
    if (resumed) try {
      const history = parseHistory(JSON.parse(await readFile(join(this.out, HISTORY_FILE), 'utf8')));
      this.state.restoreHistory(history.epochs);
    } catch {
      // no epoch finished before the checkpoint, or an unreadable file: the curves start empty
    }
    this.detach();
    this.detach = membership.onEvent((e) => {
      this.state.onMembership(e);
      this.metrics.onMembership(e, membership.size);
    });
  }

  /** For the transport: a frame or handshake was refused (`joined`: from a worker already training, so a result). */
  onRejected = (event: string, code: string, joined: boolean): void => {
    this.state.onRejected(event, code);
    this.metrics.onRejected(code, joined);
  };

  /** Awaited once the outcome is published (the HTTP frontend then ends its event streams cleanly). */
  afterFinished?: () => Promise<void>;

  /** The run ended: undefined when it failed with an error. */
  async finished(outcome: RunOutcome | undefined): Promise<void> {
    this.detach();
    if (outcome?.status !== 'finished') {
      this.state.onFinished({ status: 'stopped' });
    } else {
      const m = outcome.metrics;
      this.state.onFinished({ status: 'finished', test: { loss: m.test_loss, accuracy: m.test_accuracy } }, await this.predictionsDataUrl());
    }
    await this.afterFinished?.();
  }

  /** predictions.png from the run folder as a data: URL, or undefined when it was not drawn. */
  private async predictionsDataUrl(): Promise<string | undefined> {
    try {
      const png = await readFile(join(this.out, RUN_PICTURE_FILES.predictions));
      return `data:image/png;base64,${png.toString('base64')}`;
    } catch {
      return undefined;
    }
  }
}
