/**
 * The sum of squares of a float32 region of a WebAssembly memory, accumulated in float64, as a SIMD
 * loop: the shared-memory step's compute threads take the norm of the gradient sums they have just
 * written (coordinator/result-check.ts judges it) for a few percent of a step's time. float64,
 * because a float32 sum of squares of values near 1e19 overflows, and an overflow must read as an
 * absurd norm, not as Infinity from an honest slice; a NaN or an Infinity anywhere makes the sum NaN
 * or Infinity, so one pass also says whether every value is finite.
 *
 * Signature: sumSquares(bytes, at) → f64 over `bytes` bytes (a multiple of 16) from byte offset `at`.
 * Lanes are summed in another order than `sumSquares` in JavaScript: the two agree to rounding.
 */
import { instantiateOverMemory, kernelModule, leb } from './adam-simd.ts';

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const tee = (i: number) => [0x22, i];
const i32add = [0x6a];
const i32const = (n: number) => [0x41, ...leb(n)];
const geU = [0x4f];
const load = [0xfd, 0x00, 0x02, 0x00];
const shuffle = (lanes: number[]) => [0xfd, 0x0d, ...lanes];
const promoteLow = [0xfd, 0x5f];
const f64x2add = [0xfd, 0xf0, 0x01];
const f64x2mul = [0xfd, 0xf2, 0x01];
const extractLane = (lane: number) => [0xfd, 0x21, lane];
const f64add = [0xa0];
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

// Parameters: 0 bytes, 1 at. Locals: 2 i; 3-4 the two float64x2 accumulators, 5 the loaded lanes, 6 a promoted half.
const [BYTES, AT] = [0, 1];
const [I, ACC0, ACC1, X, T] = [2, 3, 4, 5, 6];

/** acc += half² for lanes 0-1 (half 0) or 2-3 (half 1) of X, promoted to float64. */
const accumulate = (half: number, acc: number) => [
  ...get(X), ...(half ? [...get(X), ...shuffle([...range(8, 8), ...range(0, 8)])] : []), ...promoteLow, ...tee(T), ...get(T), ...f64x2mul,
  ...get(acc), ...f64x2add, ...set(acc),
];

/** `wide`: the region holds float64 values (a reduction grain's slots), two per 16 bytes. */
function body(wide: boolean): number[] {
  const code = [
    0x02, 0x40, 0x03, 0x40, // block, loop
    ...get(I), ...get(BYTES), ...geU, 0x0d, 0x01,
    ...get(AT), ...get(I), ...i32add, ...load, ...set(X),
    ...(wide ? [...get(X), ...get(X), ...f64x2mul, ...get(ACC0), ...f64x2add, ...set(ACC0)] : [...accumulate(0, ACC0), ...accumulate(1, ACC1)]),
    ...get(I), ...i32const(16), ...i32add, ...set(I),
    0x0c, 0x00, 0x0b, 0x0b, // continue; end loop; end block
    ...get(ACC0), ...get(ACC1), ...f64x2add, ...tee(ACC0), ...extractLane(0), ...get(ACC0), ...extractLane(1), ...f64add,
    0x0b, // end function
  ];
  const fn = [0x02, 0x01, I32, 0x04, V128, ...code];
  return [...leb(fn.length), ...fn];
}

function moduleBytes(shared: boolean, wide = false): Uint8Array<ArrayBuffer> {
  return kernelModule(shared, [0x01, 0x60, 2, I32, I32, 1, F64], 'sumSquares', body(wide));
}

export type SumSquaresKernel = (bytes: number, at: number) => number;

const compiled = new Map<boolean, WebAssembly.Module | null>();
const compiledWide = new Map<boolean, WebAssembly.Module | null>();

/**
 * The kernel over `memory`, or undefined where WebAssembly SIMD is not available. `wide`: over
 * float64 values (`bytes` still a multiple of 16).
 */
export function simdSumSquaresKernel(memory: WebAssembly.Memory, shared = false, wide = false): SumSquaresKernel | undefined {
  if (wide) return instantiateOverMemory(compiledWide, (sh) => moduleBytes(sh, true), memory, shared, 'sumSquares') as SumSquaresKernel | undefined;
  return instantiateOverMemory(compiled, moduleBytes, memory, shared, 'sumSquares') as SumSquaresKernel | undefined;
}

/** The same sum in JavaScript (float64), where SIMD is not used. */
export function sumSquares(values: Float32Array | Float64Array): number {
  let sq = 0;
  for (let i = 0; i < values.length; i++) sq += values[i] * values[i];
  return sq;
}
