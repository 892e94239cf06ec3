/**
 * The comparison report over several run folders, as one self-contained HTML page (pictures
 * inlined as data URIs) and a Markdown twin that links PNG files written beside it.
 */
import { basename, dirname, extname, join } from 'node:path';
import { writeFileAtomic } from '../atomic-write.ts';
import { duration, fixed, integer, percent, points } from './format.ts';
import { PALETTE, renderLineChart, type LineSeries } from './line-chart.ts';
import { compareRegularization, type RegularizationFinding } from './regularization.ts';
import { readRunFiles } from './run-files.ts';
import { accuracyGap, GAP_EPOCHS, summarizeRuns, type RunSummary } from './run-summary.ts';

export interface ReportImage {
  /** File name the Markdown links to, e.g. "report-accuracy.png". */
  fileName: string;
  title: string;
  caption: string;
  png: Buffer;
}

export interface Report {
  html: string;
  markdown: string;
  images: ReportImage[];
  runs: RunSummary[];
  regularization: RegularizationFinding;
}

export interface ReportOptions {
  /** Start of the image file names: "<prefix>-accuracy.png". Default "report". */
  imagePrefix?: string;
  /** The time printed in the header; default now. */
  generatedAt?: Date;
}

export const TABLE_COLUMNS = [
  'Run',
  'Model',
  'Parameters',
  'Epochs',
  'Workers',
  'Backend',
  'Test loss',
  'Test accuracy',
  'Best val. accuracy (epoch)',
  'Final gap',
  'Wall time',
  'Images/s',
] as const;

/** One table row per run, in TABLE_COLUMNS order. */
export function tableRow(run: RunSummary): string[] {
  return [
    basename(run.dir) || run.dir,
    run.model,
    integer(run.parameters),
    String(run.epochs),
    String(run.workers),
    run.backend,
    fixed(run.testLoss, 3),
    percent(run.testAccuracy),
    Number.isFinite(run.bestValEpoch) ? `${percent(run.bestValAccuracy)} (${run.bestValEpoch})` : 'n/a',
    points(run.finalGap),
    duration(run.wallSeconds),
    integer(run.imagesPerSecond),
  ];
}

/** Reads, validates and compares the runs; throws DtrainError naming the first bad file. */
export async function buildReport(runDirs: readonly string[], options: ReportOptions = {}): Promise<Report> {
  const files = [];
  for (const dir of runDirs) files.push(await readRunFiles(dir));
  const runs = summarizeRuns(files);
  const images = renderReportImages(runs, options.imagePrefix ?? 'report');
  const regularization = compareRegularization(runs);
  const generatedAt = (options.generatedAt ?? new Date()).toISOString();
  return {
    html: renderHtml(runs, images, regularization, generatedAt),
    markdown: renderMarkdown(runs, images, regularization, generatedAt),
    images,
    runs,
    regularization,
  };
}

/** Writes the HTML to `htmlPath`, the Markdown beside it (.md) and the PNGs the Markdown links to. */
export async function writeReport(runDirs: readonly string[], htmlPath: string, options: ReportOptions = {}): Promise<{ html: string; markdown: string; images: string[] }> {
  const stem = basename(htmlPath, extname(htmlPath));
  const report = await buildReport(runDirs, { imagePrefix: stem, ...options });
  const dir = dirname(htmlPath);
  const markdownPath = join(dir, `${stem}.md`);
  const imagePaths = report.images.map((image) => join(dir, image.fileName));
  for (const [i, image] of report.images.entries()) await writeFileAtomic(imagePaths[i], image.png);
  await writeFileAtomic(markdownPath, report.markdown);
  await writeFileAtomic(htmlPath, report.html);
  return { html: htmlPath, markdown: markdownPath, images: imagePaths };
}

function renderReportImages(runs: readonly RunSummary[], prefix: string): ReportImage[] {
  const colour = (i: number) => PALETTE[i % PALETTE.length];
  const overlay = (metric: 'accuracy' | 'loss'): LineSeries[] =>
    runs.flatMap((run, i) => [
      { name: `${run.label} train`, color: colour(i), points: run.history.map((e) => [e.epoch, e[metric]] as [number, number]) },
      { name: `${run.label} validation`, color: colour(i), dashed: true, points: run.history.map((e) => [e.epoch, e[`val_${metric}`]] as [number, number]) },
    ]);
  const size = { width: 1000, height: 540 };
  return [
    {
      fileName: `${prefix}-accuracy.png`,
      title: 'Accuracy',
      caption: 'Training (solid) and validation (dashed) accuracy per epoch, one colour per run.',
      png: renderLineChart({ title: 'All runs — accuracy', xLabel: 'Epoch', yLabel: 'Accuracy', series: overlay('accuracy'), yBounds: [0, 1], minYSpan: 0.1, ...size }),
    },
    {
      fileName: `${prefix}-loss.png`,
      title: 'Loss',
      caption: 'Training (solid) and validation (dashed) loss per epoch, one colour per run.',
      png: renderLineChart({ title: 'All runs — loss', xLabel: 'Epoch', yLabel: 'Loss', series: overlay('loss'), yBounds: [0, Number.POSITIVE_INFINITY], ...size }),
    },
    {
      fileName: `${prefix}-gap.png`,
      title: 'Generalization gap',
      caption: `Training accuracy minus validation accuracy per epoch, in percentage points. Higher means more overfitting; the "Final gap" column is its mean over the last ${GAP_EPOCHS} epochs (all of them, where a run has fewer).`,
      png: renderLineChart({
        title: 'Generalization gap: train − validation accuracy',
        xLabel: 'Epoch',
        yLabel: 'Gap (percentage points)',
        series: runs.map((run, i) => ({ name: run.label, color: colour(i), points: run.history.map((e) => [e.epoch, accuracyGap(e)] as [number, number]) })),
        zeroLine: true,
        minYSpan: 0.05,
        yTickScale: 100,
        ...size,
      }),
    },
  ];
}

