/**
 * The shared-memory step's optimizer work on one thread: reduction (1 or 2 slots) and Adam over all
 * of the MLP's 402,250 parameters in one stripe, with the SIMD kernels and with the JavaScript
 * reduction, against Adam.apply alone, and with the native one-pass kernel (also taking Σ g² for one
 * slot) where the addon is built. Prints the medians.
 *
 *   npx tsx scripts/bench-stripe.ts [--iterations 200]
 */
import { parseArgs } from 'node:util';
import { StepMemory, CTL, F64 } from '../common/step-memory.ts';
import { StripeWorker, setNativeStripe } from '../common/step-stripe.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';
import { Adam } from '../common/adam.ts';
import { median } from './bench-stats.ts';

const { values } = parseArgs({ options: { iterations: { type: 'string', default: '200' } } });
const iterations = Number(values.iterations);
if (!Number.isInteger(iterations) || iterations < 1) throw new TypeError(`--iterations must be a positive integer, got ${values.iterations}.`);
const P = 402_250;

function time(fn: (i: number) => void): number {
  for (let i = 0; i < 10; i++) fn(i);
  const t: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    fn(i);
    t.push(performance.now() - t0);
  }
  return median(t);
}

const load = loadNativeKernels();
const kinds = [...(load.loaded ? ['native' as const] : []), 'simd' as const, 'scalar' as const];
if (!load.loaded) console.log(`native kernels not loaded (${load.reason}): no native row`);
const labels = { native: 'native one-pass kernel (with Σ g² for 1 slot)', simd: 'SIMD kernels', scalar: 'scalar JavaScript (no SIMD)' };
for (const kind of kinds) {
  setNativeStripe(kind === 'native' && load.loaded ? load.kernels : undefined);
  for (const slots of [1, 2]) {
    const mem = StepMemory.create({ trainable: P, stats: 0, slots, slotSamples: 32, threads: 1 });
    const w = new StripeWorker(mem, kind !== 'scalar');
    mem.ctl[CTL.slotsUsed] = slots;
    for (let k = 0; k < slots; k++) mem.ctl[CTL.slotCounts + k] = 32 / slots;
    Object.assign(mem.f64, { [F64.inv]: 1 / 32, [F64.stepSize]: 0.001, [F64.sqrtCorrection]: 1, [F64.beta1]: 0.9, [F64.beta2]: 0.999, [F64.epsilon]: 1e-7 });
    for (const g of mem.gradients) g.fill(0.01);
    const ms = time((i) => w.run({ from: 0, to: mem.adamSpan, parity: (i % 2) as 0 | 1, doStats: false }, slots === 1));
    console.log(`reduction + Adam, ${labels[kind]}, ${slots} slot(s), ${P} parameters: ${ms.toFixed(3)} ms median of ${iterations}`);
  }
}
setNativeStripe(undefined);
const adam = new Adam(P);
const weights = new Float32Array(P);
const gradient = new Float32Array(P).fill(0.01);
console.log(`Adam.apply (${adam.kind}), ${P} parameters: ${time(() => adam.apply(weights, gradient)).toFixed(3)} ms median of ${iterations}`);
