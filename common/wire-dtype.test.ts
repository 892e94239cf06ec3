import { describe, expect, it } from 'vitest';
import {
  bfloat16BitsToFloat32,
  decodeTensor,
  decodeWeights,
  encodeTensor,
  encodeWeights,
  float16BitsToFloat32,
  float16BlockExponent,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
  FLOAT16_BLOCK,
  wireByteLength,
  WireDtypeError,
  type WireDtype,
} from './wire-dtype.ts';
import { SeededRandom } from './random.ts';

const f32 = (x: number) => Math.fround(x);

function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const rng = new SeededRandom(seed);
  const v = new Float32Array(n);
  // Magnitudes spread over many binades, both signs.
  for (let i = 0; i < n; i++) v[i] = (rng.next() < 0.5 ? -1 : 1) * scale * 2 ** (rng.next() * 20 - 10) * (1 + rng.next());
  return v;
}

function maxRelativeError(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / Math.abs(a[i]));
  return worst;
}

describe('float16 scalar conversion', () => {
  it('encodes exactly representable values exactly, including the extremes', () => {
    // 1 = 0x3c00, -2 = 0xc000, 65504 (largest) = 0x7bff, 2^-14 (smallest normal) = 0x0400, 2^-24 (smallest subnormal) = 0x0001
    expect(float32ToFloat16Bits(1)).toBe(0x3c00);
    expect(float32ToFloat16Bits(-2)).toBe(0xc000);
    expect(float32ToFloat16Bits(65504)).toBe(0x7bff);
    expect(float32ToFloat16Bits(2 ** -14)).toBe(0x0400);
    expect(float32ToFloat16Bits(2 ** -24)).toBe(0x0001);
    expect(float32ToFloat16Bits(-0)).toBe(0x8000);
    for (const h of [0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x03ff, 0x8001]) expect(float32ToFloat16Bits(float16BitsToFloat32(h))).toBe(h);
  });

  it('rounds halfway cases to even', () => {
    // Between 1 (0x3c00) and 1 + 2^-10 (0x3c01): 1 + 2^-11 is halfway -> even 0x3c00;
    // 1 + 3·2^-11 is halfway between 0x3c01 and 0x3c02 -> even 0x3c02.
    expect(float32ToFloat16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float32ToFloat16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(float32ToFloat16Bits(f32(1 + 2 ** -11 + 2 ** -20))).toBe(0x3c01);
    // Subnormals: 1.5 · 2^-24 is halfway between 0x0001 and 0x0002 -> 0x0002; 2^-25 halfway to 0 -> 0.
    expect(float32ToFloat16Bits(1.5 * 2 ** -24)).toBe(0x0002);
    expect(float32ToFloat16Bits(2 ** -25)).toBe(0x0000);
    expect(float32ToFloat16Bits(f32(2 ** -25 + 2 ** -35))).toBe(0x0001);
    // The largest subnormal plus a rounding carry becomes the smallest normal.
    expect(float32ToFloat16Bits(f32(2 ** -14 - 2 ** -26))).toBe(0x0400);
  });

  it('overflows to infinity only past 65520 (the rounding midpoint above 65504)', () => {
    expect(float32ToFloat16Bits(65519)).toBe(0x7bff);
    expect(float32ToFloat16Bits(65520)).toBe(0x7c00);
    expect(float32ToFloat16Bits(1e6)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-1e6)).toBe(0xfc00);
  });

  it('keeps NaN and infinities', () => {
    expect(float32ToFloat16Bits(Infinity)).toBe(0x7c00);
    expect(float32ToFloat16Bits(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN)))).toBe(true);
    expect(float16BitsToFloat32(0x7c00)).toBe(Infinity);
  });

  it('has relative error at most 2^-11 over the normal range', () => {
    const v = new Float32Array(20000);
    const rng = new SeededRandom(3);
    for (let i = 0; i < v.length; i++) v[i] = 2 ** (rng.next() * 29 - 14) * (rng.next() < 0.5 ? -1 : 1); // [2^-14, 2^15)
    const back = Float32Array.from(v, (x) => float16BitsToFloat32(float32ToFloat16Bits(x)));
    const err = maxRelativeError(v, back);
    expect(err).toBeLessThanOrEqual(2 ** -11);
    expect(err).toBeGreaterThan(2 ** -12); // the bound is tight: the rounding really happens
  });
});

