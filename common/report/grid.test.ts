import { describe, expect, it } from 'vitest';
import { ShapeError } from '../errors.ts';
import { gridLayout, imageAt, MARK_COLORS, predictionGrid, renderImageGrid, renderPredictions, renderSamples, sampleGrid, TILE_BYTES, type GridTile } from './grid.ts';
import { decodePng, fakeImageSet, pixelStats, pngSize } from './test-fixtures.ts';
import { CIFAR10_CLASSES } from '../data/types.ts';

function hex(rgb: readonly number[]): string {
  return `#${rgb.slice(0, 3).map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}

describe('renderImageGrid', () => {
  const set = fakeImageSet(12, 5);
  const tiles: GridTile[] = Array.from({ length: 12 }, (_, i) => ({ image: imageAt(set.images, i), caption: [`tile ${i}`] }));

  it('lays tiles out in rows of `columns` and sizes the PNG to match', () => {
    const options = { columns: 5, scale: 2 };
    const layout = gridLayout(tiles, options);
    expect(layout.rows).toBe(3);
    expect(pngSize(renderImageGrid(tiles, options))).toEqual({ width: layout.width, height: layout.height });
    expect(layout.tileRect(6).y).toBeGreaterThan(layout.tileRect(4).y);
    expect(layout.tileRect(5).x).toBe(layout.tileRect(0).x);
  });

  it('enlarges by nearest neighbour: every source pixel becomes a uniform scale×scale square', async () => {
    const scale = 3;
    const image = await decodePng(renderImageGrid(tiles.slice(0, 2), { columns: 2, scale }));
    const rect = gridLayout(tiles.slice(0, 2), { columns: 2, scale }).tileRect(1);
    const source = tiles[1].image as Uint8Array;
    for (const [sx, sy] of [[0, 0], [5, 7], [31, 31], [16, 3]]) {
      const o = (sy * 32 + sx) * 3;
      for (let dy = 0; dy < scale; dy++) {
        for (let dx = 0; dx < scale; dx++) {
          expect(image.pixel(rect.x + sx * scale + dx, rect.y + sy * scale + dy).slice(0, 3)).toEqual([source[o], source[o + 1], source[o + 2]]);
        }
      }
    }
  });

  it('rejects an image that is not 32×32×3 bytes', () => {
    expect(() => renderImageGrid([{ image: new Uint8Array(100), caption: [] }])).toThrow(ShapeError);
    expect(() => renderImageGrid([{ image: new Uint8Array(100), caption: [] }])).toThrow(/3072 bytes.*got 100/);
  });

  it('frames a highlighted tile in red', async () => {
    const marked = tiles.slice(0, 2).map((t, i) => ({ ...t, highlight: i === 1 }));
    const image = await decodePng(renderImageGrid(marked, { columns: 2 }));
    const layout = gridLayout(marked, { columns: 2 });
    const frame = (i: number) => {
      const r = layout.tileRect(i);
      return hex(image.pixel(r.x - 2, r.y + r.size / 2));
    };
    expect(frame(1)).toBe(MARK_COLORS.wrong);
    expect(frame(0)).toBe('#ffffff');
  });
});

describe('renderPredictions', () => {
  const set = fakeImageSet(80, 7);
  // wrong at 3, 17 and 42; every other prediction right
  const wrongAt = new Set([3, 17, 42]);
  const predicted = Array.from(set.labels, (label, i) => (wrongAt.has(i) ? (label + 1) % 10 : label));
  const sheet = { images: set.images, labels: set.labels, predicted, classNames: CIFAR10_CLASSES };

  it('shows the first 50 images in 10 columns and 5 rows', () => {
    const png = renderPredictions(sheet);
    const grid = predictionGrid(sheet);
    const layout = gridLayout(grid.tiles, grid.options);
    expect(grid.tiles).toHaveLength(50);
    expect(layout.columns).toBe(10);
    expect(layout.rows).toBe(5);
    expect(pngSize(png)).toEqual({ width: layout.width, height: layout.height });
  });

  it('frames exactly the wrong predictions in red and the right ones in green', async () => {
    const image = await decodePng(renderPredictions(sheet));
    expect(pixelStats(image).colours).toBeGreaterThan(100);
    const grid = predictionGrid(sheet);
    const layout = gridLayout(grid.tiles, grid.options);
    for (let i = 0; i < 50; i++) {
      const r = layout.tileRect(i);
      const left = hex(image.pixel(r.x - 2, r.y + r.size / 2));
      const top = hex(image.pixel(r.x + r.size / 2, r.y - 2));
      const expected = wrongAt.has(i) ? MARK_COLORS.wrong : MARK_COLORS.right;
      expect({ tile: i, left, top }).toEqual({ tile: i, left: expected, top: expected });
    }
  });

  it('writes the wrong prediction in red under its tile', async () => {
    const image = await decodePng(renderPredictions(sheet));
    const grid = predictionGrid(sheet);
    const layout = gridLayout(grid.tiles, grid.options);
    const redIn = (i: number) => {
      const r = layout.tileRect(i);
      let n = 0;
      // the second caption line: below the frame and the first line
      for (let y = r.y + r.size + 3 + 5 + 15; y < r.y + r.size + 3 + 5 + 30; y++) {
        for (let x = r.x - 8; x < r.x + r.size + 8; x++) {
          const [red, green, blue] = image.pixel(x, y);
          if (red > 150 && green < 110 && blue < 110) n++;
        }
      }
      return n;
    };
    expect(redIn(17)).toBeGreaterThan(20);
    expect(redIn(18)).toBe(0);
  });

  it('shows fewer tiles when there are fewer than 50 images', () => {
    const few = { ...sheet, images: set.images.subarray(0, 7 * TILE_BYTES), labels: set.labels.subarray(0, 7), predicted: predicted.slice(0, 7) };
    const grid = predictionGrid(few);
    expect(grid.tiles).toHaveLength(7);
    const layout = gridLayout(grid.tiles, grid.options);
    expect(layout.rows).toBe(1);
    expect(pngSize(renderPredictions(few)).height).toBeLessThan(pngSize(renderPredictions(sheet)).height);
  });

  it('rejects predictions that do not match the labels in number', () => {
    expect(() => renderPredictions({ ...sheet, predicted: predicted.slice(0, 10) })).toThrow(/one prediction per label \(80\), but got 10/);
  });
});

describe('renderSamples', () => {
  it('puts the first five images of class c in column c', async () => {
    const set = fakeImageSet(300, 11);
    const png = renderSamples(set, CIFAR10_CLASSES);
    const image = await decodePng(png);
    const grid = sampleGrid(set, CIFAR10_CLASSES);
    const layout = gridLayout(grid.tiles, grid.options);
    expect(pngSize(png)).toEqual({ width: layout.width, height: layout.height });
    for (let c = 0; c < 10; c++) {
      const indices = [...set.labels.keys()].filter((i) => set.labels[i] === c).slice(0, 5);
      indices.forEach((index, row) => {
        const r = layout.tileRect(row * 10 + c);
        const source = imageAt(set.images, index);
        // pixel (4, 9) of the source image sits at (4*3, 9*3) in the tile
        const o = (9 * 32 + 4) * 3;
        expect(image.pixel(r.x + 12, r.y + 27).slice(0, 3)).toEqual([source[o], source[o + 1], source[o + 2]]);
      });
    }
  });

  it('leaves grey placeholders when a class has too few images', async () => {
    const set = fakeImageSet(30, 2, 3); // only classes 0..2
    const image = await decodePng(renderSamples(set, CIFAR10_CLASSES));
    const grid = sampleGrid(set, CIFAR10_CLASSES);
    const layout = gridLayout(grid.tiles, grid.options);
    const r = layout.tileRect(9); // class 9, row 0
    expect(pixelStats(image, { x: r.x, y: r.y, w: r.size, h: r.size }).colours).toBe(1);
    expect(hex(image.pixel(r.x + 10, r.y + 10))).toBe('#eeeeee');
  });

  it('writes each class name above its column', async () => {
    const set = fakeImageSet(200, 4);
    const image = await decodePng(renderSamples(set, CIFAR10_CLASSES));
    const grid = sampleGrid(set, CIFAR10_CLASSES);
    const layout = gridLayout(grid.tiles, grid.options);
    const r = layout.tileRect(1);
    expect(pixelStats(image, { x: r.x, y: r.y - 22, w: r.size, h: 16 }).colours).toBeGreaterThan(5);
  });
});
