/**
 * The shared-memory step's gradient reduction as a WebAssembly SIMD loop: for four lanes at a time,
 * sum the slots' gradient sums in slot order in float32 (starting from 0), then multiply by 1/count
 * in float64 and round to float32. That is, bit for bit, what coordinator/aggregate.ts does in
 * JavaScript (`gradient[i] += g[i]` on a Float32Array, then `gradient[i] *= inv` with a float64
 * `inv`), about five times faster than the JavaScript loop.
 *
 * Signature: reduce(bytes, g, stride, slots, out, inv) over `bytes` bytes (a multiple of 16): slot k's
 * lanes are at byte offset g + k·stride, the result goes to out.
 */
import { instantiateOverMemory, kernelModule, leb } from './adam-simd.ts';

const I32 = 0x7f;
const F64 = 0x7c;
const V128 = 0x7b;

const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const i32add = [0x6a];
const i32const = (n: number) => [0x41, ...leb(n)];
const geU = [0x4f];
const load = [0xfd, 0x00, 0x02, 0x00];
const store = [0xfd, 0x0b, 0x02, 0x00];
const zero = [0xfd, 0x0c, ...new Array(16).fill(0)];
const shuffle = (lanes: number[]) => [0xfd, 0x0d, ...lanes];
const f32add = [0xfd, 0xe4, 0x01];
const f64splat = [0xfd, 0x14];
const f64mul = [0xfd, 0xf2, 0x01];
const promoteLow = [0xfd, 0x5f];
const demoteZero = [0xfd, 0x5e];
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

// Parameters: 0 bytes, 1 g, 2 stride, 3 slots, 4 out, 5 inv (f64). Locals: 6 i, 7 p, 8 k; 9 the
// float32 sum, 10 inv splatted.
const [BYTES, G, STRIDE, SLOTS, OUT, INV] = [0, 1, 2, 3, 4, 5];
const [I, P, K, ACC, INVV] = [6, 7, 8, 9, 10];

/** The two float64 lanes of `half` (0: lanes 0-1, 1: lanes 2-3) times inv, rounded to float32 (in lanes 0-1). */
const scaled = (half: number) => [...get(ACC), ...(half ? [...get(ACC), ...shuffle([...range(8, 8), ...range(0, 8)])] : []), ...promoteLow, ...get(INVV), ...f64mul, ...demoteZero];

/**
 * The loop both kernels share: for every 16 output bytes at i, `init` the accumulators, set p from
 * `pointer`, run `perSlot` for each slot (p advancing by the stride), then store `result` (which
 * leaves one v128) at out + i. inv is splatted into local `invLocal` first.
 */
function reduceLoop(invLocal: number, parts: { init: number[]; pointer: number[]; perSlot: number[]; result: number[] }): number[] {
  return [
    ...get(INV), ...f64splat, ...set(invLocal),
    0x02, 0x40, 0x03, 0x40, // block, loop over output lanes
    ...get(I), ...get(BYTES), ...geU, 0x0d, 0x01,
    ...parts.init,
    ...parts.pointer, ...set(P),
    ...i32const(0), ...set(K),
    0x02, 0x40, 0x03, 0x40, // block, loop over slots
    ...get(K), ...get(SLOTS), ...geU, 0x0d, 0x01,
    ...parts.perSlot,
    ...get(P), ...get(STRIDE), ...i32add, ...set(P),
    ...get(K), ...i32const(1), ...i32add, ...set(K),
    0x0c, 0x00, 0x0b, 0x0b, // continue; end loop; end block
    ...get(OUT), ...get(I), ...i32add, ...parts.result, ...store,
    ...get(I), ...i32const(16), ...i32add, ...set(I),
    0x0c, 0x00, 0x0b, 0x0b, // continue; end loop; end block
    0x0b, // end function
  ];
}

/** Lanes 0-1 of `lo` and of `hi`, as one vector. */
const joinHalves = shuffle([...range(0, 8), ...range(16, 8)]);

function body(): number[] {
  const code = reduceLoop(INVV, {
    init: [...zero, ...set(ACC)],
    pointer: [...get(G), ...get(I), ...i32add],
    perSlot: [...get(ACC), ...get(P), ...load, ...f32add, ...set(ACC)],
    result: [...scaled(0), ...scaled(1), ...joinHalves],
  });
  const fn = [0x02, 0x03, I32, 0x02, V128, ...code];
  return [...leb(fn.length), ...fn];
}

function moduleBytes(shared: boolean): Uint8Array<ArrayBuffer> {
  return kernelModule(shared, [0x01, 0x60, 6, ...Array(5).fill(I32), F64, 0x00], 'reduce', body());
}

export type ReduceKernel = (bytes: number, g: number, stride: number, slots: number, out: number, inv: number) => void;

const compiled = new Map<boolean, WebAssembly.Module | null>();

/** The kernel over `memory`, or undefined where WebAssembly SIMD is not available. */
export function simdReduceKernel(memory: WebAssembly.Memory, shared = false): ReduceKernel | undefined {
  return instantiateOverMemory(compiled, moduleBytes, memory, shared, 'reduce') as ReduceKernel | undefined;
}

/*
 * The float64 variant, for the slots of a reduction grain (common/reduce-grain.ts): the same loop
 * over slots with two f64x2 accumulators per four outputs, starting from 0 and adding in slot order,
 * then times inv and rounded to float32 once: bit for bit step-stripe.ts's reduceWide.
 * Signature: reduceWide(bytes, g, stride, slots, out, inv): `bytes` output bytes (a multiple of 16);
 * slot k's float64 lanes for output byte i are at g + k·stride + 2i.
 */
const f64add = [0xfd, 0xf0, 0x01];
const loadAt = (offset: number) => [0xfd, 0x00, 0x03, ...leb(offset)];
// Locals after the six parameters: 6 i, 7 p, 8 k; 9-10 the two accumulators, 11 inv splatted.
const [ACC_LO, ACC_HI, INV_W] = [9, 10, 11];

function wideBody(): number[] {
  const half = (acc: number) => [...get(acc), ...get(INV_W), ...f64mul, ...demoteZero];
  const code = reduceLoop(INV_W, {
    init: [...zero, ...set(ACC_LO), ...zero, ...set(ACC_HI)],
    // Slot values are 8 bytes: output byte i reads from g + 2i.
    pointer: [...get(G), ...get(I), ...i32add, ...get(I), ...i32add],
    perSlot: [...get(ACC_LO), ...get(P), ...loadAt(0), ...f64add, ...set(ACC_LO), ...get(ACC_HI), ...get(P), ...loadAt(16), ...f64add, ...set(ACC_HI)],
    result: [...half(ACC_LO), ...half(ACC_HI), ...joinHalves],
  });
  const fn = [0x02, 0x03, I32, 0x03, V128, ...code];
  return [...leb(fn.length), ...fn];
}

function wideModuleBytes(shared: boolean): Uint8Array<ArrayBuffer> {
  return kernelModule(shared, [0x01, 0x60, 6, ...Array(5).fill(I32), F64, 0x00], 'reduceWide', wideBody());
}

const compiledWide = new Map<boolean, WebAssembly.Module | null>();

/** The float64 kernel over `memory`, or undefined where WebAssembly SIMD is not available. */
export function simdWideReduceKernel(memory: WebAssembly.Memory, shared = false): ReduceKernel | undefined {
  return instantiateOverMemory(compiledWide, wideModuleBytes, memory, shared, 'reduceWide') as ReduceKernel | undefined;
}
