/**
 * The boundary between a run folder on disk and typed values: `history.json` and `metrics.json`
 * are parsed here and nowhere else. Every rejection names the file, what was expected and what
 * was found.
 *
 * JSON cannot hold NaN (a diverged loss is written as `null`), so loss and accuracy values may be
 * `null` and become NaN here; charts leave a gap and tables print "n/a" for them.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DtrainError } from '../errors.ts';

export interface EpochRecord {
  epoch: number;
  loss: number;
  accuracy: number;
  val_loss: number;
  val_accuracy: number;
  seconds?: number;
  images_per_second?: number;
}

export interface TrainingHistory {
  model: string;
  epochs: EpochRecord[];
}

export interface ParameterCountsRecord {
  total: number;
  trainable: number;
  nonTrainable: number;
}

export interface RunMetrics {
  model: string;
  parameters: ParameterCountsRecord;
  test_loss: number;
  test_accuracy: number;
  epochs: number;
  backend: string;
  workers: number;
  wall_seconds: number;
  images_per_second: number;
  dataset?: string;
  config?: Record<string, unknown>;
  finished_at?: string;
  /** Optimizer steps the run took (dtrain writes it; older runs may lack it). */
  steps?: number;
}

export interface RunFiles {
  dir: string;
  history: TrainingHistory;
  metrics: RunMetrics;
}

export const HISTORY_FILE = 'history.json';
export const METRICS_FILE = 'metrics.json';

const ERROR_CODE = 'DTRAIN_ERR_RUN_FILE';

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return 'an object';
  const shown = JSON.stringify(value);
  return `${shown.length > 40 ? `${shown.slice(0, 40)}…` : shown} (${typeof value})`;
}

function fieldPath(path: string, key: string): string {
  return path === '' ? `"${key}"` : `"${path}.${key}"`;
}

/** Walks one parsed file, remembering which file it is so that every failure can say so. */
class FieldReader {
  constructor(private readonly source: string) {}

  fail(path: string, expected: string, found: unknown): never {
    throw new DtrainError(ERROR_CODE, `${this.source}: expected ${path} to be ${expected}, but found ${describe(found)}.`);
  }

  object(value: unknown, path: string): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(path, 'an object', value);
    return value as Record<string, unknown>;
  }

  string(record: Record<string, unknown>, key: string, path: string): string {
    const value = record[key];
    if (typeof value !== 'string' || value.length === 0) this.fail(fieldPath(path, key), 'a non-empty string', value);
    return value;
  }

  /** A finite number; with `nullable`, `null` (how JSON writes NaN) becomes NaN. */
  number(record: Record<string, unknown>, key: string, path: string, options: { nullable?: boolean; integer?: boolean; min?: number } = {}): number {
    const value = record[key];
    if (value === null && options.nullable === true) return Number.NaN;
    const what = options.integer === true ? 'an integer' : 'a number';
    const bound = options.min === undefined ? '' : ` ≥ ${options.min}`;
    if (typeof value !== 'number' || !Number.isFinite(value)) this.fail(fieldPath(path, key), `${what}${bound}`, value);
    if (options.integer === true && !Number.isInteger(value)) this.fail(fieldPath(path, key), `${what}${bound}`, value);
    if (options.min !== undefined && value < options.min) this.fail(fieldPath(path, key), `${what}${bound}`, value);
    return value;
  }

  optionalNumber(record: Record<string, unknown>, key: string, path: string): number | undefined {
    return record[key] === undefined ? undefined : this.number(record, key, path, { nullable: true });
  }
}

