/**
 * A compute thread's warm-up: a few training steps of the run's model and slice size on blank
 * images, run once its backend is loaded and before it reports in, then thrown away. The first
 * hundred or so steps of a fresh thread are two to three times slower than the rest: V8 compiles
 * the step's JavaScript in tiers, oneDNN creates its primitives, and the wasm heap grows page by
 * page (each first touch a fault, 17-40 µs on the VMs measured). `dtrain train` starts its threads
 * while the owning thread loads the data (coordinator/inprocess.ts, prestartThreads), so this
 * happens then and not in the first epoch. Nothing of it reaches the run: each step's weights are
 * set from the shared copies, and the model built here is disposed.
 */
import { StepComputer } from './compute.ts';
import { MODEL_SPECS, type ModelName } from '../common/models.ts';
import type { Preprocessing } from '../common/data/preprocess.ts';
import { IMAGE_BYTES } from '../common/data/types.ts';

export interface WarmUp {
  model: ModelName;
  /** Images per step: the run's slice. */
  batch: number;
  steps: number;
  /** Stops after this long even if fewer steps ran (the large models' first steps are warm soon enough). */
  maxMs: number;
}

/**
 * The first hundred or so steps are the slow ones (mlp and lenet at 32 images, measured in
 * docs/shared-step.md); a step of the large models takes long enough that 400 ms cover their few.
 */
export const WARM_UP_STEPS = 150;
export const WARM_UP_MAX_MS = 400;

/** The warm-up for a run of `model` whose threads train slices of `batch` images. */
export function warmUpFor(model: ModelName, batch: number): WarmUp {
  return { model, batch, steps: WARM_UP_STEPS, maxMs: WARM_UP_MAX_MS };
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
    const started = performance.now();
    for (; done < spec.steps && performance.now() - started < spec.maxMs; done++) {
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
