/**
 * CIFAR-shaped synthetic data for running without the real dataset (offline machines, CI, demos).
 *
 * It must be learnable, or a run cannot show that training works, and not trivial, or it cannot
 * show a difference between models. Each class has:
 * - a colour palette (background, stripe, blob colours). Classes come in pairs that share their
 *   background and stripe colours (airplane/ship, automobile/truck, cat/dog, deer/horse, bird/frog),
 *   so colour alone separates pairs but not the two classes of a pair;
 * - oriented stripes of a class-specific angle and period, at a random phase per image: invisible
 *   to a per-pixel average, found by convolution filters;
 * - a soft blob at a class-specific position, shifted a few pixels per image.
 * On top, every image gets its own colour jitter, brightness, contrast and Gaussian noise.
 *
 * Image i of a part depends only on (seed, part, i): a limited run generates only the images it
 * uses, and they are the same images a full run would see.
 */
import { mix32, SeededRandom } from '../random.ts';
import { createHash } from 'node:crypto';
import { IMAGE_BYTES, newImageSet, type ImageSet } from './types.ts';

export const SYNTHETIC_DEV_COUNT = 50_000;
export const SYNTHETIC_TEST_COUNT = 10_000;
export type SyntheticPart = 'dev' | 'test';

type Rgb = readonly [number, number, number];

interface ClassStyle {
  background: Rgb;
  stripe: Rgb;
  blob: Rgb;
  /** Stripe direction in degrees (0: horizontal stripes). */
  angle: number;
  /** Stripe period in pixels. */
  period: number;
  blobX: number;
  blobY: number;
  blobRadius: number;
}

const SKY = { background: [120, 160, 210], stripe: [210, 215, 225] } as const;
const ROAD = { background: [110, 110, 115], stripe: [200, 50, 45] } as const;
const MEADOW = { background: [85, 140, 70], stripe: [200, 180, 70] } as const;
const FUR = { background: [150, 120, 90], stripe: [220, 190, 150] } as const;
const FIELD = { background: [95, 125, 60], stripe: [165, 110, 60] } as const;

// Index = CIFAR-10 label. Pairs share a palette and differ in stripes and blob.
const STYLES: readonly ClassStyle[] = [
  { ...SKY, blob: [240, 240, 240], angle: 0, period: 8, blobX: 16, blobY: 10, blobRadius: 6 }, // airplane
  { ...ROAD, blob: [30, 30, 30], angle: 90, period: 6, blobX: 10, blobY: 22, blobRadius: 5 }, // automobile
  { ...MEADOW, blob: [200, 60, 40], angle: 45, period: 7, blobX: 22, blobY: 10, blobRadius: 5 }, // bird
  { ...FUR, blob: [60, 50, 40], angle: 135, period: 5, blobX: 10, blobY: 10, blobRadius: 7 }, // cat
  { ...FIELD, blob: [120, 80, 40], angle: 90, period: 9, blobX: 20, blobY: 20, blobRadius: 6 }, // deer
  { ...FUR, blob: [90, 60, 30], angle: 45, period: 8, blobX: 22, blobY: 22, blobRadius: 7 }, // dog
  { ...MEADOW, blob: [40, 160, 40], angle: 0, period: 5, blobX: 16, blobY: 24, blobRadius: 6 }, // frog
  { ...FIELD, blob: [70, 40, 20], angle: 135, period: 6, blobX: 12, blobY: 16, blobRadius: 7 }, // horse
  { ...SKY, blob: [60, 60, 70], angle: 90, period: 4, blobX: 16, blobY: 22, blobRadius: 6 }, // ship
  { ...ROAD, blob: [220, 220, 220], angle: 0, period: 10, blobX: 22, blobY: 16, blobRadius: 6 }, // truck
];

/** The knobs that set how hard the task is, measured with a nearest-class-mean probe (see the tests). */
const DIFFICULTY = {
  /** Largest blob shift in pixels, each axis. */
  shift: 5,
  /** Largest per-channel change of each palette colour. */
  colourJitter: 40,
  brightness: [0.65, 1.35],
  stripeContrast: [0.3, 1],
  blobStrength: [0.4, 1],
  noiseStd: 28,
} as const;

const SIDE = 32;
const MAX_PERIOD = Math.max(...STYLES.map((s) => s.period));
const STRIPE_SIDE = SIDE + MAX_PERIOD;
const BLOB_SIDE = SIDE + 2 * DIFFICULTY.shift;
// Noise is drawn once and read at a random offset per image: per-pixel Gaussian draws would cost
// ~180 M random numbers for the full set, several seconds instead of well under one.
const NOISE_TABLE = 1 << 16;

/** The images at `indices` of the dev or test part; label = index mod 10, so classes are balanced. */
/** Bump when the generator's code changes what it draws, so that old and new never look alike. */
const GENERATOR_VERSION = 1;

/**
 * "synthetic:" + a sha256 of everything that decides the images (generator version, class styles,
 * difficulty, part sizes). The seed is not in it: it travels separately, as for CIFAR-10's split.
 */
export function syntheticFingerprint(): string {
  const params = JSON.stringify({ GENERATOR_VERSION, STYLES, DIFFICULTY, SIDE, dev: SYNTHETIC_DEV_COUNT, test: SYNTHETIC_TEST_COUNT });
  return `synthetic:${createHash('sha256').update(params).digest('hex')}`;
}

