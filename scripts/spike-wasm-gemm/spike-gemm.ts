/**
 * Loads the spike's wasm32 GEMM (gemm.c, built by build.sh) and gives it a bump allocator over its
 * own memory. Spike code for issue #11 route 2: nothing in the product imports it.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const MICRO_KERNELS = ['4x2', '5x2', '6x2', '8x2', '2x4', '3x4', '4x4'] as const;
export type MicroKernel = (typeof MICRO_KERNELS)[number];
/** The micro-kernels gemm.c also builds a K-blocked GEMM (gemmk_*) for. */
export const KBLOCK_KERNELS = ['4x2', '2x4'] as const satisfies readonly MicroKernel[];
export type KBlockKernel = (typeof KBLOCK_KERNELS)[number];
/** The micro-kernels gemm.c also builds a gathered convolution (conv_*) for. */
export const CONV_KERNELS = ['4x2', '2x4', '4x4', '6x2'] as const satisfies readonly MicroKernel[];
export type ConvKernel = (typeof CONV_KERNELS)[number];
export type Flavour = 'simd128' | 'relaxed';

type GemmFn = (m: number, n: number, k: number, a: number, b: number, bias: number, c: number, relu: number, scratch: number) => void;

type GemmKFn = (m: number, n: number, k: number, a: number, b: number, bias: number, c: number, relu: number, scratch: number, kc: number) => void;
type ConvFn = (x: number, filter: number, bias: number, y: number, relu: number, n: number, h: number, w: number, c: number, kh: number, kw: number, cout: number, scratch: number) => void;

interface Exports {
  memory: WebAssembly.Memory;
  heap_base(): number;
  clock_probe(n: number, y: number, z: number): number;
  im2col_nhwc(x: number, a: number, n: number, h: number, w: number, c: number, kh: number, kw: number): void;
  [name: `gemm_${string}`]: GemmFn;
  [name: `conv_${string}`]: ConvFn;
  [name: `gemmk_${string}`]: GemmKFn;
}

export function wasmPath(flavour: Flavour): string {
  return fileURLToPath(new URL(`./build/gemm-${flavour}.wasm`, import.meta.url));
}

/** "4x2" is 4 rows by 2 f32x4 vectors: a 4×8 tile. */
export function tileOf(kernel: MicroKernel): { rows: number; cols: number } {
  const [rows, vectors] = kernel.split('x').map(Number);
  return { rows, cols: 4 * vectors };
}

/** Is relaxed SIMD on in this V8? (Node 20: only with --experimental-wasm-relaxed-simd.) */
export function relaxedSimdAvailable(): boolean {
  try {
    return WebAssembly.validate(readFileSync(wasmPath('relaxed')));
  } catch {
    return false;
  }
}

export class SpikeGemm {
  private next: number;

  private constructor(private readonly exports: Exports, readonly flavour: Flavour) {
    this.next = align(exports.heap_base());
  }

  static async load(flavour: Flavour): Promise<SpikeGemm> {
    const { instance } = await WebAssembly.instantiate(readFileSync(wasmPath(flavour)), {});
    return new SpikeGemm(instance.exports as unknown as Exports, flavour);
  }

  get memory(): WebAssembly.Memory {
    return this.exports.memory;
  }

  /** Byte offset of `floats` fresh float32s (64-byte aligned); grows the memory as needed. */
  alloc(floats: number): number {
    const at = this.next;
    this.next = align(at + 4 * floats);
    const missing = this.next - this.exports.memory.buffer.byteLength;
    if (missing > 0) this.exports.memory.grow(Math.ceil(missing / 65536));
    return at;
  }

  /** A view of `floats` float32s at byte offset `at` (make a new one after any alloc: growing detaches). */
  view(at: number, floats: number): Float32Array {
    return new Float32Array(this.exports.memory.buffer, at, floats);
  }

  /** Scratch floats gemm needs for an M×K by K×N product with this micro-kernel. */
  static scratchFloats(kernel: MicroKernel, n: number, k: number): number {
    const { rows, cols } = tileOf(kernel);
    const panels = Math.ceil(n / cols);
    return panels * k * cols + panels * cols + rows * k + rows * n;
  }

  /** C = act(A·B + bias); offsets in bytes, bias −1 for none. */
  gemm(kernel: MicroKernel, m: number, n: number, k: number, a: number, b: number, bias: number, c: number, relu: boolean, scratch: number): void {
    this.exports[`gemm_${kernel}`](m, n, k, a, b, bias < 0 ? 0 : bias, c, relu ? 1 : 0, scratch);
  }

  /** 32·n cycles of dependent integer operations (see gemm.c). */
  clockProbe(n: number): number {
    return this.exports.clock_probe(n, 12345, 678);
  }

  /** As gemm, with K in blocks of kc (scratch as gemm's). */
  gemmK(kernel: KBlockKernel, m: number, n: number, k: number, a: number, b: number, bias: number, c: number, relu: boolean, scratch: number, kc: number): void {
    this.exports[`gemmk_${kernel}`](m, n, k, a, b, bias < 0 ? 0 : bias, c, relu ? 1 : 0, scratch, kc);
  }

  /** y = act(conv(x, filter) + bias), stride 1, valid, NHWC, patches gathered per row tile (no im2col matrix). */
  conv(kernel: ConvKernel, x: number, filter: number, bias: number, y: number, relu: boolean, n: number, h: number, w: number, c: number, kh: number, kw: number, cout: number, scratch: number): void {
    this.exports[`conv_${kernel}`](x, filter, bias < 0 ? 0 : bias, y, relu ? 1 : 0, n, h, w, c, kh, kw, cout, scratch);
  }

  /** Batch-level im2col of a stride-1 valid NHWC convolution into A [n·ho·wo, kh·kw·c]. */
  im2col(x: number, a: number, n: number, h: number, w: number, c: number, kh: number, kw: number): void {
    this.exports.im2col_nhwc(x, a, n, h, w, c, kh, kw);
  }
}

function align(byte: number): number {
  return Math.ceil(byte / 64) * 64;
}