const NUMERIC_COLUMNS = new Set([2, 3, 4, 6, 7, 8, 9, 10, 11]);

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const CSS = `
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; background: #fff; max-width: 1060px; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; }
h1 { margin-bottom: 0.2rem; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.meta { color: #666; margin-top: 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.3rem 0.45rem; white-space: nowrap; }
th { white-space: normal; vertical-align: bottom; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.2rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; }
.finding { background: #f6f8fa; border-left: 4px solid #1f77b4; padding: 0.8rem 1rem; }
code { background: #f3f3f3; padding: 0 0.25rem; border-radius: 3px; }
`;

function renderHtml(runs: readonly RunSummary[], images: readonly ReportImage[], finding: RegularizationFinding, generatedAt: string): string {
  const head = TABLE_COLUMNS.map((c) => `<th>${escapeHtml(c)}</th>`).join('');
  const rows = runs
    .map((run) => `<tr>${tableRow(run).map((cell, i) => `<td${NUMERIC_COLUMNS.has(i) ? ' class="num"' : ''}>${escapeHtml(cell)}</td>`).join('')}</tr>`)
    .join('\n');
  const figure = (image: ReportImage) =>
    `<figure><img alt="${escapeHtml(image.title)}" src="data:image/png;base64,${image.png.toString('base64')}"><figcaption>${escapeHtml(image.caption)}</figcaption></figure>`;
  const folders = runs.map((run) => `<li><code>${escapeHtml(run.dir)}</code></li>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dtrain report: ${escapeHtml(runs.map((r) => r.label).join(', '))}</title>
<style>${CSS}</style>
</head>
<body>
<h1>dtrain report</h1>
<p class="meta">${runs.length} run${runs.length === 1 ? '' : 's'}, generated ${escapeHtml(generatedAt)}</p>
<h2>Runs</h2>
<div class="table-wrap"><table>
<thead><tr>${head}</tr></thead>
<tbody>
${rows}
</tbody>
</table></div>
<p class="meta">Best val. accuracy: the highest validation accuracy and the epoch it came in. Final gap: training minus validation accuracy, averaged over the last ${GAP_EPOCHS} epochs (all of them, where a run has fewer).</p>
<h2>Learning curves</h2>
${images.slice(0, 2).map(figure).join('\n')}
<h2>Generalization gap</h2>
${images.slice(2).map(figure).join('\n')}
<h2>Dropout or batch normalization?</h2>
<p class="finding">${escapeHtml(finding.sentences.join(' '))}</p>
<h2>Run folders</h2>
<ul>
${folders}
</ul>
</body>
</html>
`;
}

function escapeMarkdownCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function renderMarkdown(runs: readonly RunSummary[], images: readonly ReportImage[], finding: RegularizationFinding, generatedAt: string): string {
  const row = (cells: readonly string[]) => `| ${cells.map(escapeMarkdownCell).join(' | ')} |`;
  const align = TABLE_COLUMNS.map((_, i) => (NUMERIC_COLUMNS.has(i) ? '---:' : '---'));
  const lines = [
    '# dtrain report',
    '',
    `${runs.length} run${runs.length === 1 ? '' : 's'}, generated ${generatedAt}`,
    '',
    '## Runs',
    '',
    row(TABLE_COLUMNS),
    `| ${align.join(' | ')} |`,
    ...runs.map((run) => row(tableRow(run))),
    '',
    `Best val. accuracy: the highest validation accuracy and the epoch it came in. Final gap: training minus validation accuracy, averaged over the last ${GAP_EPOCHS} epochs (all of them, where a run has fewer).`,
    '',
    '## Learning curves',
    '',
    ...images.slice(0, 2).flatMap((image) => [`![${image.title}](${image.fileName})`, '', `*${image.caption}*`, '']),
    '## Generalization gap',
    '',
    ...images.slice(2).flatMap((image) => [`![${image.title}](${image.fileName})`, '', `*${image.caption}*`, '']),
    '## Dropout or batch normalization?',
    '',
    finding.sentences.join(' '),
    '',
    '## Run folders',
    '',
    ...runs.map((run) => `- \`${run.dir}\``),
    '',
  ];
  return lines.join('\n');
}
