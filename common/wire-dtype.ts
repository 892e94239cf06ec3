/**
 * The number format of gradients and weights on the WebSocket wire (`--wire-dtype`), as Horovod's
 * fp16 compression and DDP's fp16/bf16 compression hooks: the coordinator keeps float32 master
 * weights and Adam state; only the bytes on the wire are narrower.
 *
 * - `float32`: raw little-endian float32, 4 bytes a value (the default; lossless).
 * - `bfloat16`: the top 16 bits of the float32, rounded to nearest even. float32's exponent range,
 *   8 significant bits: relative error at most 2^-8 (half an ulp) for normal values.
 * - `float16`: IEEE binary16, rounded to nearest even, 11 significant bits (relative error <= 2^-11
 *   in the normal range), but a range of only ±65504. Gradient *sums* of a large slice can exceed
 *   that, and small gradients fall into subnormals, so float16 tensors are **block-scaled**: every
 *   block of FLOAT16_BLOCK values carries one int8 exponent e, chosen so that the block's largest
 *   finite magnitude lands in [2^14, 2^15) after multiplying by 2^e. A power of two is exact, so the
 *   scaling itself adds no error, and a block can never overflow. Values down to 2^-29 of their
 *   block's largest keep the full 2^-11 bound; smaller ones become float16 subnormals (coarser,
 *   down to 2^-39 of the largest, then zero), which only matters next to much larger neighbours.
 *
 * Byte layout of one tensor of n values: float32 `n*4`; bfloat16 `n*2` (uint16 LE); float16 `n*2`
 * (uint16 LE) followed by `ceil(n / FLOAT16_BLOCK)` int8 exponents.
 *
 * NaN and ±Infinity stay NaN and ±Infinity (so the receiver's finiteness check still catches a
 * worker that diverged); values beyond a format's range round to ±Infinity, as IEEE says.
 */
import { DtrainError } from './errors.ts';

export const WIRE_DTYPES = ['float32', 'float16', 'bfloat16'] as const;
export type WireDtype = (typeof WIRE_DTYPES)[number];

/** Values per float16 scale exponent: 1 byte per 512 bytes of payload (0.2%). */
export const FLOAT16_BLOCK = 256;
/** A block's largest magnitude is scaled into [2^14, 2^15), well under float16's 65504. */
const FLOAT16_TARGET_EXPONENT = 14;

export class WireDtypeError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_WIRE_DTYPE', message, { expected: false });
  }
}

export function isWireDtype(v: unknown): v is WireDtype {
  return typeof v === 'string' && (WIRE_DTYPES as readonly string[]).includes(v);
}

/** Bytes that `count` values take on the wire in `dtype`. */
export function wireByteLength(dtype: WireDtype, count: number): number {
  if (dtype === 'float32') return count * 4;
  if (dtype === 'bfloat16') return count * 2;
  return count * 2 + Math.ceil(count / FLOAT16_BLOCK);
}

// ---- scalar conversions (shared scratch views: one float32 reinterpreted as uint32) -----------

const scratchF = new Float32Array(1);
const scratchU = new Uint32Array(scratchF.buffer);

/** float32 bits → binary16 bits, round to nearest even; NaN stays (quiet) NaN, overflow → ±Inf. */
export function float32BitsToFloat16Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  if (exp === 0xff) return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value = m × 2^-24 with m = (1.mant × 2^23) >> (14 - e), rounded to nearest even.
    const shift = 14 - e;
    if (shift > 24) return sign;
    const full = mant | 0x800000;
    const m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    return sign | (m + (rem > half || (rem === half && (m & 1) === 1) ? 1 : 0));
  }
  const h = sign | (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and 65520 and up becomes Infinity).
  return h + (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1) ? 1 : 0);
}

export function float32ToFloat16Bits(x: number): number {
  scratchF[0] = x;
  return float32BitsToFloat16Bits(scratchU[0]);
}

export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 bits → bfloat16 bits, round to nearest even; NaN stays (quiet) NaN, overflow → ±Inf. */
export function float32BitsToBfloat16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function float32ToBfloat16Bits(x: number): number {
  scratchF[0] = x;
  return float32BitsToBfloat16Bits(scratchU[0]);
}

export function bfloat16BitsToFloat32(h: number): number {
  scratchU[0] = (h & 0xffff) << 16;
  return scratchF[0];
}

// ---- tensors ------------------------------------------------------------------------------

let float16Table: Float32Array | undefined;
/** All 65,536 halves as float32: decoding is one table read a value. */
function halfTable(): Float32Array {
  if (!float16Table) {
    float16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) float16Table[h] = float16BitsToFloat32(h);
  }
  return float16Table;
}

/** The exponent e (int8) that scales a block whose largest finite magnitude is `maxAbs` into [2^14, 2^15). */
export function float16BlockExponent(maxAbs: number): number {
  if (!(maxAbs > 0) || !Number.isFinite(maxAbs)) return 0;
  const e = FLOAT16_TARGET_EXPONENT - Math.floor(Math.log2(maxAbs));
  // Math.log2 of a value just under a power of two can round up to it: check and step back.
  const scaled = maxAbs * 2 ** e;
  const fixed = scaled >= 2 ** (FLOAT16_TARGET_EXPONENT + 1) ? e - 1 : scaled < 2 ** FLOAT16_TARGET_EXPONENT ? e + 1 : e;
  return Math.max(-128, Math.min(127, fixed));
}

