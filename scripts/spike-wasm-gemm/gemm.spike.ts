/**
 * The spike's GEMM and im2col against plain float64 JavaScript. Run by run.sh (not by `npm test`):
 * it builds gemm.c first and fails, rather than skips, where clang is missing.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { CONV_KERNELS, KBLOCK_KERNELS, MICRO_KERNELS, relaxedSimdAvailable, SpikeGemm, type Flavour } from './spike-gemm.ts';

beforeAll(() => {
  execFileSync('bash', [fileURLToPath(new URL('./build.sh', import.meta.url))], { stdio: 'pipe' });
});

function random(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/** float64 reference of act(A·B + bias) and, per element, Σ|a·b| + |bias| to scale the tolerance. */
function referenceGemm(a: Float32Array, b: Float32Array, bias: Float32Array | null, m: number, n: number, k: number, relu: boolean) {
  const c = new Float64Array(m * n), scale = new Float64Array(m * n);
  for (let i = 0; i < m; i++)
    for (let j = 0; j < n; j++) {
      let s = bias ? bias[j] : 0, t = Math.abs(s);
      for (let p = 0; p < k; p++) {
        s += a[i * k + p] * b[p * n + j];
        t += Math.abs(a[i * k + p] * b[p * n + j]);
      }
      c[i * n + j] = relu ? Math.max(0, s) : s;
      scale[i * n + j] = t;
    }
  return { c, scale };
}

function worstError(got: Float32Array, want: Float64Array, scale: Float64Array): number {
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]) / (scale[i] + 1e-30));
  return worst;
}

// [M, N, K]: tails in every direction (M mod MR, N below and between tiles), and the models' K.
const SHAPES: [number, number, number][] = [[1, 1, 1], [7, 6, 75], [13, 5, 3], [37, 16, 150], [29, 64, 288], [11, 33, 9], [64, 32, 27], [9, 20, 576]];

interface GemmCase { m: number; n: number; k: number; fused: boolean; seed: number }
type GemmRun = (g: SpikeGemm, a: number, b: number, bias: number, c: number, scratch: number) => void;

/** Runs one product on fresh operands (C prefilled with NaN) and checks it and the floats after C. */
async function checkGemm(flavour: Flavour, scratchFloats: number, { m, n, k, fused, seed }: GemmCase, run: GemmRun): Promise<void> {
  const g = await SpikeGemm.load(flavour);
  const [pa, pb, pbias, pc, ps] = [g.alloc(m * k), g.alloc(k * n), g.alloc(n), g.alloc(m * n + 16), g.alloc(scratchFloats)];
  const a = random(m * k, seed), b = random(k * n, seed + 1), bias = random(n, seed + 2);
  g.view(pa, m * k).set(a);
  g.view(pb, k * n).set(b);
  g.view(pbias, n).set(bias);
  g.view(pc, m * n + 16).fill(Number.NaN);
  run(g, pa, pb, fused ? pbias : -1, pc, ps);
  const { c, scale } = referenceGemm(a, b, fused ? bias : null, m, n, k, fused);
  expect(worstError(g.view(pc, m * n), c, scale)).toBeLessThan(1e-6);
  // Nothing written past C.
  expect(Array.from(g.view(pc + 4 * m * n, 16)).every(Number.isNaN)).toBe(true);
}

// [M, N, K, KC]: K-blocked products with several blocks, a last partial block, and one block.
const KBLOCK_SHAPES: [number, number, number, number][] = [[9, 20, 576, 64], [29, 64, 288, 100], [6, 6, 75, 256], [37, 16, 700, 256], [1, 1, 1, 1]];

