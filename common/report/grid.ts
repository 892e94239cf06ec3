/**
 * Grids of 32×32 images with captions: the prediction sheet of a run and the per-class training
 * samples. Pixels are enlarged by whole-number nearest-neighbour copying, so each source pixel stays
 * a crisp square at any scale.
 */
import { createCanvas, type SKRSContext2D } from '@napi-rs/canvas';
import { ShapeError } from '../errors.ts';
import type { ImageSet } from '../data/types.ts';
import { font } from './fonts.ts';

const SIDE = 32;
const CHANNELS = 3;
export const TILE_BYTES = SIDE * SIDE * CHANNELS;

export const MARK_COLORS = { wrong: '#d62728', right: '#2ca02c' } as const;

export interface GridTile {
  /** 3072 bytes, HWC RGB; null draws an empty placeholder (e.g. a class with too few images). */
  image: Uint8Array | null;
  /** Lines under the image, top to bottom. */
  caption: string[];
  /** Marks the tile as wrong: a red frame, and the last caption line in red. */
  highlight?: boolean;
  /** A frame in this colour (overrides the red of `highlight`). */
  frameColor?: string;
  /** Per caption line; undefined lines use the default text colour. */
  captionColors?: readonly (string | undefined)[];
}

export interface GridOptions {
  /** Default 10. */
  columns?: number;
  /** Whole-number enlargement of each 32×32 image; default 3 (96×96 pixels). */
  scale?: number;
  /** Bold line above the grid. */
  title?: string;
  /** Bold labels above each column. */
  columnHeaders?: readonly string[];
}

export const GRID_DEFAULTS = { columns: 10, scale: 3 } as const;

const STYLE = {
  margin: 12,
  gap: 10,
  frame: 3,
  titleHeight: 30,
  headerHeight: 22,
  captionFontPx: 12,
  captionLineHeight: 15,
  captionTop: 5,
  text: '#222222',
  background: '#ffffff',
  placeholder: '#eeeeee',
} as const;

export interface TileRect {
  x: number;
  y: number;
  /** Side of the enlarged image in pixels. */
  size: number;
}

export interface GridLayout {
  width: number;
  height: number;
  columns: number;
  rows: number;
  cellWidth: number;
  cellHeight: number;
  /** Width of the frame drawn just outside the image of a marked tile. */
  frameWidth: number;
  /** Where tile i's image lies: its frame, if any, is the frameWidth pixels around this square. */
  tileRect(index: number): TileRect;
}

/** Where everything goes; exported so that tests can find a tile's frame pixels. */
export function gridLayout(tiles: readonly GridTile[], options: GridOptions = {}): GridLayout {
  const columns = options.columns ?? GRID_DEFAULTS.columns;
  const scale = options.scale ?? GRID_DEFAULTS.scale;
  if (!Number.isInteger(columns) || columns < 1) throw new ShapeError(`Expected columns to be a whole number ≥ 1, but got ${columns}.`);
  if (!Number.isInteger(scale) || scale < 1) throw new ShapeError(`Expected scale to be a whole number ≥ 1, but got ${scale}.`);
  const size = SIDE * scale;
  const measure = createCanvas(1, 1).getContext('2d');
  measure.font = font(STYLE.captionFontPx);
  let widest = 0;
  for (const tile of tiles) for (const line of tile.caption) widest = Math.max(widest, measure.measureText(line).width);
  measure.font = font(13, 'bold');
  for (const header of options.columnHeaders ?? []) widest = Math.max(widest, measure.measureText(header).width);
  const captionLines = Math.max(0, ...tiles.map((t) => t.caption.length));

  const cellWidth = Math.ceil(Math.max(size + 2 * STYLE.frame, widest + 4));
  const cellHeight = size + 2 * STYLE.frame + (captionLines > 0 ? STYLE.captionTop + captionLines * STYLE.captionLineHeight : 0);
  const rows = Math.max(1, Math.ceil(tiles.length / columns));
  const top = STYLE.margin + (options.title === undefined ? 0 : STYLE.titleHeight) + (options.columnHeaders === undefined ? 0 : STYLE.headerHeight);
  const width = 2 * STYLE.margin + columns * cellWidth + (columns - 1) * STYLE.gap;
  const height = top + rows * cellHeight + (rows - 1) * STYLE.gap + STYLE.margin;
  return {
    width,
    height,
    columns,
    rows,
    cellWidth,
    cellHeight,
    frameWidth: STYLE.frame,
    tileRect(index: number): TileRect {
      const col = index % columns;
      const row = Math.floor(index / columns);
      const cellX = STYLE.margin + col * (cellWidth + STYLE.gap);
      const cellY = top + row * (cellHeight + STYLE.gap);
      return { x: cellX + Math.floor((cellWidth - size) / 2), y: cellY + STYLE.frame, size };
    },
  };
}

