/** Fake trainer events for the HTTP layer's tests. */
import type { StepEvent } from '../trainer.ts';
import type { EpochRecord } from '../run-files.ts';

export function stepEvent(overrides: Partial<StepEvent> = {}): StepEvent {
  return {
    epoch: 1, step: 1, stepInEpoch: 1, stepsInEpoch: 10, loss: 2.3, accuracy: 0.1, batchLoss: 2.2, batchAccuracy: 0.125, samples: 32, workers: 2,
    ms: 40, computeMs: 30, commMs: 8, optimizerMs: 2, bytesIn: 1000, bytesOut: 3000, retries: 0,
    perWorker: [{ workerId: 'w1', computeMs: 30, bytesOut: 1500, bytesIn: 500 }, { workerId: 'w2', computeMs: 25, bytesOut: 1500, bytesIn: 500 }],
    ...overrides,
  };
}

export function epochRecord(overrides: Partial<EpochRecord> = {}): EpochRecord {
  return { epoch: 1, loss: 1.9, accuracy: 0.3, val_loss: 2.0, val_accuracy: 0.28, seconds: 4, images_per_second: 80, ...overrides };
}
