/**
 * Adam's update as a WebAssembly SIMD loop (four float32 lanes at a time), for the coordinator's
 * hot path. The scalar JavaScript loop costs ~10 ns per parameter, mostly the square root and the
 * division; SIMD does four of each at once. The module is assembled here from its bytes, so there
 * is no build step and no binary file: it is small enough to read.
 *
 * Signature: adam(bytes, w, g, m, v, wOut, mOut, vOut, b1, b2, 1-b1, 1-b2, lr/(1-b1^t),
 * 1/sqrt(1-b2^t), eps) over `bytes` bytes (a multiple of 16) of each array, at byte offsets in the
 * memory. It reads w, m, v and writes wOut, mOut, vOut: the same offsets update in place, distinct
 * ones leave the inputs intact (the shared-memory step keeps two copies, so a stripe whose thread
 * died can be redone). Each lane is independent, so any split into 16-byte stripes gives the same
 * bits as one call over everything.
 */

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;

export function leb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...leb(body.length), ...body];
}

function name(s: string): number[] {
  return [...leb(s.length), ...Buffer.from(s, 'ascii')];
}

// Opcodes (core and the SIMD proposal's 0xfd prefix).
const get = (i: number) => [0x20, i];
const set = (i: number) => [0x21, i];
const tee = (i: number) => [0x22, i];
const i32add = [0x6a];
const load = [0xfd, 0x00, 0x02, 0x00]; // v128.load, align 4 bytes, offset 0
const store = [0xfd, 0x0b, 0x02, 0x00]; // v128.store
const splat = [0xfd, 0x13]; // f32x4.splat
const sqrt = [0xfd, 0xe3, 0x01];
const add = [0xfd, 0xe4, 0x01];
const sub = [0xfd, 0xe5, 0x01];
const mul = [0xfd, 0xe6, 0x01];
const div = [0xfd, 0xe7, 0x01];

// Parameters 0-14 as in the signature; local 15 is the byte index; 16-22 the splatted scalars
// (b1, b2, a1, a2, step, sc2, eps); 23-25 hold g, the new m and the new v of the current lanes.
const [BYTES, W, G, M, V, W_OUT, M_OUT, V_OUT] = [0, 1, 2, 3, 4, 5, 6, 7];
const I = 15;
const [B1, B2, A1, A2, STEP, SC2, EPS] = [16, 17, 18, 19, 20, 21, 22];
const [G4, M4, V4] = [23, 24, 25];
const at = (base: number) => [...get(base), ...get(I), ...i32add];

function body(): number[] {
  const code = [
    ...[8, 9, 10, 11, 12, 13, 14].flatMap((p, k) => [...get(p), ...splat, ...set(B1 + k)]),
    0x02, 0x40, // block
    0x03, 0x40, // loop
    ...get(I), ...get(BYTES), 0x4f, 0x0d, 0x01, // if i >= bytes: break
    ...at(G), ...load, ...set(G4),
    // m = b1·m + (1−b1)·g
    ...at(M_OUT), ...get(B1), ...at(M), ...load, ...mul, ...get(A1), ...get(G4), ...mul, ...add, ...tee(M4), ...store,
    // v = b2·v + (1−b2)·g²
    ...at(V_OUT), ...get(B2), ...at(V), ...load, ...mul, ...get(A2), ...get(G4), ...get(G4), ...mul, ...mul, ...add, ...tee(V4), ...store,
    // w −= step·m / (sqrt(v)·sc2 + ε)
    ...at(W_OUT), ...at(W), ...load, ...get(STEP), ...get(M4), ...mul, ...get(V4), ...sqrt, ...get(SC2), ...mul, ...get(EPS), ...add, ...div, ...sub, ...store,
    ...get(I), 0x41, 0x10, ...i32add, ...set(I), // i += 16
    0x0c, 0x00, // continue
    0x0b, // end loop
    0x0b, // end block
    0x0b, // end function
  ];
  const locals = [0x02, 0x01, I32, 0x0a, V128];
  const fn = [...locals, ...code];
  return [...leb(fn.length), ...fn];
}

/** A shared memory import must declare a maximum: the largest a wasm32 memory can be. */
const MAX_PAGES = 65536;

/** The import section: env.memory, shared (with that maximum) or not. */
function memoryImport(shared: boolean): number[] {
  const limits = shared ? [0x03, 0x01, ...leb(MAX_PAGES)] : [0x00, 0x01];
  return [0x01, ...name('env'), ...name('memory'), 0x02, ...limits];
}

/**
 * A module of one function over env.memory (shared or not), exported as `exportName`: `type` is the
 * type section's body, `code` the function's size-prefixed body. Each SIMD kernel is one of these.
 */
export function kernelModule(shared: boolean, type: number[], exportName: string, code: number[]): Uint8Array<ArrayBuffer> {
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, type),
    ...section(2, memoryImport(shared)),
    ...section(3, [0x01, 0x00]),
    ...section(7, [0x01, ...name(exportName), 0x00, 0x00]),
    ...section(10, [0x01, ...code]),
  ]);
}

function moduleBytes(shared: boolean): Uint8Array<ArrayBuffer> {
  return kernelModule(shared, [0x01, 0x60, 15, ...Array(8).fill(I32), ...Array(7).fill(F32), 0x00], 'adam', body());
}

export type AdamKernel = (
  bytes: number, w: number, g: number, m: number, v: number, wOut: number, mOut: number, vOut: number,
  b1: number, b2: number, a1: number, a2: number, step: number, sc2: number, eps: number,
) => void;

/**
 * Instantiates a hand-assembled SIMD module over `memory` and returns its export `exportName`, or
 * undefined where WebAssembly SIMD is not available. The module is compiled once per memory kind
 * (`shared`: the memory was created with `shared: true` and a maximum) and cached in `compiled`.
 */
export function instantiateOverMemory(
  compiled: Map<boolean, WebAssembly.Module | null>,
  moduleBytesFor: (shared: boolean) => Uint8Array<ArrayBuffer>,
  memory: WebAssembly.Memory,
  shared: boolean,
  exportName: string,
): unknown {
  let module = compiled.get(shared);
  if (module === undefined) {
    const bytes = moduleBytesFor(shared);
    module = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
    compiled.set(shared, module);
  }
  if (!module) return undefined;
  return new WebAssembly.Instance(module, { env: { memory } }).exports[exportName];
}

const compiled = new Map<boolean, WebAssembly.Module | null>();

/**
 * The kernel over `memory`, or undefined where WebAssembly SIMD is not available. `shared`: the
 * memory was created with `shared: true` (and a maximum), so compute threads can all use it.
 */
export function simdAdamKernel(memory: WebAssembly.Memory, shared = false): AdamKernel | undefined {
  return instantiateOverMemory(compiled, moduleBytes, memory, shared, 'adam') as AdamKernel | undefined;
}
