/**
 * Issue #11 route 2 spike: GFLOP/s of the C → wasm32 SIMD128 GEMM (gemm.c) against XNNPACK
 * (tfjs-backend-wasm, one thread) and oneDNN (our native addon, one thread) on the models' layers
 * at one batch size: each convolution whole (ours: im2col + GEMM, or patches gathered per row tile)
 * and as its im2col GEMM, with bias and ReLU fused as the models do; training's two other GEMMs per
 * convolution, unfused (filter gradient Pᵀ·dY, input gradient dY·Wᵀ); two Dense layers.
 *
 *   node --experimental-wasm-relaxed-simd --import tsx scripts/spike-wasm-gemm/bench.ts [--batch 32] [--reps 11] [--only 'cnn conv2d_1'] [--json out.json]
 *
 * (run.sh does this after building and testing.) Each repetition runs each implementation for about
 * `--rep-ms` milliseconds; implementations are interleaved within a repetition, in rotating order,
 * and the table gives the median per call over the repetitions by the process's CPU time (wall time
 * beside it), with the load average around them. GFLOP/s are by CPU time.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs-core';
import { getThreadsCount, setThreadsCount } from '@tensorflow/tfjs-backend-wasm';
import { loadNativeKernels } from '../../common/kernels/native/addon.ts';
import { CONV_KERNELS, KBLOCK_KERNELS, MICRO_KERNELS, relaxedSimdAvailable, SpikeGemm, tileOf, type ConvKernel, type Flavour, type KBlockKernel, type MicroKernel } from './spike-gemm.ts';

/**
 * FLOP per cycle of this core (Zen 5, docs/kernels.md): AVX-512, two 16-lane FMA pipes, 64; SIMD128
 * a quarter of that width, 16: two 4-lane FMAs (relaxed_madd), or two multiplies on the FMA pipes
 * and two adds on Zen's separate FADD pipes. Peaks are these times the clock: the nominal 2.6 GHz
 * the VM reports (docs/kernels.md's 166 GFLOP/s) and the clock measured by clock_probe.
 */
const AVX512_FLOP_PER_CYCLE = 64, SIMD128_FLOP_PER_CYCLE = 16, NOMINAL_GHZ = 2.6;

interface Conv { name: string; h: number; w: number; cin: number; k: number; cout: number }
interface Dense { name: string; kk: number; n: number }
/** One GEMM: M×K · K×N, bias + ReLU fused or not, and the convolution it is the forward of. */
interface Shape { name: string; m: number; kk: number; n: number; fused: boolean; conv?: Conv }

// From common/models.ts: valid 3×3 / 5×5 convolutions, stride 1, on the pooled maps.
const CONVS: Conv[] = [
  { name: 'lenet conv2d', h: 32, w: 32, cin: 3, k: 5, cout: 6 },
  { name: 'lenet conv2d_1', h: 14, w: 14, cin: 6, k: 5, cout: 16 },
  { name: 'cnn conv2d', h: 32, w: 32, cin: 3, k: 3, cout: 32 },
  { name: 'cnn conv2d_1', h: 15, w: 15, cin: 32, k: 3, cout: 64 },
  { name: 'cnn conv2d_2', h: 6, w: 6, cin: 64, k: 3, cout: 64 },
];
// Two Dense layers as GEMMs only (M = batch): the mlp's first and the CNNs' first.
const DENSES: Dense[] = [
  { name: 'mlp dense', kk: 3072, n: 128 },
  { name: 'cnn dense', kk: 1024, n: 64 },
];

const { values: args } = parseArgs({ options: { batch: { type: 'string', default: '32' }, reps: { type: 'string', default: '11' }, 'rep-ms': { type: 'string', default: '25' }, json: { type: 'string' }, only: { type: 'string' } } });
const BATCH = Number(args.batch), REPS = Number(args.reps), REP_MS = Number(args['rep-ms']);

type Run = () => void;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Calls per repetition so that one repetition takes about REP_MS. */
function calibrate(run: Run): number {
  run();
  const t0 = performance.now();
  let calls = 0;
  while (performance.now() - t0 < REP_MS / 2) {
    run();
    calls++;
  }
  return Math.max(1, Math.round((calls * REP_MS) / (performance.now() - t0)));
}

/**
 * The process's CPU time in ms. On a shared, loaded machine wall time also counts the time other
 * processes hold our core; CPU time does not. (getrusage is exact for the calling thread; the
 * process's other threads, V8's helpers, idle here. /proc/thread-self/schedstat was tried first:
 * it only advances at ticks and context switches, too coarse for 25 ms repetitions.)
 */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e3;
}

