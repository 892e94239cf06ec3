/**
 * Made-up inputs for the report tests and the example pictures: patterned 32×32 images with labels,
 * and run folders whose history.json and metrics.json follow the trainer's format.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageSet } from '../data/types.ts';
import type { EpochRecord, RunMetrics, TrainingHistory } from './run-files.ts';

/** Deterministic uniform [0, 1) numbers (mulberry32). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One hue per class and a shape by class (disc, square, stripes), on a noisy background. */
export function patternImage(label: number, random: () => number): Uint8Array {
  const image = new Uint8Array(32 * 32 * 3);
  const hue = (label * 36 + random() * 20) % 360;
  const [r, g, b] = hsl(hue, 0.7, 0.5);
  const bg = hsl((hue + 180) % 360, 0.25, 0.75 + random() * 0.1);
  const cx = 12 + random() * 8;
  const cy = 12 + random() * 8;
  const radius = 7 + random() * 5;
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const inside =
        label % 3 === 0
          ? (x - cx) ** 2 + (y - cy) ** 2 < radius ** 2
          : label % 3 === 1
            ? Math.abs(x - cx) < radius && Math.abs(y - cy) < radius
            : Math.floor((x + y) / 4) % 2 === 0;
      const noise = (random() - 0.5) * 30;
      const [pr, pg, pb] = inside ? [r, g, b] : bg;
      const o = (y * 32 + x) * 3;
      image[o] = clamp(pr + noise);
      image[o + 1] = clamp(pg + noise);
      image[o + 2] = clamp(pb + noise);
    }
  }
  return image;
}

function clamp(v: number): number {
  return Math.max(0, Math.min(255, Math.round(v)));
}

function hsl(h: number, s: number, l: number): [number, number, number] {
  const k = (n: number) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n: number) => l - a * Math.max(-1, Math.min(k(n) - 3, Math.min(9 - k(n), 1)));
  return [f(0) * 255, f(8) * 255, f(4) * 255];
}

/** `count` patterned images with labels cycling through `classes` in a shuffled order. */
export function fakeImageSet(count: number, seed = 1, classes = 10): ImageSet {
  const random = seededRandom(seed);
  const images = new Uint8Array(count * 3072);
  const labels = new Uint8Array(count);
  for (let i = 0; i < count; i++) {
    labels[i] = Math.floor(random() * classes);
    images.set(patternImage(labels[i], random), i * 3072);
  }
  return { images, labels, count };
}

export interface FakeRunShape {
  model: string;
  epochs: number;
  /** Final training accuracy. */
  trainAccuracy: number;
  /** Best validation accuracy, reached at `bestEpoch`; it then sags by `sag` per epoch. */
  bestValAccuracy: number;
  bestEpoch: number;
  sag?: number;
  testAccuracy: number;
  workers?: number;
  parameters?: number;
}

/** Plausible learning curves for a run shaped as described. */
export function fakeHistory(shape: FakeRunShape): TrainingHistory {
  const epochs: EpochRecord[] = [];
  for (let e = 1; e <= shape.epochs; e++) {
    const progress = (1 - Math.exp(-e / 3)) / (1 - Math.exp(-shape.epochs / 3));
    const accuracy = 0.25 + (shape.trainAccuracy - 0.25) * progress;
    const rise = Math.min(1, (1 - Math.exp(-e / 2.5)) / (1 - Math.exp(-shape.bestEpoch / 2.5)));
    const valAccuracy = e <= shape.bestEpoch ? 0.25 + (shape.bestValAccuracy - 0.25) * rise : shape.bestValAccuracy - (shape.sag ?? 0.004) * (e - shape.bestEpoch);
    epochs.push({
      epoch: e,
      loss: round(2.3 * (1 - accuracy) + 0.1),
      accuracy: round(accuracy),
      val_loss: round(2.3 * (1 - valAccuracy) + 0.15 + 0.01 * Math.max(0, e - shape.bestEpoch)),
      val_accuracy: round(valAccuracy),
      seconds: 12.5,
      images_per_second: 3200,
    });
  }
  return { model: shape.model, epochs };
}