/** Encodes float32 values in `dtype` (layout in the module comment). float32 returns a view, not a copy. */
export function encodeTensor(values: Float32Array, dtype: WireDtype): Uint8Array {
  if (dtype === 'float32') return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const n = values.length;
  const out = new Uint8Array(wireByteLength(dtype, n));
  const halves = new Uint16Array(out.buffer, 0, n);
  const bits = new Uint32Array(values.buffer, values.byteOffset, n); // a Float32Array is always 4-byte aligned
  if (dtype === 'bfloat16') {
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      halves[i] = (b & 0x7fffffff) > 0x7f800000 ? ((b >>> 16) | 0x40) & 0xffff : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
    }
    return out;
  }
  const exponents = new Int8Array(out.buffer, n * 2);
  const scaled = new Float32Array(FLOAT16_BLOCK);
  const scaledBits = new Uint32Array(scaled.buffer);
  for (let b = 0, start = 0; start < n; b++, start += FLOAT16_BLOCK) {
    const end = Math.min(n, start + FLOAT16_BLOCK);
    let maxAbs = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(values[i]);
      if (a > maxAbs && a !== Infinity) maxAbs = a;
    }
    const e = float16BlockExponent(maxAbs);
    exponents[b] = e;
    const factor = 2 ** e;
    for (let i = start; i < end; i++) scaled[i - start] = values[i] * factor;
    for (let i = start; i < end; i++) {
      const b = scaledBits[i - start];
      const abs = b & 0x7fffffff;
      // Fast path, measured ~4x faster than the general conversion: a normal half ([2^-14, 2^16)).
      // Rounding is done on the float32 bits (a carry moves into the exponent, 65520 becomes Inf),
      // then the exponent is rebiased from 127 to 15 (112 << 10 = 0x1c000).
      if (abs >= 0x38800000 && abs < 0x47800000) halves[i] = ((b >>> 16) & 0x8000) | (((abs + 0xfff + ((abs >>> 13) & 1)) >>> 13) - 0x1c000);
      else halves[i] = float32BitsToFloat16Bits(b);
    }
  }
  return out;
}

/**
 * Decodes `count` values of `dtype`; the length is checked before anything is read. Copies into
 * `out` when given (reused buffers), else into a new array. NaN/Infinity pass through: the caller
 * decides whether they are allowed.
 */
export function decodeTensor(bytes: Uint8Array, dtype: WireDtype, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  const expected = wireByteLength(dtype, count);
  if (bytes.byteLength !== expected) throw new WireDtypeError(`Expected ${expected} bytes for ${count} ${dtype} values, but got ${bytes.byteLength}.`);
  if (out.length !== count) throw new WireDtypeError(`Expected an output of ${count} values, but got ${out.length}.`);
  if (dtype === 'float32') {
    // Byte for byte into `out`: an unaligned input needs no aligned copy of its own first.
    new Uint8Array(out.buffer, out.byteOffset, expected).set(bytes);
    return out;
  }
  const halves = bytes.byteOffset % 2 === 0 ? new Uint16Array(bytes.buffer, bytes.byteOffset, count) : new Uint16Array(copyBytes(bytes, 0, count * 2).buffer);
  if (dtype === 'bfloat16') {
    const outBits = new Uint32Array(out.buffer, out.byteOffset, count);
    for (let i = 0; i < count; i++) outBits[i] = halves[i] << 16;
    return out;
  }
  const table = halfTable();
  const exponents = new Int8Array(bytes.buffer, bytes.byteOffset + count * 2, Math.ceil(count / FLOAT16_BLOCK));
  for (let b = 0, start = 0; start < count; b++, start += FLOAT16_BLOCK) {
    const end = Math.min(count, start + FLOAT16_BLOCK);
    const factor = 2 ** -exponents[b];
    for (let i = start; i < end; i++) out[i] = table[halves[i]] * factor;
  }
  return out;
}

function copyBytes(bytes: Uint8Array, from: number, to: number): Uint8Array {
  const copy = new Uint8Array(to - from);
  copy.set(bytes.subarray(from, to));
  return copy;
}

/**
 * Weights on the wire: the first `headCount` values (the trainable weights) in `dtype`, the rest
 * (BatchNorm moving statistics) always float32. The statistics are few (448 values for cnn-bn) and
 * are fed back into the master copy every step, where rounding them would drift.
 */
export function weightsByteLength(dtype: WireDtype, total: number, headCount: number): number {
  return wireByteLength(dtype, headCount) + (total - headCount) * 4;
}

export function encodeWeights(values: Float32Array, headCount: number, dtype: WireDtype): Uint8Array {
  if (dtype === 'float32') return encodeTensor(values, 'float32');
  const head = encodeTensor(values.subarray(0, headCount), dtype);
  const tail = values.subarray(headCount);
  const out = new Uint8Array(head.byteLength + tail.byteLength);
  out.set(head);
  out.set(new Uint8Array(tail.buffer, tail.byteOffset, tail.byteLength), head.byteLength);
  return out;
}

export function decodeWeights(bytes: Uint8Array, dtype: WireDtype, total: number, headCount: number): Float32Array {
  const expected = weightsByteLength(dtype, total, headCount);
  if (bytes.byteLength !== expected) throw new WireDtypeError(`Expected ${expected} bytes of weights (${headCount} ${dtype} + ${total - headCount} float32), but got ${bytes.byteLength}.`);
  const out = new Float32Array(total);
  const headBytes = wireByteLength(dtype, headCount);
  decodeTensor(bytes.subarray(0, headBytes), dtype, headCount, out.subarray(0, headCount));
  decodeTensor(bytes.subarray(headBytes), 'float32', total - headCount, out.subarray(headCount));
  return out;
}
