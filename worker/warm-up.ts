/**
 * A compute thread's warm-up: a few training steps of the run's model and slice size on blank
 * images, run once its backend is loaded and before it reports in, then thrown away. The first
 * hundred or so steps of a fresh thread are two to three times slower than the rest: V8 compiles
 * the step's JavaScript in tiers, oneDNN creates its primitives, and the wasm heap grows page by
 * page (each first touch a fault, 17-40 µs on the VMs measured). `dtrain train` starts its threads
 * while the owning thread loads the data (coordinator/inprocess.ts, prestartThreads), so this
 * happens then and not in the first epoch. Nothing of it reaches the run: each step's weights are
 * set from the shared copies, and the model built here is disposed.
 *
 * Where the run steps one slot from the backend (one thread, wasm with the native stripe, a model
 * without BatchNorm statistics: mlp and lenet at `dtrain train`'s defaults), the warm-up steps that way too,
 * on a step memory of its own: new weight tensors each step, written by the native stripe. The
 * backend's heap then grows to that pattern here, not in the run's first step (whose stripe took
 * 7-8.5 ms with a warm-up through the slot, 1.4-1.5 ms with this one; docs/shared-step.md).
 */
import { StepComputer } from './compute.ts';
import { MODEL_SPECS, type ModelName } from '../common/models.ts';
import type { Preprocessing } from '../common/data/preprocess.ts';
import { IMAGE_BYTES } from '../common/data/types.ts';
import { CTL, F64, StepMemory } from '../common/step-memory.ts';
import { StripeWorker, heldToken } from '../common/step-stripe.ts';
import { loadNativeKernels } from '../common/kernels/native/addon.ts';

export interface WarmUp {
  model: ModelName;
  /** Images per step: the run's slice. */
  batch: number;
  steps: number;
  /** Stops after this long even if fewer steps ran (the large models' first steps are warm soon enough). */
  maxMs: number;
  /**
   * Whether the run's steps will be of one slot from the backend (one thread, no reduction grain,
   * DTRAIN_STEP_FROM_BACKEND not off): the warm-up then steps that way where it can (stepFromBackend).
   */
  fromBackend?: boolean;
}

/**
 * The first hundred or so steps are the slow ones (mlp and lenet at 32 images, measured in
 * docs/shared-step.md); a step of the large models takes long enough that 400 ms cover their few.
 */
export const WARM_UP_STEPS = 150;
export const WARM_UP_MAX_MS = 400;

/** The warm-up for a run of `model` whose threads train slices of `batch` images (`fromBackend`: see WarmUp). */
export function warmUpFor(model: ModelName, batch: number, fromBackend = false): WarmUp {
  return { model, batch, steps: WARM_UP_STEPS, maxMs: WARM_UP_MAX_MS, fromBackend };
}

/**
 * The run's step of one slot where the backend holds its tensors (the shared-memory step's
 * trainApply from the backend: new weight tensors each step, the native stripe writing them), on a
 * step memory of the warm-up's own, so the backend's heap grows to that step's pattern and its
 * JavaScript compiles now. Undefined where it cannot (no native stripe, BatchNorm statistics). Its
 * step memory (13 MB for the mlp, mapped when made) is dropped with the warm-up.
 */
function stepFromBackend(computer: StepComputer, batch: number, weights: Float32Array) {
  const trainable = computer.layout.trainableSize;
  if (computer.layout.totalSize !== trainable || !loadNativeKernels().loaded) return undefined;
  const mem = StepMemory.create({ trainable, stats: 0, slots: 1, slotSamples: batch, threads: 1 });
  const stripe = new StripeWorker(mem);
  if (!stripe.runsFromBackend) return undefined;
  mem.ctl[CTL.slotsUsed] = 1;
  mem.weights[0].set(weights.subarray(0, trainable));
  // Adam's scalars with a zero step size: the weights stay what they are.
  const f = mem.f64;
  [f[F64.inv], f[F64.stepSize], f[F64.sqrtCorrection], f[F64.beta1], f[F64.beta2], f[F64.epsilon]] = [1 / batch, 0, 1, 0.9, 0.999, 1e-7];
  let parity: 0 | 1 = 0;
  return async (images: Uint8Array, labels: Uint8Array, gradientSum: Float32Array, stats: Float32Array): Promise<void> => {
    const task = { from: 0, to: mem.adamSpan, parity, doStats: false };
    // As the run's step (WorkerSession.withWeights): no upload while the model holds the current copy.
    if (!computer.holds(heldToken(mem.ctl, parity))) computer.setWeights(weights);
    await computer.trainInto(images, labels, () => ({ gradientSum, stats, use: (segments) => (segments ? stripe.runFromBackend(task, segments).token : undefined) }));
    parity = (1 - parity) as 0 | 1;
  };
}

/** Runs the warm-up; resolves with the steps it ran (fewer if the backend fails: the run's first step reports that). */
export async function warmUp(spec: WarmUp): Promise<number> {
  const features = IMAGE_BYTES;
  // The run's input path: standardization (the native standardizer) for the MLP, scaling for the rest.
  const preprocessing: Preprocessing = MODEL_SPECS[spec.model].input === 'flat-standardized' ? { kind: 'standardize', mean: new Float32Array(features), std: new Float32Array(features).fill(1) } : { kind: 'scale' };
  let computer: StepComputer | undefined;
  let done = 0;
  try {
    computer = new StepComputer(spec.model, preprocessing);
    const weights = await computer.readWeights();
    const images = new Uint8Array(spec.batch * IMAGE_BYTES);
    const labels = Uint8Array.from({ length: spec.batch }, (_, i) => i % 10);
    const gradientSum = new Float32Array(computer.layout.trainableSize);
    const stats = new Float32Array(computer.layout.totalSize - computer.layout.trainableSize);
    const fromBackend = spec.fromBackend ? stepFromBackend(computer, spec.batch, weights) : undefined;
    const started = performance.now();
    for (; done < spec.steps && performance.now() - started < spec.maxMs; done++) {
      if (fromBackend) {
        await fromBackend(images, labels, gradientSum, stats);
        continue;
      }
      computer.setWeights(weights);
      await computer.trainInto(images, labels, () => ({ gradientSum, stats }));
    }
  } catch {
    // A backend that cannot train fails the run's first step, which falls back (backend-fallback.ts).
  } finally {
    try {
      computer?.dispose();
    } catch {
      // The same: the run's first step reports the backend's failure.
    }
  }
  return done;
}
