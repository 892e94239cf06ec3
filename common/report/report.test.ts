import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DtrainError } from '../errors.ts';
import { buildReport, TABLE_COLUMNS, writeReport } from './report.ts';
import { decodePng, pixelStats, pngSize, writeFakeRun, type FakeRunShape } from './test-fixtures.ts';

const narrow = { epochs: 12, trainAccuracy: 0.76, bestValAccuracy: 0.71, bestEpoch: 11, sag: 0.002, testAccuracy: 0.7, parameters: 122570, workers: 3 };
const wide = { epochs: 12, trainAccuracy: 0.93, bestValAccuracy: 0.74, bestEpoch: 5, sag: 0.004, testAccuracy: 0.72, parameters: 123210, workers: 2 };

/** The body rows of the first HTML table, as cell texts. */
function htmlTableRows(html: string): string[][] {
  const body = /<tbody>([\s\S]*?)<\/tbody>/.exec(html)?.[1] ?? '';
  return [...body.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((row) => [...row[1].matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((cell) => cell[1]));
}

function column(name: (typeof TABLE_COLUMNS)[number]): number {
  return TABLE_COLUMNS.indexOf(name);
}

interface RawRun {
  metrics: {
    model: string;
    parameters: { total: number };
    epochs: number;
    workers: number;
    backend: string;
    test_loss: number;
    test_accuracy: number;
    wall_seconds: number;
    images_per_second: number;
  };
  history: { epochs: { epoch: number; val_accuracy: number }[] };
}

async function readRaw(dir: string): Promise<RawRun> {
  return {
    metrics: JSON.parse(await readFile(join(dir, 'metrics.json'), 'utf8')),
    history: JSON.parse(await readFile(join(dir, 'history.json'), 'utf8')),
  };
}

describe('buildReport', () => {
  let root: string;
  let dropoutDir: string;
  let bnDir: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dtrain-report-'));
    dropoutDir = await writeFakeRun(root, 'dropout-run', { model: 'cnn-dropout', ...narrow });
    bnDir = await writeFakeRun(root, 'bn-run', { model: 'cnn-bn', ...wide });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('tabulates each run as its metrics.json and history.json say', async () => {
    const report = await buildReport([dropoutDir, bnDir]);
    const rows = htmlTableRows(report.html);
    expect(rows).toHaveLength(2);
    for (const [i, dir] of [dropoutDir, bnDir].entries()) {
      const { metrics, history } = await readRaw(dir);
      const row = rows[i];
      const best = history.epochs.reduce((a, b) => (b.val_accuracy > a.val_accuracy ? b : a));
      expect(row[column('Model')]).toBe(metrics.model);
      expect(row[column('Parameters')]).toBe(metrics.parameters.total.toLocaleString('en-US'));
      expect(row[column('Epochs')]).toBe(String(metrics.epochs));
      expect(row[column('Workers')]).toBe(String(metrics.workers));
      expect(row[column('Backend')]).toBe(metrics.backend);
      expect(row[column('Test loss')]).toBe(metrics.test_loss.toFixed(3));
      expect(row[column('Test accuracy')]).toBe(`${(metrics.test_accuracy * 100).toFixed(1)}%`);
      expect(row[column('Best val. accuracy (epoch)')]).toBe(`${(best.val_accuracy * 100).toFixed(1)}% (${best.epoch})`);
      expect(row[column('Images/s')]).toBe(Math.round(metrics.images_per_second).toLocaleString('en-US'));
      // 12 epochs × 12.5 s + 3.1 s = 153.1 s
      expect(row[column('Wall time')]).toBe('2 m 33 s');
    }
    expect(rows[0][column('Workers')]).toBe('3');
    expect(rows[1][column('Workers')]).toBe('2');
  });

  it('has the same table in the Markdown', async () => {
    const report = await buildReport([dropoutDir, bnDir]);
    const htmlRows = htmlTableRows(report.html);
    for (const row of htmlRows) expect(report.markdown).toContain(`| ${row.join(' | ')} |`);
    expect(report.markdown).toContain(`| ${TABLE_COLUMNS.join(' | ')} |`);
  });

  it('answers the dropout question from the numbers, and the answer flips with them', async () => {
    const report = await buildReport([dropoutDir, bnDir]);
    expect(report.regularization.verdict).toBe('dropout');
    expect(report.html).toContain('Verdict: dropout did more against overfitting');

    const swapped = await mkdtemp(join(root, 'swapped-'));
    const dropout = await writeFakeRun(swapped, 'dropout-run', { model: 'cnn-dropout', ...wide });
    const bn = await writeFakeRun(swapped, 'bn-run', { model: 'cnn-bn', ...narrow });
    const flipped = await buildReport([dropout, bn]);
    expect(flipped.regularization.verdict).toBe('batch-normalization');
    expect(flipped.html).toContain('Verdict: batch normalization did more against overfitting');
    expect(flipped.markdown).toContain('Verdict: batch normalization did more against overfitting');
  });

  it('says what is missing when the cnn-bn run is not given', async () => {
    const report = await buildReport([dropoutDir]);
    expect(report.regularization.verdict).toBe('missing-runs');
    expect(report.html).toContain('with no cnn-bn run');
  });

  it('is self-contained: every picture is an inline PNG and nothing is fetched', async () => {
    const { html } = await buildReport([dropoutDir, bnDir]);
    expect(html).not.toMatch(/<link|<script|src="(?!data:)|url\(/);
    const sources = [...html.matchAll(/<img [^>]*src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/g)].map((m) => m[1]);
    expect(sources).toHaveLength(3);
    for (const base64 of sources) {
      const png = Buffer.from(base64, 'base64');
      expect(pngSize(png).width).toBe(1000);
      expect(pixelStats(await decodePng(png)).colours).toBeGreaterThan(20);
    }
  });

  it('names the file and the problem when a run folder is incomplete', async () => {
    const broken = await writeFakeRun(root, 'broken', { model: 'lenet', ...narrow });
    await writeFile(join(broken, 'metrics.json'), JSON.stringify({ model: 'lenet' }));
    const attempt = buildReport([dropoutDir, broken]);
    await expect(attempt).rejects.toThrow(DtrainError);
    await expect(buildReport([dropoutDir, broken])).rejects.toThrow(`${join(broken, 'metrics.json')}: expected "parameters" to be an object, but found nothing.`);
  });

  it('labels runs of the same model by folder', async () => {
    const again = await writeFakeRun(root, 'dropout-again', { model: 'cnn-dropout', ...wide } satisfies FakeRunShape);
    const report = await buildReport([dropoutDir, again]);
    expect(report.runs.map((r) => r.label)).toEqual(['cnn-dropout (dropout-run)', 'cnn-dropout (dropout-again)']);
  });
});

describe('writeReport', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'dtrain-report-write-'));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes the HTML, the Markdown beside it and the PNGs the Markdown links to', async () => {
    const a = await writeFakeRun(root, 'a', { model: 'cnn-dropout', ...narrow });
    const b = await writeFakeRun(root, 'b', { model: 'cnn-bn', ...wide });
    const out = join(root, 'out', 'summary.html');
    const written = await writeReport([a, b], out);
    expect(written.html).toBe(out);
    expect(written.markdown).toBe(join(root, 'out', 'summary.md'));
    const markdown = await readFile(written.markdown, 'utf8');
    const links = [...markdown.matchAll(/!\[[^\]]*\]\(([^)]+)\)/g)].map((m) => m[1]);
    expect(links).toEqual(['summary-accuracy.png', 'summary-loss.png', 'summary-gap.png']);
    for (const link of links) expect(pngSize(await readFile(join(root, 'out', link))).height).toBe(540);
    expect(await readFile(out, 'utf8')).toMatch(/^<!DOCTYPE html>/);
  });
});
