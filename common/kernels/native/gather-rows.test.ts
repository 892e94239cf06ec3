import { describe, expect, it } from 'vitest';
import { loadNativeKernels } from './addon.ts';
import { requireNativeOrSkip } from './native-testing.ts';

const load = loadNativeKernels();
const native = requireNativeOrSkip(load);

/** `rows` rows of `rowBytes` bytes, each byte a function of its row and column. */
function source(rows: number, rowBytes: number): Uint8Array {
  const src = new Uint8Array(rows * rowBytes);
  for (let r = 0; r < rows; r++) for (let c = 0; c < rowBytes; c++) src[r * rowBytes + c] = (r * 31 + c * 7) & 255;
  return src;
}

describe.runIf(native)('the native row gather', () => {
  const gatherRows = load.loaded ? load.kernels.gatherRows : () => {};

  it('copies the named rows, in order and repeated, to shared memory after the offset, and nothing else', () => {
    const rowBytes = 3072;
    const src = source(9, rowBytes);
    const indices = Uint32Array.from([8, 0, 3, 3, 5]);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const dst = new Uint8Array(memory.buffer);
    dst.fill(0xee);
    const at = 100;
    gatherRows(dst, at, src, indices, rowBytes);
    const expected = new Uint8Array(dst.length).fill(0xee);
    indices.forEach((k, j) => expected.set(src.subarray(k * rowBytes, (k + 1) * rowBytes), at + j * rowBytes));
    expect(Buffer.from(dst).equals(Buffer.from(expected))).toBe(true);
  });

  it('refuses an index past the source and rows that do not fit, writing nothing', () => {
    const src = source(4, 16);
    const dst = new Uint8Array(64);
    expect(() => gatherRows(dst, 0, src, Uint32Array.from([1, 4]), 16)).toThrow('gatherRows: index 4 at position 1 is past src\'s 4 rows');
    expect(dst.every((b) => b === 0)).toBe(true);
    expect(() => gatherRows(dst, 32, src, Uint32Array.from([0, 1, 2]), 16)).toThrow('gatherRows: 3 rows of 16 bytes do not fit in dst after byte 32');
    expect(() => gatherRows(dst, 0.5, src, Uint32Array.from([0]), 16)).toThrow('expected a whole dstOffset inside dst');
    expect(() => gatherRows(dst, 0, src, Uint32Array.from([0]), 0)).toThrow('rowBytes of at least 1');
    expect(() => (gatherRows as (...a: unknown[]) => void)(dst, 0, src, [0], 16)).toThrow('gatherRows: expected (Uint8Array, offset, Uint8Array, Uint32Array, rowBytes)');
    expect(() => (gatherRows as (...a: unknown[]) => void)(new Float32Array(0), 0, src, Uint32Array.from([0]), 16)).toThrow('gatherRows: expected (Uint8Array, offset');
  });

  it('copies nothing for no indices, whatever the arrays\' sizes (N-API may give empty arrays no data pointer)', () => {
    const dst = new Uint8Array(8).fill(5);
    gatherRows(dst, 0, new Uint8Array(0), new Uint32Array(0), 16);
    gatherRows(new Uint8Array(0), 0, new Uint8Array(0), new Uint32Array(0), 3072);
    expect([...dst]).toEqual([5, 5, 5, 5, 5, 5, 5, 5]);
  });

  it('copies within one buffer, rows overlapping their target', () => {
    const buf = source(4, 8);
    const before = buf.slice();
    // Row 1 onto bytes 4..12, which overlap row 0 and row 1 themselves.
    gatherRows(buf.subarray(4), 0, buf, Uint32Array.from([1]), 8);
    expect([...buf.subarray(4, 12)]).toEqual([...before.subarray(8, 16)]);
    expect([...buf.subarray(0, 4)]).toEqual([...before.subarray(0, 4)]);
  });
});
