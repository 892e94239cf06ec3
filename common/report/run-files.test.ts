import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DtrainError } from '../errors.ts';
import { parseHistory, parseMetrics, readRunFiles } from './run-files.ts';
import { fakeHistory, fakeMetrics, writeFakeRun } from './test-fixtures.ts';

const shape = { model: 'lenet', epochs: 3, trainAccuracy: 0.6, bestValAccuracy: 0.5, bestEpoch: 3, testAccuracy: 0.48 };

describe('parseHistory', () => {
  it('accepts the trainer format', () => {
    const history = fakeHistory(shape);
    expect(parseHistory(JSON.parse(JSON.stringify(history)))).toEqual(history);
  });

  it('reads null (how JSON writes NaN) as NaN', () => {
    const history = fakeHistory(shape);
    const raw = JSON.parse(JSON.stringify({ ...history, epochs: [{ ...history.epochs[0], loss: null }] }));
    expect(parseHistory(raw).epochs[0].loss).toBeNaN();
  });

  const good = fakeHistory(shape);
  const cases: [string, unknown, RegExp][] = [
    ['undefined', undefined, /expected the top level to be an object, but found nothing/],
    ['an array', [], /expected the top level to be an object, but found an array of 0/],
    ['a number', 42, /the top level to be an object, but found 42 \(number\)/],
    ['no model', { epochs: good.epochs }, /expected "model" to be a non-empty string, but found nothing/],
    ['no epochs', { model: 'lenet' }, /expected "epochs" to be a non-empty array of per-epoch records, but found nothing/],
    ['empty epochs', { model: 'lenet', epochs: [] }, /"epochs" to be a non-empty array.*found an array of 0/],
    ['a string accuracy', { model: 'lenet', epochs: [{ ...good.epochs[0], accuracy: '0.5' }] }, /expected "epochs\[0\].accuracy" to be a number, but found "0.5" \(string\)/],
    ['a fractional epoch', { model: 'lenet', epochs: [{ ...good.epochs[0], epoch: 1.5 }] }, /"epochs\[0\].epoch" to be an integer ≥ 1, but found 1.5/],
    ['epochs out of order', { model: 'lenet', epochs: [good.epochs[1], good.epochs[0]] }, /"epochs\[1\].epoch" to be greater than the previous epoch \(2\), but found 1/],
    ['a record that is not an object', { model: 'lenet', epochs: [null] }, /"epochs\[0\]" to be an object, but found null/],
  ];
  it.each(cases)('rejects %s, naming the file, what was expected and what was found', (_, value, message) => {
    expect(() => parseHistory(value, '/runs/a/history.json')).toThrow(DtrainError);
    expect(() => parseHistory(value, '/runs/a/history.json')).toThrow(/^\/runs\/a\/history.json: /);
    expect(() => parseHistory(value, '/runs/a/history.json')).toThrow(message);
  });
});

describe('parseMetrics', () => {
  it('accepts the trainer format, extra fields included', () => {
    const metrics = fakeMetrics(shape);
    expect(parseMetrics({ ...metrics, steps: 120 })).toEqual({ ...metrics, steps: 120 });
  });

  const good = fakeMetrics(shape);
  const cases: [string, unknown, RegExp][] = [
    ['no parameters', { ...good, parameters: undefined }, /expected "parameters" to be an object, but found nothing/],
    ['a negative parameter count', { ...good, parameters: { ...good.parameters, total: -1 } }, /"parameters.total" to be an integer ≥ 0, but found -1/],
    ['workers as text', { ...good, workers: 'two' }, /"workers" to be an integer ≥ 0, but found "two" \(string\)/],
    ['no backend', { ...good, backend: '' }, /"backend" to be a non-empty string, but found "" \(string\)/],
    ['no test accuracy', { ...good, test_accuracy: undefined }, /"test_accuracy" to be a number, but found nothing/],
  ];
  it.each(cases)('rejects %s', (_, value, message) => {
    expect(() => parseMetrics(value, 'metrics.json')).toThrow(message);
  });
});

describe('readRunFiles', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dtrain-run-files-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('reads a complete run folder', async () => {
    const dir = await writeFakeRun(root, 'complete', shape);
    const run = await readRunFiles(dir);
    expect(run.metrics.model).toBe('lenet');
    expect(run.history.epochs).toHaveLength(3);
  });

  it('says which file is missing', async () => {
    const dir = join(root, 'no-metrics');
    await mkdir(dir);
    await writeFile(join(dir, 'history.json'), JSON.stringify(fakeHistory(shape)));
    await expect(readRunFiles(dir)).rejects.toThrow(`${join(dir, 'metrics.json')}: expected the run's metrics.json (written when training finishes), but found no such file.`);
  });

  it('says when a file is not JSON', async () => {
    const dir = await writeFakeRun(root, 'broken', shape);
    await writeFile(join(dir, 'history.json'), '{"model": "lenet", "epochs": [');
    await expect(readRunFiles(dir)).rejects.toThrow(/history.json: expected JSON, but found text that does not parse/);
  });

  it('says when the folder does not exist', async () => {
    await expect(readRunFiles(join(root, 'nowhere'))).rejects.toThrow(/Expected a run folder at .*nowhere, but found nothing there/);
  });

  it('rejects a history of another model than the metrics', async () => {
    const dir = await writeFakeRun(root, 'mixed', shape);
    await writeFile(join(dir, 'history.json'), JSON.stringify(fakeHistory({ ...shape, model: 'mlp' })));
    await expect(readRunFiles(dir)).rejects.toThrow(/expected model "lenet" as in metrics.json, but found "mlp"/);
  });
});
