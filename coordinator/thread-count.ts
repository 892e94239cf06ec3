/**
 * How many compute threads `dtrain train` starts when --workers is not given. One per core is right
 * when each thread gets enough arithmetic per step; when it does not, a step shared by two threads
 * costs more in hand-offs (Atomics wake-ups, the striped reduction, a second weights copy) than it
 * saves in compute.
 *
 * Measured on 2026-11-30 at 17:50 UTC (2-core AMD EPYC, wasm with the oneDNN kernels, shared-memory
 * step, otherwise idle), `dtrain train --model M --epochs 1 --dataset synthetic --limit-train 40000
 * --no-plots --workers 1|2`, img/s from history.json, two runs each: mlp (52 MFLOP per step of 32)
 * 26,484 and 25,965 on one thread against 21,457 and 20,308 on two; lenet (103 MFLOP) 14,916 and
 * 15,138 on one against 16,684 and 16,993 on two. (Before the shared-memory step, two threads lost
 * on both: mlp 6,996 against 4,290, lenet 6,464 against 5,734.) The CNNs (824 MFLOP) gain from a
 * second thread.
 *
 * Measured again on 2026-12-01, after the input array stopped costing page faults every step
 * (common/upload-scratch.ts), which made one thread's step cheaper than two threads' hand-offs: the
 * same command with --epochs 2, interleaved, img/s of both epochs: lenet at batch 32, 3 pairs, one
 * thread 10,126/10,743, 11,306/11,611, 11,085/11,715 against two 9,179/9,152, 9,986/11,126,
 * 8,730/9,513; lenet at batch 64 (206 MFLOP), 2 pairs, one 12,225/12,695, 9,850/10,553 against two
 * 10,872/14,232, 12,731/14,299; cnn-dropout at 32 (12,000 images), 2 pairs, one 3,327/3,690,
 * 3,255/3,673 against two 3,942/4,434, 4,256/4,752. The cut-off, 64 MFLOP of training arithmetic
 * per thread and step, lies between lenet's 51 on two threads at batch 32 (slower) and its 103 at
 * batch 64 (faster): about 1.5 ms of kernel time on one core.
 *
 * Where the threads drive runs of steps themselves (coordinator/step-runs.ts: no BatchNorm, mean
 * aggregation, no reduction grain), a shared step no longer costs the owning thread's hand-offs, and
 * what a second thread costs is its own pass over the weights: each thread reads every weight and
 * writes every gradient, whatever its share of the batch. The cut-off is then arithmetic per
 * parameter. Measured on 2026-12-03 from 18:28 UTC, the same command with --epochs 2 and
 * --workers 1|2 interleaved (mean step ms over steps 201–2500; img/s of both epochs):
 *   - lenet at batch 32 (826 FLOP per parameter per thread on two), 6 pairs: two threads faster in
 *     all 6, step 1.93/2.09, 1.79/2.45, 1.70/2.57, 2.26/2.31, 2.12/2.22, 1.75/2.08 ms;
 *   - lenet at batch 16 (413), 2 pairs: two 14,025/14,704 and 13,356/14,776 against one
 *     12,577/13,575 and 12,385/14,581;
 *   - mlp at batch 32 (65), 3 pairs: two slower in all 3, step 1.31/1.05, 1.76/1.01, 2.17/1.34 ms;
 *   - mlp at batch 64 (129), 2 pairs: two 24,100/33,358 and 33,543/37,435 against one
 *     35,549/40,802 and 34,496/35,469;
 *   - mlp at batch 128 (259), 2 pairs: a tie, two 50,782/55,933 and 55,807/54,030 against one
 *     54,607/58,111 and 50,507/54,116.
 * So a thread of a run needs at least 300 FLOP per parameter a step (ties go to fewer threads).
 */
import type { LayersModel } from '../common/tf.ts';
import { buildModel, type ModelName } from '../common/models.ts';

export const MIN_FLOPS_PER_THREAD = 64e6;

/** Where the threads drive runs of steps: the least training arithmetic per thread and step, per parameter of the model. */
export const MIN_FLOPS_PER_PARAMETER_IN_RUNS = 300;

