/** What the conv backprop kernels share: padding in tfjs's explicit form, the stride test, parts. */
import { pair, type KernelRef } from './wasm-backend.ts';

export type ExplicitPadding = [[number, number], [number, number], [number, number], [number, number]];

export function padding(top: number, bottom: number, left: number, right: number): ExplicitPadding {
  return [[0, 0], [top, bottom], [left, right], [0, 0]];
}

export function stridesAreOne(strides: number | [number, number]): boolean {
  const [sh, sw] = pair(strides);
  return sh === 1 && sw === 1;
}

/** The stock wasm kernels the conv backprop kernels are built from, looked up once at install time. */
export interface ConvParts {
  conv2d: KernelRef;
  transpose: KernelRef;
  batchMatMul: KernelRef;
}

/** A stride-1 convolution's sizes: x [n,h,w,cin], dy [n,ho,wo,cout], filter [kh,kw,cin,cout]. */
export interface ConvGeometry {
  n: number;
  h: number;
  w: number;
  cin: number;
  ho: number;
  wo: number;
  cout: number;
  kh: number;
  kw: number;
  /** Forward padding before the first row and column; after the last follows from the sizes. */
  top: number;
  left: number;
}
