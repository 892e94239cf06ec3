/**
 * A small multi-series line chart drawn with skia: title, labelled axes, "nice" ticks, a light grid
 * and a legend beside the plot. Used for the per-run curves and for the report's overlays and gap
 * plot. Points with a non-finite y break the line instead of dragging it to zero.
 */
import { createCanvas, type SKRSContext2D } from '@napi-rs/canvas';
import { font } from './fonts.ts';

export interface LineSeries {
  name: string;
  /** Any CSS colour. */
  color: string;
  /** [x, y] pairs in drawing order. */
  points: readonly (readonly [number, number])[];
  dashed?: boolean;
}

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly LineSeries[];
  /** Pixels; default 900. */
  width?: number;
  /** Pixels; default 500. */
  height?: number;
  /** Ticks on whole numbers only (epochs). Default true. */
  integerX?: boolean;
  /** The y axis never extends past these, e.g. [0, 1] for accuracy. */
  yBounds?: readonly [number, number];
  /** The y axis spans at least this much (default: 10% of the data's magnitude), so noise is not blown up. */
  minYSpan?: number;
  /** Draw a darker line at y = 0 (for differences such as the generalization gap). */
  zeroLine?: boolean;
  /** Markers on every point: 'auto' draws them for short series (≤ 30 points). Default 'auto'. */
  markers?: 'auto' | 'always' | 'never';
  /** y tick labels show value × this, e.g. 100 to read fractions as percentage points. Default 1. */
  yTickScale?: number;
}

export const DEFAULTS = { width: 900, height: 500, integerX: true, markers: 'auto', markerLimit: 30 } as const;

/** Ten well-separated colours (matplotlib's tab10): series i gets PALETTE[i % 10]. */
export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'] as const;

export interface Ticks {
  min: number;
  max: number;
  step: number;
  values: number[];
}

/** A step of 1, 2 or 5 × 10^k that splits `span` into at most about `target` parts. */
export function niceStep(span: number, target: number): number {
  const raw = span / Math.max(1, target);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / magnitude;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * magnitude;
}

/**
 * Ticks covering [lo, hi] at a nice step, with the range widened to whole steps. Equal ends are
 * spread apart first so that a single value still gets an axis around it.
 */
export function niceTicks(lo: number, hi: number, target = 6, options: { integer?: boolean } = {}): Ticks {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return niceTicks(0, 1, target, options);
  if (hi < lo) [lo, hi] = [hi, lo];
  if (hi === lo) {
    const pad = options.integer === true ? 1 : Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 0.1;
    lo -= pad;
    hi += pad;
  }
  let step = niceStep(hi - lo, target);
  if (options.integer === true) step = Math.max(1, Math.round(step));
  const min = Math.floor(lo / step + 1e-9) * step;
  const max = Math.ceil(hi / step - 1e-9) * step;
  const values: number[] = [];
  for (let v = min; v <= max + step * 1e-6; v += step) values.push(roundToStep(v, step));
  return { min, max, step, values };
}

function roundToStep(value: number, step: number): number {
  const decimals = decimalsFor(step);
  return Number(value.toFixed(decimals));
}

function decimalsFor(step: number): number {
  return Math.max(0, Math.min(10, -Math.floor(Math.log10(step) + 1e-9)));
}

interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

const COLORS = { background: '#ffffff', text: '#222222', axis: '#444444', grid: '#e6e6e6', zero: '#888888', muted: '#777777' };