/** What a step of the model asks of a thread, from one build of it. */
export interface ModelArithmetic {
  /** The model's parameters (trainable and not): what every thread of a step reads. */
  parameters: number;
  /** Training FLOPs per image (trainingFlopsPerImage). */
  flopsPerImage: number;
}

/** The model's parameter count and training FLOPs per image, building it once. */
export function modelArithmetic(model: ModelName): ModelArithmetic {
  const net = buildModel(model);
  try {
    return { parameters: net.countParams(), flopsPerImage: flopsPerImageOf(net) };
  } finally {
    net.dispose();
  }
}

/** The model's parameters (trainable and not): what every thread of a step reads. */
export function parameterCount(model: ModelName): number {
  return modelArithmetic(model).parameters;
}

/**
 * Training FLOPs per image (forward, both gradients): 2 FLOPs per multiply-add, three passes over
 * every Conv2D and Dense layer, except that the first layer needs no input gradient. Pooling,
 * BatchNorm and activations are memory traffic, not arithmetic, and are left out.
 */
export function trainingFlopsPerImage(model: ModelName): number {
  return modelArithmetic(model).flopsPerImage;
}

function flopsPerImageOf(net: LayersModel): number {
  const macs: number[] = [];
  for (const layer of net.layers) {
    const kind = layer.getClassName();
    // tfjs-layers makes repeated weight names unique with a suffix: conv2d/kernel_1.
    const kernel = layer.weights.find((w) => /\/kernel(_\d+)?$/.test(w.name))?.shape as number[] | undefined;
    if (!kernel) continue;
    const outputShape = layer.outputShape as number[];
    if (kind === 'Conv2D') macs.push(outputShape[1] * outputShape[2] * kernel.reduce((a, b) => a * b, 1));
    else if (kind === 'Dense') macs.push(kernel[0] * kernel[1]);
  }
  const total = macs.reduce((a, b) => a + b, 0);
  return 2 * (3 * total - (macs[0] ?? 0));
}

export interface ThreadChoice {
  threads: number;
  /** One line for the run_started log: why this many. */
  reason: string;
}

/**
 * The default thread count: one per core, but no more than the step's arithmetic can keep busy.
 * With a fixed batch per worker every thread gets that batch whatever K is, so every core is used.
 * `inRuns`: the threads will drive runs of steps (stepsRunFor), where the cut-off is arithmetic per
 * parameter (MIN_FLOPS_PER_PARAMETER_IN_RUNS) instead of per thread.
 */
export function defaultThreadCount(model: ModelName, batchSize: number, batchPerWorker: number | undefined, cores: number, inRuns = false): ThreadChoice {
  if (batchPerWorker) return { threads: cores, reason: `one per core (${cores}): --batch-per-worker gives each thread its own batch` };
  const { parameters, flopsPerImage } = modelArithmetic(model);
  const stepFlops = flopsPerImage * batchSize;
  const perThread = inRuns ? MIN_FLOPS_PER_PARAMETER_IN_RUNS * parameters : MIN_FLOPS_PER_THREAD;
  const threads = Math.max(1, Math.min(cores, Math.floor(stepFlops / perThread)));
  const mflop = Math.round(stepFlops / 1e6);
  if (threads === cores) return { threads, reason: `one per core (${cores}): a ${model} step of ${batchSize} images is ${mflop} MFLOP` };
  const oneMore = stepFlops / (threads + 1);
  const need = inRuns
    ? `${Math.round(oneMore / parameters)} FLOP per parameter per thread on ${threads + 1}, and a thread of a run of steps needs at least ${MIN_FLOPS_PER_PARAMETER_IN_RUNS}`
    : `${Math.round(oneMore / 1e6)} per thread on ${threads + 1}, and a thread needs at least ${MIN_FLOPS_PER_THREAD / 1e6} MFLOP a step`;
  return { threads, reason: `${threads} of ${cores} cores: a ${model} step of ${batchSize} images is ${mflop} MFLOP, ${need} to gain more than it costs (--workers overrides)` };
}