/** The images at `indices` of `part` (`shared`: in shared memory, see newImageSet). */
export function generateSynthetic(indices: Uint32Array, part: SyntheticPart, seed: number, shared = false): ImageSet {
  const count = indices.length;
  const { images, labels } = newImageSet(count, shared);
  // Clamped writes round and saturate to 0..255 in one store.
  const out = new Uint8ClampedArray(images.buffer, images.byteOffset, images.length);
  const { stripes, blobs } = styleMaps();
  const noise = noiseTable(seed);
  const partSalt = part === 'dev' ? 0x51ed270b : 0x2c1b3c6d;
  const seedHash = mix32(seed | 0);
  const colour = new Float32Array(9);

  for (let n = 0; n < count; n++) {
    const index = indices[n];
    const label = index % 10;
    labels[n] = label;
    const style = STYLES[label];
    const rng = new SeededRandom(mix32(seedHash ^ partSalt) ^ mix32(index));
    const stripeX = rng.nextInt(style.period);
    const stripeY = rng.nextInt(style.period);
    const blobX = rng.nextInt(2 * DIFFICULTY.shift + 1);
    const blobY = rng.nextInt(2 * DIFFICULTY.shift + 1);
    const contrast = between(rng, DIFFICULTY.stripeContrast);
    const strength = between(rng, DIFFICULTY.blobStrength);
    const brightness = between(rng, DIFFICULTY.brightness);
    const palette = [style.background, style.stripe, style.blob];
    for (let k = 0; k < 9; k++) {
      colour[k] = palette[(k / 3) | 0][k % 3] + (2 * rng.next() - 1) * DIFFICULTY.colourJitter;
    }
    let noiseAt = rng.nextInt(NOISE_TABLE);
    const stripe = stripes[label];
    const blob = blobs[label];
    const bg0 = colour[0], bg1 = colour[1], bg2 = colour[2];
    const d0 = colour[3] - bg0, d1 = colour[4] - bg1, d2 = colour[5] - bg2;
    const b0 = colour[6], b1 = colour[7], b2 = colour[8];
    let o = n * IMAGE_BYTES;
    for (let y = 0; y < SIDE; y++) {
      let si = (stripeY + y) * STRIPE_SIDE + stripeX;
      let bi = (blobY + y) * BLOB_SIDE + blobX;
      for (let x = 0; x < SIDE; x++, si++, bi++) {
        const s = stripe[si] * contrast;
        const b = blob[bi] * strength;
        const r = bg0 + d0 * s;
        const g = bg1 + d1 * s;
        const bl = bg2 + d2 * s;
        out[o++] = (r + (b0 - r) * b) * brightness + noise[noiseAt++];
        out[o++] = (g + (b1 - g) * b) * brightness + noise[noiseAt++];
        out[o++] = (bl + (b2 - bl) * b) * brightness + noise[noiseAt++];
      }
    }
  }
  return { images, labels, count };
}

function between(rng: SeededRandom, range: readonly [number, number]): number {
  return range[0] + (range[1] - range[0]) * rng.next();
}

/** Stripe intensity in [0, 1] on a canvas one period larger than the image, cropped per image for a random phase. */
function stripeMap(style: ClassStyle): Float32Array {
  const map = new Float32Array(STRIPE_SIDE * STRIPE_SIDE);
  const angle = (style.angle * Math.PI) / 180;
  // The wave varies across the stripes, i.e. along the normal of the stripe direction.
  const nx = -Math.sin(angle);
  const ny = Math.cos(angle);
  for (let y = 0; y < STRIPE_SIDE; y++) {
    for (let x = 0; x < STRIPE_SIDE; x++) {
      map[y * STRIPE_SIDE + x] = 0.5 + 0.5 * Math.cos((2 * Math.PI * (x * nx + y * ny)) / style.period);
    }
  }
  return map;
}

/** A Gaussian bump on a canvas 2·shift larger than the image, cropped per image for a random shift. */
function blobMap(style: ClassStyle): Float32Array {
  const map = new Float32Array(BLOB_SIDE * BLOB_SIDE);
  const cx = style.blobX + DIFFICULTY.shift;
  const cy = style.blobY + DIFFICULTY.shift;
  const twoR2 = 2 * style.blobRadius * style.blobRadius;
  for (let y = 0; y < BLOB_SIDE; y++) {
    for (let x = 0; x < BLOB_SIDE; x++) {
      map[y * BLOB_SIDE + x] = Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / twoR2);
    }
  }
  return map;
}

// The tables are the same for every call (the maps) or for every call with one seed (the noise):
// made once, not per call. A worker that draws its own synthetic images (`dtrain worker --dataset
// synthetic`) asks for 32 images a step, and remaking the tables took 2.5-3 ms of that step.
let maps: { stripes: Float32Array[]; blobs: Float32Array[] } | undefined;
let noise: { seed: number; table: Float32Array } | undefined;

function styleMaps(): { stripes: Float32Array[]; blobs: Float32Array[] } {
  maps ??= { stripes: STYLES.map(stripeMap), blobs: STYLES.map(blobMap) };
  return maps;
}

/** The last seed's table is kept: a process draws from one seed at a time. */
function noiseTable(seed: number): Float32Array {
  if (noise?.seed !== seed) noise = { seed, table: makeNoiseTable(seed) };
  return noise.table;
}

function makeNoiseTable(seed: number): Float32Array {
  const rng = new SeededRandom(mix32(seed | 0) ^ 0x7f4a7c15);
  const table = new Float32Array(NOISE_TABLE + IMAGE_BYTES);
  for (let i = 0; i < table.length; i += 2) {
    // Box-Muller: two independent normals from two uniforms; 1 - u keeps log away from 0.
    const radius = DIFFICULTY.noiseStd * Math.sqrt(-2 * Math.log(1 - rng.next()));
    const theta = 2 * Math.PI * rng.next();
    table[i] = radius * Math.cos(theta);
    table[i + 1] = radius * Math.sin(theta);
  }
  return table;
}