describe('bfloat16 scalar conversion', () => {
  it('keeps the top 16 bits, rounding to nearest even', () => {
    expect(float32ToBfloat16Bits(1)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(-2)).toBe(0xc000);
    // 1 + 2^-8 is halfway between 1 (0x3f80) and 1 + 2^-7 (0x3f81) -> even 0x3f80; 1 + 3·2^-8 -> 0x3f82.
    expect(float32ToBfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(float32ToBfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(bfloat16BitsToFloat32(0x3f81)).toBe(1 + 2 ** -7);
  });

  it('keeps NaN, infinities and float32 subnormals; the largest float32 rounds to infinity', () => {
    expect(Number.isNaN(bfloat16BitsToFloat32(float32ToBfloat16Bits(NaN)))).toBe(true);
    expect(float32ToBfloat16Bits(-Infinity)).toBe(0xff80);
    expect(bfloat16BitsToFloat32(float32ToBfloat16Bits(2 ** -130))).toBe(2 ** -130);
    expect(float32ToBfloat16Bits(3.4028234663852886e38)).toBe(0x7f80);
  });

  it('has relative error at most 2^-8', () => {
    const v = randomValues(20000, 5, 1e20);
    const back = Float32Array.from(v, (x) => bfloat16BitsToFloat32(float32ToBfloat16Bits(x)));
    const err = maxRelativeError(v, back);
    expect(err).toBeLessThanOrEqual(2 ** -8);
    expect(err).toBeGreaterThan(2 ** -9);
  });
});

describe('tensor encoding', () => {
  it('takes 4, 2 and 2 bytes a value (float16 plus one exponent byte per block)', () => {
    expect(wireByteLength('float32', 1000)).toBe(4000);
    expect(wireByteLength('bfloat16', 1000)).toBe(2000);
    expect(wireByteLength('float16', 1000)).toBe(2000 + Math.ceil(1000 / FLOAT16_BLOCK));
    for (const dtype of ['float32', 'float16', 'bfloat16'] as WireDtype[]) expect(encodeTensor(randomValues(1000, 1), dtype).byteLength).toBe(wireByteLength(dtype, 1000));
  });

  it('round-trips float32 bit for bit', () => {
    const v = randomValues(777, 2);
    expect(decodeTensor(encodeTensor(v, 'float32'), 'float32', v.length)).toEqual(v);
  });

  it('decodes float32 bytes at any offset, into the output it is given', () => {
    const v = randomValues(301, 3);
    const bytes = encodeTensor(v, 'float32');
    for (const offset of [1, 2, 3, 4]) {
      const frame = new Uint8Array(bytes.byteLength + 8);
      frame.set(bytes, offset);
      const out = new Float32Array(v.length + 2).subarray(1, v.length + 1);
      expect(decodeTensor(frame.subarray(offset, offset + bytes.byteLength), 'float32', v.length, out)).toBe(out);
      expect(out).toEqual(v);
    }
  });

  it.each([
    ['float16', 2 ** -11],
    ['bfloat16', 2 ** -8],
  ] as const)('round-trips %s within its relative error bound, at any magnitude', (dtype, bound) => {
    for (const scale of [1e-6, 1, 1e4, 1e8]) {
      const v = randomValues(3000, 7, scale);
      const back = decodeTensor(encodeTensor(v, dtype), dtype, v.length);
      expect(maxRelativeError(v, back)).toBeLessThanOrEqual(bound);
    }
  });

  it('scales float16 blocks so gradient sums far beyond 65504 do not overflow', () => {
    // A sum over a large slice: values up to 3e6, which raw float16 would turn into Infinity.
    const v = randomValues(1000, 11, 3e3);
    expect(Math.max(...v.map(Math.abs))).toBeGreaterThan(65504);
    const back = decodeTensor(encodeTensor(v, 'float16'), 'float16', v.length);
    expect(back.every(Number.isFinite)).toBe(true);
    expect(maxRelativeError(v, back)).toBeLessThanOrEqual(2 ** -11);
  });

  it('keeps tiny gradients that raw float16 would flush to zero', () => {
    const v = Float32Array.from({ length: 300 }, (_, i) => (i + 1) * 1e-9);
    const back = decodeTensor(encodeTensor(v, 'float16'), 'float16', v.length);
    expect(back.every((x) => x > 0)).toBe(true);
    expect(maxRelativeError(v, back)).toBeLessThanOrEqual(2 ** -11);
  });

  it('picks the block exponent that maps the largest magnitude into [2^14, 2^15)', () => {
    for (const m of [1, 65504, 1e6, 3e-7, 2 ** 15 - 1e-3, 2 ** 20]) {
      const scaled = m * 2 ** float16BlockExponent(m);
      expect(scaled).toBeGreaterThanOrEqual(2 ** 14);
      expect(scaled).toBeLessThan(2 ** 15);
    }
    expect(float16BlockExponent(0)).toBe(0);
  });

  it.each(['float16', 'bfloat16'] as const)('%s passes NaN and infinities through, so the receiver can reject them', (dtype) => {
    const v = new Float32Array(FLOAT16_BLOCK + 3).fill(0.5);
    v[1] = NaN;
    v[2] = Infinity;
    v[FLOAT16_BLOCK + 1] = -Infinity;
    const back = decodeTensor(encodeTensor(v, dtype), dtype, v.length);
    expect(Number.isNaN(back[1])).toBe(true);
    expect(back[2]).toBe(Infinity);
    expect(back[FLOAT16_BLOCK + 1]).toBe(-Infinity);
    expect(back[0]).toBe(0.5); // the block's scale ignores the non-finite values
  });

  it('checks the byte length against the dtype before reading', () => {
    const bytes = encodeTensor(randomValues(100, 1), 'float16');
    expect(() => decodeTensor(bytes, 'float16', 101)).toThrow(WireDtypeError);
    expect(() => decodeTensor(bytes, 'bfloat16', 100)).toThrow(/Expected 200 bytes for 100 bfloat16 values, but got 201/);
    expect(() => decodeTensor(bytes.subarray(1), 'float16', 100)).toThrow(WireDtypeError);
  });

  it('decodes from unaligned bytes (msgpack does not align binary fields)', () => {
    const v = randomValues(50, 4);
    for (const dtype of ['float32', 'float16', 'bfloat16'] as WireDtype[]) {
      const enc = encodeTensor(v, dtype);
      const shifted = new Uint8Array(enc.byteLength + 1);
      shifted.set(enc, 1);
      expect(decodeTensor(shifted.subarray(1), dtype, v.length)).toEqual(decodeTensor(enc, dtype, v.length));
    }
  });
});

describe('weights on the wire', () => {
  it('sends the trainable head in the dtype and the BatchNorm statistics as exact float32', () => {
    const v = randomValues(600, 9);
    const bytes = encodeWeights(v, 500, 'float16');
    expect(bytes.byteLength).toBe(wireByteLength('float16', 500) + 100 * 4);
    const back = decodeWeights(bytes, 'float16', 600, 500);
    expect(back.subarray(500)).toEqual(v.subarray(500));
    expect(maxRelativeError(v.subarray(0, 500), back.subarray(0, 500))).toBeLessThanOrEqual(2 ** -11);
    expect(back.subarray(0, 500)).not.toEqual(v.subarray(0, 500));
  });

  it('refuses weights of the wrong size', () => {
    expect(() => decodeWeights(new Uint8Array(10), 'bfloat16', 600, 500)).toThrow(/Expected 1400 bytes of weights/);
  });
});