export function renderImageGrid(tiles: readonly GridTile[], options: GridOptions = {}): Buffer {
  tiles.forEach((tile, i) => {
    if (tile.image !== null && tile.image.length !== TILE_BYTES) {
      throw new ShapeError(`Expected tile ${i} to hold ${TILE_BYTES} bytes (32×32×3 HWC), but got ${tile.image.length}.`);
    }
  });
  const layout = gridLayout(tiles, options);
  const canvas = createCanvas(layout.width, layout.height);
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = STYLE.background;
  ctx.fillRect(0, 0, layout.width, layout.height);

  ctx.fillStyle = STYLE.text;
  ctx.textAlign = 'left';
  ctx.textBaseline = 'top';
  if (options.title !== undefined) {
    ctx.font = font(16, 'bold');
    ctx.fillText(options.title, STYLE.margin, STYLE.margin, layout.width - 2 * STYLE.margin);
  }
  if (options.columnHeaders !== undefined) {
    ctx.font = font(13, 'bold');
    ctx.textAlign = 'center';
    ctx.textBaseline = 'bottom';
    options.columnHeaders.forEach((header, col) => {
      if (col >= layout.columns) return;
      const r = layout.tileRect(col);
      ctx.fillText(header, r.x + r.size / 2, r.y - STYLE.frame - 4);
    });
  }

  tiles.forEach((tile, i) => drawTile(ctx, tile, layout.tileRect(i)));
  return canvas.toBuffer('image/png');
}

function drawTile(ctx: SKRSContext2D, tile: GridTile, rect: TileRect): void {
  if (tile.image === null) {
    ctx.fillStyle = STYLE.placeholder;
    ctx.fillRect(rect.x, rect.y, rect.size, rect.size);
  } else {
    ctx.putImageData(enlarge(ctx, tile.image, rect.size / SIDE), rect.x, rect.y);
  }
  const frameColor = tile.frameColor ?? (tile.highlight === true ? MARK_COLORS.wrong : undefined);
  if (frameColor !== undefined) {
    const f = STYLE.frame;
    ctx.fillStyle = frameColor;
    ctx.fillRect(rect.x - f, rect.y - f, rect.size + 2 * f, f);
    ctx.fillRect(rect.x - f, rect.y + rect.size, rect.size + 2 * f, f);
    ctx.fillRect(rect.x - f, rect.y, f, rect.size);
    ctx.fillRect(rect.x + rect.size, rect.y, f, rect.size);
  }
  ctx.font = font(STYLE.captionFontPx);
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  tile.caption.forEach((line, i) => {
    const last = i === tile.caption.length - 1;
    ctx.fillStyle = tile.captionColors?.[i] ?? (last && tile.highlight === true ? MARK_COLORS.wrong : STYLE.text);
    ctx.fillText(line, rect.x + rect.size / 2, rect.y + rect.size + STYLE.frame + STYLE.captionTop + i * STYLE.captionLineHeight);
  });
}

/** HWC RGB bytes → RGBA pixels, each source pixel copied into a scale×scale square. */
function enlarge(ctx: SKRSContext2D, image: Uint8Array, scale: number) {
  const size = SIDE * scale;
  const out = ctx.createImageData(size, size);
  const data = out.data;
  for (let y = 0; y < size; y++) {
    const sy = Math.floor(y / scale);
    for (let x = 0; x < size; x++) {
      const src = (sy * SIDE + Math.floor(x / scale)) * CHANNELS;
      const dst = (y * size + x) * 4;
      data[dst] = image[src];
      data[dst + 1] = image[src + 1];
      data[dst + 2] = image[src + 2];
      data[dst + 3] = 255;
    }
  }
  return out;
}