function round(v: number): number {
  return Math.round(v * 10000) / 10000;
}

export function fakeMetrics(shape: FakeRunShape): RunMetrics {
  const workers = shape.workers ?? 2;
  return {
    model: shape.model,
    parameters: { total: shape.parameters ?? 62006, trainable: shape.parameters ?? 62006, nonTrainable: 0 },
    test_loss: round(2.3 * (1 - shape.testAccuracy) + 0.2),
    test_accuracy: shape.testAccuracy,
    epochs: shape.epochs,
    backend: 'wasm',
    workers,
    wall_seconds: 12.5 * shape.epochs + 3.1,
    images_per_second: 1550 * workers,
    dataset: 'synthetic',
    config: { model: shape.model, epochs: shape.epochs, workers, batchSize: 64 },
    finished_at: '2026-11-26T20:00:00.000Z',
  };
}

/** Writes a run folder `<parent>/<name>` with history.json and metrics.json; returns its path. */
export async function writeFakeRun(parent: string, name: string, shape: FakeRunShape): Promise<string> {
  const dir = join(parent, name);
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'history.json'), JSON.stringify(fakeHistory(shape), null, 2));
  await writeFile(join(dir, 'metrics.json'), JSON.stringify(fakeMetrics(shape), null, 2));
  return dir;
}

export interface DecodedImage {
  width: number;
  height: number;
  /** RGBA, row by row. */
  data: Uint8ClampedArray;
  pixel(x: number, y: number): [number, number, number, number];
}

/** Decodes a PNG back into pixels, the way a viewer would. */
export async function decodePng(png: Buffer): Promise<DecodedImage> {
  const { createCanvas, loadImage } = await import('@napi-rs/canvas');
  const image = await loadImage(png);
  const canvas = createCanvas(image.width, image.height);
  const ctx = canvas.getContext('2d');
  ctx.drawImage(image, 0, 0);
  const data = ctx.getImageData(0, 0, image.width, image.height).data;
  return {
    width: image.width,
    height: image.height,
    data,
    pixel(x, y) {
      const o = (y * image.width + x) * 4;
      return [data[o], data[o + 1], data[o + 2], data[o + 3]];
    },
  };
}

/** The width and height stored in a PNG's IHDR chunk, read without decoding. */
export function pngSize(png: Buffer): { width: number; height: number } {
  const signature = '89504e470d0a1a0a';
  if (png.subarray(0, 8).toString('hex') !== signature || png.subarray(12, 16).toString('ascii') !== 'IHDR') {
    throw new Error(`Expected a PNG (signature ${signature}, then IHDR), but got ${png.subarray(0, 16).toString('hex')}`);
  }
  return { width: png.readUInt32BE(16), height: png.readUInt32BE(20) };
}

/** Distinct RGB colours and the variance of the grey level: a blank picture has 1 and 0. */
export function pixelStats(image: DecodedImage, region?: { x: number; y: number; w: number; h: number }): { colours: number; variance: number } {
  const { x: x0, y: y0, w, h } = region ?? { x: 0, y: 0, w: image.width, h: image.height };
  const colours = new Set<number>();
  let sum = 0;
  let sumSquares = 0;
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      const [r, g, b] = image.pixel(x, y);
      colours.add((r << 16) | (g << 8) | b);
      const grey = (r + g + b) / 3;
      sum += grey;
      sumSquares += grey * grey;
    }
  }
  const n = w * h;
  return { colours: colours.size, variance: sumSquares / n - (sum / n) ** 2 };
}

/** How many pixels are within `tolerance` of a CSS hex colour such as "#1f77b4". */
export function countColour(image: DecodedImage, hex: string, tolerance = 8, region?: { x: number; y: number; w: number; h: number }): number {
  const target = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
  const { x: x0, y: y0, w, h } = region ?? { x: 0, y: 0, w: image.width, h: image.height };
  let count = 0;
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      const p = image.pixel(x, y);
      if (Math.abs(p[0] - target[0]) <= tolerance && Math.abs(p[1] - target[1]) <= tolerance && Math.abs(p[2] - target[2]) <= tolerance) count++;
    }
  }
  return count;
}