export function renderLineChart(options: LineChartOptions): Buffer {
  const width = options.width ?? DEFAULTS.width;
  const height = options.height ?? DEFAULTS.height;
  const integerX = options.integerX ?? DEFAULTS.integerX;
  const canvas = createCanvas(width, height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = COLORS.background;
  ctx.fillRect(0, 0, width, height);

  const finite = options.series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const legendWidth = measureLegend(ctx, options.series);
  const plot: Rect = { x: 78, y: 56, w: width - 78 - legendWidth - 24, h: height - 56 - 64 };

  ctx.fillStyle = COLORS.text;
  ctx.font = font(20, 'bold');
  ctx.textAlign = 'center';
  ctx.textBaseline = 'alphabetic';
  ctx.fillText(options.title, plot.x + plot.w / 2, 34, width - 20);

  const xs = finite.map(([x]) => x);
  const ys = finite.map(([, y]) => y);
  if (options.zeroLine === true) ys.push(0);
  const xTicks = xAxisTicks(xs, integerX, plot.w);
  const yTicks = yAxisTicks(ys, options.yBounds, options.minYSpan);
  const toPx = (x: number, y: number): [number, number] => [
    plot.x + ((x - xTicks.min) / (xTicks.max - xTicks.min)) * plot.w,
    plot.y + plot.h - ((y - yTicks.min) / (yTicks.max - yTicks.min)) * plot.h,
  ];

  drawGridAndAxes(ctx, plot, xTicks, yTicks, toPx, options);
  if (finite.length === 0) {
    ctx.fillStyle = COLORS.muted;
    ctx.font = font(16);
    ctx.textAlign = 'center';
    ctx.fillText('no data yet', plot.x + plot.w / 2, plot.y + plot.h / 2);
  }

  ctx.save();
  ctx.beginPath();
  ctx.rect(plot.x - 6, plot.y - 6, plot.w + 12, plot.h + 12);
  ctx.clip();
  for (const series of options.series) drawSeries(ctx, series, toPx, options.markers ?? DEFAULTS.markers);
  ctx.restore();

  drawLegend(ctx, options.series, { x: plot.x + plot.w + 20, y: plot.y, w: legendWidth, h: plot.h });
  return canvas.toBuffer('image/png');
}

function xAxisTicks(xs: number[], integer: boolean, plotWidth: number): Ticks {
  if (xs.length === 0) return niceTicks(1, integer ? 2 : 1, 6, { integer });
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  // A single epoch sits in the middle of a one-epoch-wide axis rather than on an edge.
  if (lo === hi) {
    const ticks = niceTicks(lo, hi, 2, { integer });
    return { ...ticks, min: lo - 0.5, max: hi + 0.5, values: [lo] };
  }
  const target = Math.max(2, Math.min(10, Math.floor(plotWidth / 70)));
  const t = niceTicks(lo, hi, target, { integer });
  // Epoch axes start at the first epoch, not at 0: keep only the ticks inside the data, with a
  // little room so that end markers are not cut by the frame.
  const pad = (hi - lo) * 0.02;
  return { min: lo - pad, max: hi + pad, step: t.step, values: t.values.filter((v) => v >= lo - 1e-9 && v <= hi + 1e-9) };
}

function yAxisTicks(ys: number[], bounds: readonly [number, number] | undefined, minSpan: number | undefined): Ticks {
  const [boundLo, boundHi] = bounds ?? [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY];
  let lo = ys.length === 0 ? (Number.isFinite(boundLo) ? boundLo : 0) : Math.min(...ys);
  let hi = ys.length === 0 ? (Number.isFinite(boundHi) ? boundHi : 1) : Math.max(...ys);
  const span = minSpan ?? Math.max(1e-6, Math.abs(lo + hi) * 0.05);
  if (hi - lo < span) {
    const grow = (span - (hi - lo)) / 2;
    lo -= grow;
    hi += grow;
    // Shift rather than shrink when a bound is hit, e.g. accuracies near 1.
    if (lo < boundLo) [lo, hi] = [boundLo, Math.min(boundHi, boundLo + span)];
    if (hi > boundHi) [lo, hi] = [Math.max(boundLo, boundHi - span), boundHi];
  }
  const t = niceTicks(lo, hi, 6);
  const min = Math.max(boundLo, t.min);
  const max = Math.min(boundHi, t.max);
  const values = t.values.filter((v) => v >= min - 1e-9 && v <= max + 1e-9);
  // A little air above and below so that points on the outermost ticks do not sit on the frame.
  const air = (max - min) * 0.03;
  return { min: min - air, max: max + air, step: t.step, values };
}

function drawGridAndAxes(
  ctx: SKRSContext2D,
  plot: Rect,
  xTicks: Ticks,
  yTicks: Ticks,
  toPx: (x: number, y: number) => [number, number],
  options: LineChartOptions,
): void {
  const scale = options.yTickScale ?? 1;
  const formatY = (v: number) => (v * scale).toFixed(decimalsFor(yTicks.step * scale));
  const formatX = (v: number) => v.toFixed(decimalsFor(xTicks.step));
  ctx.lineWidth = 1;
  ctx.font = font(13);
  ctx.fillStyle = COLORS.text;

  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (const v of yTicks.values) {
    const [, py] = toPx(xTicks.min, v);
    const y = Math.round(py) + 0.5;
    ctx.strokeStyle = COLORS.grid;
    line(ctx, plot.x, y, plot.x + plot.w, y);
    ctx.strokeStyle = COLORS.axis;
    line(ctx, plot.x - 5, y, plot.x, y);
    ctx.fillText(formatY(v), plot.x - 8, y);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (const v of xTicks.values) {
    const [px] = toPx(v, yTicks.min);
    const x = Math.round(px) + 0.5;
    ctx.strokeStyle = COLORS.grid;
    line(ctx, x, plot.y, x, plot.y + plot.h);
    ctx.strokeStyle = COLORS.axis;
    line(ctx, x, plot.y + plot.h, x, plot.y + plot.h + 5);
    ctx.fillText(formatX(v), x, plot.y + plot.h + 8);
  }
  if (options.zeroLine === true && yTicks.min < 0 && yTicks.max > 0) {
    const y = Math.round(toPx(xTicks.min, 0)[1]) + 0.5;
    ctx.strokeStyle = COLORS.zero;
    ctx.lineWidth = 1.5;
    line(ctx, plot.x, y, plot.x + plot.w, y);
    ctx.lineWidth = 1;
  }
  ctx.strokeStyle = COLORS.axis;
  ctx.strokeRect(Math.round(plot.x) + 0.5, Math.round(plot.y) + 0.5, Math.round(plot.w), Math.round(plot.h));

  ctx.font = font(15);
  ctx.fillStyle = COLORS.text;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'bottom';
  ctx.fillText(options.xLabel, plot.x + plot.w / 2, plot.y + plot.h + 52);
  ctx.save();
  ctx.translate(22, plot.y + plot.h / 2);
  ctx.rotate(-Math.PI / 2);
  ctx.textBaseline = 'middle';
  ctx.fillText(options.yLabel, 0, 0);
  ctx.restore();
}

function line(ctx: SKRSContext2D, x0: number, y0: number, x1: number, y1: number): void {
  ctx.beginPath();
  ctx.moveTo(x0, y0);
  ctx.lineTo(x1, y1);
  ctx.stroke();
}

function drawSeries(ctx: SKRSContext2D, series: LineSeries, toPx: (x: number, y: number) => [number, number], markers: 'auto' | 'always' | 'never'): void {
  const pts = series.points;
  const ok = (i: number) => i >= 0 && i < pts.length && Number.isFinite(pts[i][0]) && Number.isFinite(pts[i][1]);
  ctx.strokeStyle = series.color;
  ctx.fillStyle = series.color;
  ctx.lineWidth = 2.25;
  ctx.lineJoin = 'round';
  ctx.setLineDash(series.dashed === true ? [8, 5] : []);
  ctx.beginPath();
  let drawing = false;
  for (let i = 0; i < pts.length; i++) {
    if (!ok(i)) {
      drawing = false;
      continue;
    }
    const [x, y] = toPx(pts[i][0], pts[i][1]);
    if (drawing) ctx.lineTo(x, y);
    else ctx.moveTo(x, y);
    drawing = true;
  }
  ctx.stroke();
  ctx.setLineDash([]);

  const everyPoint = markers === 'always' || (markers === 'auto' && pts.length <= DEFAULTS.markerLimit);
  for (let i = 0; i < pts.length; i++) {
    if (!ok(i)) continue;
    // A point with no neighbour draws no line, so it always gets a marker or it would vanish.
    const isolated = !ok(i - 1) && !ok(i + 1);
    if ((markers === 'never' && !isolated) || (!everyPoint && !isolated)) continue;
    const [x, y] = toPx(pts[i][0], pts[i][1]);
    drawMarker(ctx, x, y, series.dashed === true);
  }
}

/** Solid series get filled dots, dashed ones hollow dots, so the two read apart in grey print too. */
function drawMarker(ctx: SKRSContext2D, x: number, y: number, hollow: boolean): void {
  ctx.beginPath();
  ctx.arc(x, y, 3.5, 0, Math.PI * 2);
  if (hollow) {
    ctx.fillStyle = '#ffffff';
    ctx.fill();
    ctx.lineWidth = 1.75;
    ctx.stroke();
    ctx.fillStyle = ctx.strokeStyle;
  } else {
    ctx.fill();
  }
}

const LEGEND = { swatch: 30, gap: 8, rowHeight: 22, padding: 10 } as const;

function measureLegend(ctx: SKRSContext2D, series: readonly LineSeries[]): number {
  ctx.font = font(13);
  const text = Math.max(0, ...series.map((s) => ctx.measureText(s.name).width));
  return Math.ceil(Math.min(280, LEGEND.padding * 2 + LEGEND.swatch + LEGEND.gap + text));
}

function drawLegend(ctx: SKRSContext2D, series: readonly LineSeries[], box: Rect): void {
  if (series.length === 0) return;
  const h = LEGEND.padding * 2 + series.length * LEGEND.rowHeight;
  ctx.fillStyle = '#fafafa';
  ctx.fillRect(box.x, box.y, box.w, h);
  ctx.strokeStyle = '#cccccc';
  ctx.lineWidth = 1;
  ctx.strokeRect(box.x + 0.5, box.y + 0.5, box.w - 1, h - 1);
  ctx.font = font(13);
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  series.forEach((s, i) => {
    const y = box.y + LEGEND.padding + LEGEND.rowHeight * (i + 0.5);
    const x0 = box.x + LEGEND.padding;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2.25;
    ctx.setLineDash(s.dashed === true ? [8, 5] : []);
    line(ctx, x0, y, x0 + LEGEND.swatch, y);
    ctx.setLineDash([]);
    ctx.fillStyle = s.color;
    drawMarker(ctx, x0 + LEGEND.swatch / 2, y, s.dashed === true);
    ctx.fillStyle = COLORS.text;
    ctx.fillText(s.name, x0 + LEGEND.swatch + LEGEND.gap, y, box.w - LEGEND.padding * 2 - LEGEND.swatch - LEGEND.gap);
  });
}
