/**
 * A Keras-like progress bar for interactive terminals: one bar per epoch with step, loss, accuracy
 * and ETA. Off when stdout is not a TTY, where the JSON logs are the interface.
 */
import cliProgress from 'cli-progress';
import type { StepEvent } from '../trainer.ts';

export class EpochProgress {
  private bar: cliProgress.SingleBar | undefined;
  private epoch = -1;

  constructor(private readonly epochs: number) {}

  update(e: StepEvent): void {
    if (e.epoch !== this.epoch) {
      this.bar?.stop();
      this.epoch = e.epoch;
      this.bar = new cliProgress.SingleBar(
        {
          format: `Epoch ${e.epoch}/${this.epochs} [{bar}] {value}/{total} - ETA {eta_formatted} - loss {loss} - accuracy {accuracy}`,
          barCompleteChar: '=',
          barIncompleteChar: '.',
          hideCursor: true,
          etaBuffer: 50,
          clearOnComplete: false,
        },
        cliProgress.Presets.legacy,
      );
      this.bar.start(e.stepsInEpoch, 0, { loss: '-', accuracy: '-' });
    }
    this.bar!.setTotal(e.stepsInEpoch);
    this.bar!.update(e.stepInEpoch, { loss: e.loss.toFixed(4), accuracy: e.accuracy.toFixed(4) });
    if (e.stepInEpoch >= e.stepsInEpoch) {
      this.bar!.stop();
      this.bar = undefined;
    }
  }

  stop(): void {
    this.bar?.stop();
  }
}