export function parseHistory(value: unknown, source = HISTORY_FILE): TrainingHistory {
  const r: FieldReader = new FieldReader(source);
  const root = r.object(value, 'the top level');
  const model = r.string(root, 'model', '');
  const list = root.epochs;
  if (!Array.isArray(list) || list.length === 0) r.fail('"epochs"', 'a non-empty array of per-epoch records', list);
  const epochs = list.map((item, i): EpochRecord => {
    const path = `epochs[${i}]`;
    const e = r.object(item, `"${path}"`);
    const record: EpochRecord = {
      epoch: r.number(e, 'epoch', path, { integer: true, min: 1 }),
      loss: r.number(e, 'loss', path, { nullable: true }),
      accuracy: r.number(e, 'accuracy', path, { nullable: true }),
      val_loss: r.number(e, 'val_loss', path, { nullable: true }),
      val_accuracy: r.number(e, 'val_accuracy', path, { nullable: true }),
    };
    const seconds = r.optionalNumber(e, 'seconds', path);
    const imagesPerSecond = r.optionalNumber(e, 'images_per_second', path);
    if (seconds !== undefined) record.seconds = seconds;
    if (imagesPerSecond !== undefined) record.images_per_second = imagesPerSecond;
    return record;
  });
  for (let i = 1; i < epochs.length; i++) {
    if (epochs[i].epoch <= epochs[i - 1].epoch) {
      r.fail(`"epochs[${i}].epoch"`, `greater than the previous epoch (${epochs[i - 1].epoch})`, epochs[i].epoch);
    }
  }
  return { model, epochs };
}

export function parseMetrics(value: unknown, source = METRICS_FILE): RunMetrics {
  const r: FieldReader = new FieldReader(source);
  const root = r.object(value, 'the top level');
  const parameters = r.object(root.parameters, '"parameters"');
  const metrics: RunMetrics = {
    model: r.string(root, 'model', ''),
    parameters: {
      total: r.number(parameters, 'total', 'parameters', { integer: true, min: 0 }),
      trainable: r.number(parameters, 'trainable', 'parameters', { integer: true, min: 0 }),
      nonTrainable: r.number(parameters, 'nonTrainable', 'parameters', { integer: true, min: 0 }),
    },
    test_loss: r.number(root, 'test_loss', '', { nullable: true }),
    test_accuracy: r.number(root, 'test_accuracy', '', { nullable: true }),
    epochs: r.number(root, 'epochs', '', { integer: true, min: 0 }),
    backend: r.string(root, 'backend', ''),
    workers: r.number(root, 'workers', '', { integer: true, min: 0 }),
    wall_seconds: r.number(root, 'wall_seconds', '', { min: 0 }),
    images_per_second: r.number(root, 'images_per_second', '', { nullable: true }),
  };
  if (root.dataset !== undefined) metrics.dataset = r.string(root, 'dataset', '');
  if (root.steps !== undefined) metrics.steps = r.number(root, 'steps', '', { integer: true, min: 0 });
  if (root.finished_at !== undefined) metrics.finished_at = r.string(root, 'finished_at', '');
  if (root.config !== undefined) metrics.config = r.object(root.config, '"config"');
  return metrics;
}

async function readJson(runDir: string, file: string, writtenWhen: string): Promise<unknown> {
  const path = join(runDir, file);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    const found = code === 'ENOENT' ? 'no such file' : `an unreadable file (${code ?? String(cause)})`;
    throw new DtrainError(ERROR_CODE, `${path}: expected the run's ${file} (${writtenWhen}), but found ${found}.`, { cause });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (cause) {
    throw new DtrainError(ERROR_CODE, `${path}: expected JSON, but found text that does not parse (${(cause as Error).message}).`, { cause });
  }
}

/** Reads and validates one run folder's history.json and metrics.json. */
export async function readRunFiles(runDir: string): Promise<RunFiles> {
  const info = await stat(runDir).catch(() => undefined);
  if (info === undefined || !info.isDirectory()) {
    throw new DtrainError(ERROR_CODE, `Expected a run folder at ${runDir}, but found ${info === undefined ? 'nothing there' : 'a file'}.`);
  }
  const historyPath = join(runDir, HISTORY_FILE);
  const metricsPath = join(runDir, METRICS_FILE);
  const history = parseHistory(await readJson(runDir, HISTORY_FILE, 'written after every epoch'), historyPath);
  const metrics = parseMetrics(await readJson(runDir, METRICS_FILE, 'written when training finishes'), metricsPath);
  if (history.model !== metrics.model) {
    throw new DtrainError(ERROR_CODE, `${historyPath}: expected model "${metrics.model}" as in ${METRICS_FILE}, but found "${history.model}".`);
  }
  return { dir: runDir, history, metrics };
}
