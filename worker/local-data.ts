/**
 * A WebSocket worker's own copy of the dataset (`dtrain worker --data-dir DIR`, or `--dataset
 * synthetic`). The worker says its fingerprint in the hello; when it matches the coordinator's, the
 * welcome names the split parameters and tasks carry sample indices instead of pixels (4 bytes a
 * sample instead of 3,072). The files are read and hashed once per process, not per connection.
 *
 * The labels still travel with each task: the worker checks its own labels against them, so a
 * split that somehow differs fails the task loudly instead of training on the wrong images.
 */
import { DtrainError } from '../common/errors.ts';
import type { Logger } from '../common/logger.ts';
import type { DatasetName } from '../common/config.ts';
import type { LocalDataSpec, TaskMessage } from '../common/protocol.ts';
import { openDataSource, type DataSource, type SplitSampler } from '../common/data/load.ts';

export class DatasetMismatchError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_DATASET_MISMATCH', message);
  }
}

export class LocalData {
  private current: { key: string; sampler: SplitSampler } | undefined;

  constructor(private readonly source: DataSource) {}

  static async open(o: { dataset: DatasetName; dataDir?: string; log: Logger }): Promise<LocalData> {
    const started = Date.now();
    const source = await openDataSource({ dataset: o.dataset, dataDir: o.dataDir, logger: o.log });
    o.log.info({ event: 'local_data', fingerprint: source.fingerprint, ms: Date.now() - started }, `local dataset ${source.fingerprint.slice(0, 24)}…: tasks will carry indices`);
    return new LocalData(source);
  }

  get fingerprint(): string {
    return this.source.fingerprint;
  }

  /** Prepares the splits a welcome names (a seeded permutation; no pixels are copied yet). */
  use(spec: LocalDataSpec): void {
    if (spec.fingerprint !== this.fingerprint) throw new DatasetMismatchError(`Expected the dataset ${this.fingerprint}, but the coordinator offers ${spec.fingerprint}.`);
    const key = `${spec.seed}:${spec.limitTrain ?? ''}:${spec.limitTest ?? ''}`;
    if (this.current?.key !== key) this.current = { key, sampler: this.source.sampler(spec.seed, { limitTrain: spec.limitTrain, limitTest: spec.limitTest }) };
  }

  /** The task with its pixels filled in from our copy; a pixel task is returned as it is. */
  resolve(task: TaskMessage): TaskMessage {
    if (!task.indices || !task.split) return task;
    if (!this.current) throw new DatasetMismatchError(`Task ${task.taskId} carries indices, but the welcome offered no local data.`);
    const indices = new Uint32Array(task.indices.byteLength / 4);
    new Uint8Array(indices.buffer).set(task.indices); // a copy: msgpack does not align binary fields
    const set = this.current.sampler.gather(task.split, indices);
    for (let i = 0; i < set.count; i++) {
      if (set.labels[i] !== task.labels[i]) {
        throw new DatasetMismatchError(`Sample ${indices[i]} of ${task.split} has label ${set.labels[i]} here, but ${task.labels[i]} on the coordinator: the splits differ.`);
      }
    }
    const { indices: _i, split: _s, ...rest } = task;
    return { ...rest, images: set.images };
  }
}
