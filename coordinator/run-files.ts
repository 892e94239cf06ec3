/**
 * The run folder's JSON files, written atomically (temporary file, then rename) so a reader or a
 * crash never sees half a file.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ParameterCounts } from '../common/models.ts';

export interface EpochRecord {
  epoch: number;
  loss: number;
  accuracy: number;
  val_loss: number;
  val_accuracy: number;
  seconds: number;
  images_per_second: number;
}

export interface History {
  model: string;
  epochs: EpochRecord[];
}

export interface Metrics {
  model: string;
  parameters: ParameterCounts;
  test_loss: number;
  test_accuracy: number;
  epochs: number;
  steps: number;
  backend: string;
  workers: number;
  wall_seconds: number;
  images_per_second: number;
  dataset: string;
  config: Record<string, unknown>;
  finished_at: string;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${randomBytes(4).toString('hex')}`;
  await writeFile(tmp, data);
  await rename(tmp, path);
}

export function writeJson(runDir: string, name: string, value: unknown): Promise<void> {
  return writeFileAtomic(join(runDir, name), JSON.stringify(value, null, 2) + '\n');
}