/** The i-th 3072-byte image of a packed HWC buffer (a view, not a copy). */
export function imageAt(images: Uint8Array, index: number): Uint8Array {
  return images.subarray(index * TILE_BYTES, (index + 1) * TILE_BYTES);
}

function className(classNames: readonly string[], label: number): string {
  return classNames[label] ?? `class ${label}`;
}

export interface PredictionSheet {
  /** Packed HWC images, at least as many as are shown. */
  images: Uint8Array;
  labels: ArrayLike<number>;
  predicted: ArrayLike<number>;
  classNames: readonly string[];
}

export const PREDICTIONS_SHOWN = 50;

/** Tiles plus options: what a picture shows, separate from drawing it (tests use it to find tiles). */
export interface GridSpec {
  tiles: GridTile[];
  options: GridOptions;
}

/**
 * The first 50 images (10 columns × 5 rows) with their true and predicted class: right
 * predictions framed and captioned in green, wrong ones in red.
 */
export function predictionGrid(sheet: PredictionSheet, options: GridOptions = {}): GridSpec {
  const { images, labels, predicted, classNames } = sheet;
  if (predicted.length !== labels.length) {
    throw new ShapeError(`Expected one prediction per label (${labels.length}), but got ${predicted.length}.`);
  }
  const count = Math.min(PREDICTIONS_SHOWN, labels.length);
  if (images.length < count * TILE_BYTES) {
    throw new ShapeError(`Expected at least ${count * TILE_BYTES} image bytes for ${count} images, but got ${images.length}.`);
  }
  const tiles: GridTile[] = [];
  let wrong = 0;
  for (let i = 0; i < count; i++) {
    const right = predicted[i] === labels[i];
    if (!right) wrong++;
    tiles.push({
      image: imageAt(images, i),
      // The ✗ keeps wrong tiles findable for readers who cannot tell red from green.
      caption: [`GT: ${className(classNames, labels[i])}`, `P: ${className(classNames, predicted[i])}${right ? '' : ' ✗'}`],
      highlight: !right,
      frameColor: right ? MARK_COLORS.right : MARK_COLORS.wrong,
      captionColors: [undefined, right ? MARK_COLORS.right : MARK_COLORS.wrong],
    });
  }
  const title = `Test predictions: ${count - wrong} of ${count} right, ${wrong} wrong (red, ✗)`;
  return { tiles, options: { columns: GRID_DEFAULTS.columns, title, ...options } };
}

export function renderPredictions(sheet: PredictionSheet, options: GridOptions = {}): Buffer {
  const grid = predictionGrid(sheet, options);
  return renderImageGrid(grid.tiles, grid.options);
}

/**
 * The first `perClass` training images of every class, one column per class with the class name
 * on top. A class with fewer images gets grey placeholders.
 */
export function sampleGrid(set: ImageSet, classNames: readonly string[], perClass = 5, options: GridOptions = {}): GridSpec {
  if (set.images.length < set.count * TILE_BYTES || set.labels.length < set.count) {
    throw new ShapeError(`Expected ${set.count} images (${set.count * TILE_BYTES} bytes) and labels, but got ${set.images.length} bytes and ${set.labels.length} labels.`);
  }
  const picked: number[][] = classNames.map(() => []);
  for (let i = 0; i < set.count; i++) {
    const list = picked[set.labels[i]];
    if (list !== undefined && list.length < perClass) list.push(i);
  }
  const tiles: GridTile[] = [];
  for (let row = 0; row < perClass; row++) {
    for (let c = 0; c < classNames.length; c++) {
      const index = picked[c][row];
      tiles.push({ image: index === undefined ? null : imageAt(set.images, index), caption: [] });
    }
  }
  const title = `Training samples: the first ${perClass} of each class`;
  return { tiles, options: { columns: classNames.length, title, columnHeaders: classNames, ...options } };
}

export function renderSamples(set: ImageSet, classNames: readonly string[], perClass = 5, options: GridOptions = {}): Buffer {
  const grid = sampleGrid(set, classNames, perClass, options);
  return renderImageGrid(grid.tiles, grid.options);
}