/** The core's clock in GHz: clock_probe runs 32 single-cycle dependent operations per iteration. */
function measureClockGHz(g: SpikeGemm): number {
  const n = 5e6, samples: number[] = [];
  for (let r = 0; r < 5; r++) {
    const c0 = cpuMs();
    g.clockProbe(n);
    samples.push((32 * n) / ((cpuMs() - c0) / 1e3) / 1e9);
  }
  return median(samples);
}

interface Measured { cpu: Record<string, number>; wall: Record<string, number>; spread: Record<string, [number, number]>; load: [number, number] }

/**
 * Median ms per call of each run, by CPU time and by wall time, interleaved in
 * rotating order; spread is the CPU-time range over the repetitions; load the load averages seen.
 */
function measure(runs: Record<string, Run>, reps: number): Measured {
  const names = Object.keys(runs);
  const calls = Object.fromEntries(names.map((n) => [n, calibrate(runs[n])]));
  const cpu: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const wall: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const loads: number[] = [loadavg()[0]];
  for (let r = 0; r < reps; r++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length];
      const c0 = cpuMs(), t0 = performance.now();
      for (let c = 0; c < calls[name]; c++) runs[name]();
      wall[name].push((performance.now() - t0) / calls[name]);
      cpu[name].push((cpuMs() - c0) / calls[name]);
    }
    loads.push(loadavg()[0]);
  }
  const each = (f: (n: string) => unknown) => Object.fromEntries(names.map((n) => [n, f(n)]));
  return {
    cpu: each((n) => median(cpu[n])) as Record<string, number>,
    wall: each((n) => median(wall[n])) as Record<string, number>,
    spread: each((n) => [Math.min(...cpu[n]), Math.max(...cpu[n])]) as Record<string, [number, number]>,
    load: [Math.min(...loads), Math.max(...loads)],
  };
}

function random(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}

/** One shape's operands in a spike module's memory. */
function place(g: SpikeGemm, x: Float32Array, f: Float32Array, bias: Float32Array, m: number, k: number, n: number) {
  const px = g.alloc(x.length), pa = g.alloc(m * k), pf = g.alloc(f.length), pb = g.alloc(bias.length), py = g.alloc(m * n);
  const ps = g.alloc(Math.max(...MICRO_KERNELS.map((mk) => SpikeGemm.scratchFloats(mk, n, k))));
  g.view(px, x.length).set(x);
  g.view(pf, f.length).set(f);
  g.view(pb, bias.length).set(bias);
  return { px, pa, pf, pb, py, ps };
}

/** GEMM variants tried per shape: each micro-kernel whole-K, and the 8-accumulator ones K-blocked. */
const KC_CHOICES = [128, 256, 512];
const GEMM_CHOICES = [...MICRO_KERNELS, ...KBLOCK_KERNELS.flatMap((mk) => KC_CHOICES.map((kc) => `${mk}/K${kc}`))];

/** One GEMM call of a variant ("4x2" or "4x2/K256"); bias and ReLU fused when `fused`. */
function gemmCall(g: SpikeGemm, o: ReturnType<typeof place>, choice: string, m: number, n: number, k: number, fused: boolean): Run {
  const [mk, kc] = choice.split('/K');
  const bias = fused ? o.pb : -1;
  if (kc === undefined) return () => g.gemm(mk as MicroKernel, m, n, k, o.pa, o.pf, bias, o.py, fused, o.ps);
  return () => g.gemmK(mk as KBlockKernel, m, n, k, o.pa, o.pf, bias, o.py, fused, o.ps, Number(kc));
}

/** Fastest GEMM variant of a flavour for one shape (a short interleaved pass of its own). */
function tune(g: SpikeGemm, ops: ReturnType<typeof place>, m: number, k: number, n: number, fused: boolean): { best: string; gflops: Record<string, number> } {
  const runs = Object.fromEntries(GEMM_CHOICES.map((c) => [c, gemmCall(g, ops, c, m, n, k, fused)]));
  const { cpu } = measure(runs, 5);
  const gflops = Object.fromEntries(GEMM_CHOICES.map((c) => [c, (2 * m * n * k) / cpu[c] / 1e6]));
  const best = GEMM_CHOICES.reduce((x, y) => (gflops[y] > gflops[x] ? y : x));
  return { best, gflops };
}

/** "4x2/K256" → "4×8, K blocks of 256". */
function describeChoice(choice: string): string {
  const [mk, kc] = choice.split('/K');
  const { rows, cols } = tileOf(mk as MicroKernel);
  return `${rows}×${cols}${kc ? ` K${kc}` : ''}`;
}

