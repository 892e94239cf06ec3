/**
 * Adam's state can never become non-finite. Adam computes g² in float32: a finite gradient above
 * √FLT_MAX ≈ 1.8e19 squares to Infinity, v becomes Infinity, and from then on that weight's update is
 * 0 (m / √Infinity) for good, and the Infinity is saved in every checkpoint. With every |g| below
 * the limit and m, v finite, the update stays finite (|m̂ / (√v̂ + ε)| is bounded), so checking the
 * gradient before the step is enough; the step is refused rather than applied.
 */

/** Below √FLT_MAX (1.84e19), with room for (1 − β2)·g² + β2·v not to round up past it. */
export const MAX_SAFE_GRADIENT = 1e19;

/** Why this gradient must not reach Adam, or undefined when it may. */
export function unsafeGradient(gradient: Float32Array): { index: number; value: number } | undefined {
  for (let i = 0; i < gradient.length; i++) {
    const g = gradient[i];
    if (!(g <= MAX_SAFE_GRADIENT && g >= -MAX_SAFE_GRADIENT)) return { index: i, value: g };
  }
  return undefined;
}

/** True when every value is finite (a restored optimizer state, say). */
export function allFinite(values: Float32Array): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
  return true;
}

/** unsafeGradient's answer from an index already found (StepAggregate.unsafeIndex; −1: none). */
export function unsafeAt(gradient: Float32Array, index: number): { index: number; value: number } | undefined {
  return index < 0 ? undefined : { index, value: gradient[index] };
}