for (const flavour of ['simd128', 'relaxed'] as Flavour[]) {
  describe(`gemm (${flavour})`, () => {
    it('loads in this Node (relaxed SIMD needs --experimental-wasm-relaxed-simd, set by vitest.config.ts)', () => {
      if (flavour === 'relaxed') expect(relaxedSimdAvailable()).toBe(true);
    });
    for (const kernel of MICRO_KERNELS)
      for (const [m, n, k] of SHAPES)
        for (const fused of [false, true])
          it(`${kernel}: ${m}×${k} · ${k}×${n}${fused ? ' + bias, relu' : ''} matches float64 within 1e-6 of Σ|a·b|`, () =>
            checkGemm(flavour, SpikeGemm.scratchFloats(kernel, n, k), { m, n, k, fused, seed: 1 }, (g, a, b, bias, c, ps) =>
              g.gemm(kernel, m, n, k, a, b, bias, c, fused, ps),
            ));
    for (const kernel of KBLOCK_KERNELS)
      for (const [m, n, k, kc] of KBLOCK_SHAPES)
        for (const fused of [false, true])
          it(`gemmk_${kernel}: ${m}×${k} · ${k}×${n} in K blocks of ${kc}${fused ? ' + bias, relu' : ''} matches float64 within 1e-6 of Σ|a·b|`, () =>
            checkGemm(flavour, SpikeGemm.scratchFloats(kernel, n, k), { m, n, k, fused, seed: 7 }, (g, a, b, bias, c, ps) =>
              g.gemmK(kernel, m, n, k, a, b, bias, c, fused, ps, kc),
            ));
  });
}

/** float64 valid NHWC convolution + bias + relu, and Σ|x·w| + |bias| per output for the tolerance. */
function referenceConv(x: Float32Array, f: Float32Array, bias: Float32Array, n: number, h: number, w: number, cin: number, kh: number, cout: number) {
  const ho = h - kh + 1, wo = w - kh + 1;
  const y = new Float64Array(n * ho * wo * cout), scale = new Float64Array(y.length);
  for (let b = 0; b < n; b++)
    for (let oy = 0; oy < ho; oy++)
      for (let ox = 0; ox < wo; ox++)
        for (let co = 0; co < cout; co++) {
          let s = bias[co], t = Math.abs(s);
          for (let ky = 0; ky < kh; ky++)
            for (let kx = 0; kx < kh; kx++)
              for (let ci = 0; ci < cin; ci++) {
                const p = x[((b * h + oy + ky) * w + ox + kx) * cin + ci] * f[((ky * kh + kx) * cin + ci) * cout + co];
                s += p;
                t += Math.abs(p);
              }
          const at = ((b * ho + oy) * wo + ox) * cout + co;
          y[at] = Math.max(0, s);
          scale[at] = t;
        }
  return { y, scale };
}

// [n, h, w, cin, k, cout]: 3×3 and 5×5 like the models', with output counts that leave row-tile tails.
const CONVS: [number, number, number, number, number, number][] = [[2, 8, 7, 3, 3, 5], [3, 14, 14, 6, 5, 16], [2, 9, 9, 32, 3, 64], [1, 7, 6, 3, 5, 6]];

describe('convolution', () => {
  for (const [n, h, w, cin, kh, cout] of CONVS) {
    const ho = h - kh + 1, wo = w - kh + 1, m = n * ho * wo, k = kh * kh * cin;
    const x = random(n * h * w * cin, 4), f = random(k * cout, 5), bias = random(cout, 6);
    const want = referenceConv(x, f, bias, n, h, w, cin, kh, cout);
    const setUp = async () => {
      const g = await SpikeGemm.load('simd128');
      const [px, pa, pf, pbias, py, ps] = [g.alloc(x.length), g.alloc(m * k), g.alloc(f.length), g.alloc(cout), g.alloc(m * cout), g.alloc(SpikeGemm.scratchFloats('6x2', cout, k))];
      g.view(px, x.length).set(x);
      g.view(pf, f.length).set(f);
      g.view(pbias, cout).set(bias);
      return { g, px, pa, pf, pbias, py, ps };
    };
    it(`im2col + gemm is the valid NHWC convolution of ${n}×${h}×${w}×${cin} with ${kh}×${kh}×${cin}×${cout}`, async () => {
      const { g, px, pa, pf, pbias, py, ps } = await setUp();
      g.im2col(px, pa, n, h, w, cin, kh, kh);
      g.gemm('6x2', m, cout, k, pa, pf, pbias, py, true, ps);
      expect(worstError(g.view(py, m * cout), want.y, want.scale)).toBeLessThan(1e-6);
    });
    for (const kernel of CONV_KERNELS)
      it(`conv_${kernel} (patches gathered per tile) is the same convolution of ${n}×${h}×${w}×${cin} with ${kh}×${kh}×${cin}×${cout}`, async () => {
        const { g, px, pf, pbias, py, ps } = await setUp();
        g.conv(kernel, px, pf, pbias, py, true, n, h, w, cin, kh, kh, cout, ps);
        expect(worstError(g.view(py, m * cout), want.y, want.scale)).toBeLessThan(1e-6);
      });
  }
});