/** Fastest gathered-convolution kernel of a flavour for one convolution. */
function tuneConv(g: SpikeGemm, ops: ReturnType<typeof place>, c: Conv): ConvKernel {
  const runs = Object.fromEntries(CONV_KERNELS.map((ck) => [ck, () => g.conv(ck, ops.px, ops.pf, ops.pb, ops.py, true, BATCH, c.h, c.w, c.cin, c.k, c.k, c.cout, ops.ps)]));
  const { cpu } = measure(runs, 5);
  return CONV_KERNELS.reduce((a, b) => (cpu[b] < cpu[a] ? b : a));
}

async function main(): Promise<void> {
  const flavours: Flavour[] = relaxedSimdAvailable() ? ['simd128', 'relaxed'] : ['simd128'];
  const spikes = Object.fromEntries(await Promise.all(flavours.map(async (f) => [f, await SpikeGemm.load(f)] as const))) as Record<Flavour, SpikeGemm>;
  setThreadsCount(1);
  await tf.setBackend('wasm');
  await tf.ready();
  const native = loadNativeKernels();
  console.log(`node ${process.version}; relaxed SIMD: ${flavours.includes('relaxed') ? 'on' : 'off (run with --experimental-wasm-relaxed-simd)'}; tfjs-backend-wasm SIMD: ${await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT')}, multithread build: ${await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT')}, threads: ${getThreadsCount()}; oneDNN: ${native.loaded ? `${native.info.onednn} ${native.info.isa}, ${native.info.threads} thread` : native.reason}`);
  const ghz0 = measureClockGHz(spikes.simd128);
  console.log(`clock ${ghz0.toFixed(2)} GHz measured (${NOMINAL_GHZ} nominal): peaks AVX-512 ${(AVX512_FLOP_PER_CYCLE * ghz0).toFixed(0)} GFLOP/s (${AVX512_FLOP_PER_CYCLE * NOMINAL_GHZ} nominal), SIMD128 ${(SIMD128_FLOP_PER_CYCLE * ghz0).toFixed(0)} (${SIMD128_FLOP_PER_CYCLE * NOMINAL_GHZ} nominal); batch ${BATCH}, ${REPS} reps of ~${REP_MS} ms; load ${loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const outputs = (c: Conv) => BATCH * (c.h - c.k + 1) * (c.w - c.k + 1);
  const shapes: Shape[] = [
    ...CONVS.map((c) => ({ name: c.name, m: outputs(c), kk: c.k * c.k * c.cin, n: c.cout, fused: true, conv: c })),
    ...DENSES.map((d) => ({ name: d.name, m: BATCH, kk: d.kk, n: d.n, fused: true })),
    // Training's other two GEMMs per convolution, unfused: the filter gradient Pᵀ·dY (K = every
    // output position: the long reduction) and the input gradient's dY·Wᵀ (before col2im; not for
    // the first layer, whose input gradient nobody needs).
    ...CONVS.map((c) => ({ name: `${c.name} dW`, m: c.k * c.k * c.cin, kk: outputs(c), n: c.cout, fused: false })),
    ...CONVS.filter((c) => c.name.endsWith('_1') || c.name.endsWith('_2')).map((c) => ({ name: `${c.name} dX`, m: outputs(c), kk: c.cout, n: c.k * c.k * c.cin, fused: false })),
  ];
  const selected = shapes.filter((s) => args.only === undefined || s.name.includes(args.only));
  const rows: unknown[] = [];
  for (const s of selected) {
    const { m, kk: k, n, fused, conv } = s;
    const flops = 2 * m * n * k;
    const x = conv ? random(BATCH * conv.h * conv.w * conv.cin) : random(m * k), f = random(k * n), bias = random(n);
    const ops = Object.fromEntries(flavours.map((fl) => [fl, place(spikes[fl], x, f, bias, m, k, n)])) as Record<Flavour, ReturnType<typeof place>>;
    const tuned = Object.fromEntries(flavours.map((fl) => [fl, tune(spikes[fl], ops[fl], m, k, n, fused)])) as Record<Flavour, ReturnType<typeof tune>>;

    const runs: Record<string, Run> = {};
    const convTiles: string[] = [];
    for (const fl of flavours) {
      const g = spikes[fl], o = ops[fl];
      if (conv) g.im2col(o.px, o.pa, BATCH, conv.h, conv.w, conv.cin, conv.k, conv.k); // the GEMM-only run's A
      const gemm = gemmCall(g, o, tuned[fl].best, m, n, k, fused);
      runs[`gemm ${fl}`] = gemm;
      if (conv) {
        runs[`conv ${fl}`] = () => {
          g.im2col(o.px, o.pa, BATCH, conv.h, conv.w, conv.cin, conv.k, conv.k);
          gemm();
        };
        const ck = tuneConv(g, o, conv);
        convTiles.push(`${fl} ${tileOf(ck).rows}×${tileOf(ck).cols}`);
        runs[`gathered ${fl}`] = () => g.conv(ck, o.px, o.pf, o.pb, o.py, true, BATCH, conv.h, conv.w, conv.cin, conv.k, conv.k, n, o.ps);
      }
    }
    // XNNPACK through tfjs: the same fused ops the models' layers use (tfjs caches the operator per filter).
    const tb = tf.tensor1d(bias), tf2 = tf.tensor2d(f, [k, n]);
    const ta = tf.tensor2d(conv ? spikes.simd128.view(ops.simd128.pa, m * k).slice() : x, [m, k]);
    runs['gemm xnnpack'] = fused ? () => tf.fused.matMul({ a: ta, b: tf2, bias: tb, activation: 'relu' }).dispose() : () => tf.matMul(ta, tf2).dispose();
    let tx: tf.Tensor4D | undefined, tf4: tf.Tensor4D | undefined;
    if (conv) {
      tx = tf.tensor4d(x, [BATCH, conv.h, conv.w, conv.cin]);
      tf4 = tf.tensor4d(f, [conv.k, conv.k, conv.cin, n]);
      runs['conv xnnpack'] = () => tf.fused.conv2d({ x: tx!, filter: tf4!, strides: 1, pad: 'valid', bias: tb, activation: 'relu' }).dispose();
    }
    if (native.loaded) {
      const heap = spikes.simd128.memory.buffer, o = ops.simd128, nk = native.kernels;
      runs['gemm onednn'] = () => nk.matMul(heap, o.pa, o.pf, o.py, fused ? o.pb : -1, fused ? 1 : 0, 1, 1, m, n, k, 0, 0);
      if (conv) {
        const ho = conv.h - conv.k + 1, wo = conv.w - conv.k + 1;
        runs['conv onednn'] = () => nk.conv2d(heap, o.px, o.pf, o.pb, o.py, 1, BATCH, conv.h, conv.w, conv.cin, ho, wo, n, conv.k, conv.k, 1, 1, 0, 0, 0, 0);
      }
    }
    const before = tf.memory().numTensors;
    const { cpu: ms, wall, spread, load } = measure(runs, REPS);
    if (tf.memory().numTensors !== before) throw new Error(`tensors leaked: ${before} → ${tf.memory().numTensors}`);
    [ta, tf2, tb, tx, tf4].forEach((t) => t?.dispose());

    const ghz = measureClockGHz(spikes.simd128), simd128Peak = SIMD128_FLOP_PER_CYCLE * ghz, avx512Peak = AVX512_FLOP_PER_CYCLE * ghz;
    const gflops = Object.fromEntries(Object.entries(ms).map(([name, t]) => [name, flops / t / 1e6]));
    const tiles = flavours.map((fl) => `${fl} ${describeChoice(tuned[fl].best)}`).join(', ');
    console.log(`\n${s.name}: M=${m} K=${k} N=${n} (${(flops / 1e6).toFixed(1)} MFLOP), clock ${ghz.toFixed(2)} GHz, load ${load[0].toFixed(2)}–${load[1].toFixed(2)}, tiles: ${tiles}${convTiles.length ? `; gathered: ${convTiles.join(', ')}` : ''}`);
    for (const [name, t] of Object.entries(ms))
      console.log(`  ${name.padEnd(14)} ${t.toFixed(3).padStart(8)} CPU ms  ${gflops[name].toFixed(1).padStart(6)} GFLOP/s  ${((100 * gflops[name]) / simd128Peak).toFixed(0).padStart(4)}% SIMD128  ${((100 * gflops[name]) / avx512Peak).toFixed(0).padStart(3)}% AVX-512   (CPU ${spread[name].map((v) => v.toFixed(3)).join('–')} ms; wall median ${wall[name].toFixed(3)} ms)`);
    for (const fl of flavours) console.log(`  tiles ${fl}: ${GEMM_CHOICES.map((c) => `${c} ${tuned[fl].gflops[c].toFixed(1)}`).join(', ')}`);
    rows.push({ shape: s.name, m, k, n, fused, mflop: flops / 1e6, load, ghz, convTiles, cpuMs: ms, wallMs: wall, gflops, tiles: Object.fromEntries(flavours.map((fl) => [fl, tuned[fl]])) });
  }
  if (args.json) writeFileSync(args.json, JSON.stringify({ date: new Date().toISOString(), node: process.version, batch: BATCH, reps: REPS, flopPerCycle: { avx512: AVX512_FLOP_PER_CYCLE, simd128: SIMD128_FLOP_PER_CYCLE }, nominalGHz: NOMINAL_GHZ, rows }, null, 1));
}

await main();
