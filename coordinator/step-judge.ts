/**
 * Whether a step of the shared-memory path may be applied, judged from its slots' summaries alone:
 * the result screen (result-check.ts) on each slot in slot order, then the Adam guard's bound on the
 * mean gradient (adam-guard.ts, SharedStep.gradientBound). The compute threads of a run of steps
 * (worker/step-run.ts) judge every step with it, each on its own copy of the screen, and the owner
 * replays it over the run's records afterwards, so all of them agree on every step.
 */
import { MAX_SAFE_GRADIENT } from './adam-guard.ts';
import { GradientScreen, normFromSquares } from './result-check.ts';

/** What a slot's thread reports of its slice: enough for the screen and the guard. */
export interface SlotSummary {
  count: number;
  lossSum: number;
  correct: number;
  /** Σ g² of the slot's gradient sums. */
  squares: number;
}

/** A screen for judging runs of steps, holding `history`'s norms (its layout is empty: runs have no BatchNorm statistics to check). */
export function screenWithHistory(history: readonly number[]): GradientScreen {
  const screen = new GradientScreen({ entries: [], totalSize: 0, trainableSize: 0 });
  screen.seedHistory(history);
  return screen;
}

/** Each slot's summary from its record and its sample count. */
export function slotSummaries(records: readonly Omit<SlotSummary, 'count'>[], counts: readonly number[]): SlotSummary[] {
  return records.map((r, k) => ({ count: counts[k], lossSum: r.lossSum, correct: r.correct, squares: r.squares }));
}

/**
 * Judges one step on `screen`: undefined when every slot passes and the guard allows the step (the
 * screen then holds the step's norms in its history), else why not (the screen is left as it was).
 */
export function judgeStep(screen: GradientScreen, slots: readonly SlotSummary[]): string | undefined {
  screen.startStep();
  let norms = 0;
  let count = 0;
  for (const [k, s] of slots.entries()) {
    const rejection = screen.checkSlice({ count: s.count, lossSum: s.lossSum, correct: s.correct, norm: normFromSquares(s.squares, s.count), hasGradient: true }, s.count);
    if (rejection) {
      screen.startStep();
      return `slot ${k}: ${rejection.reason}`;
    }
    norms += Math.sqrt(s.squares);
    count += s.count;
  }
  const bound = norms / Math.max(1, count);
  if (!(bound <= MAX_SAFE_GRADIENT)) {
    screen.startStep();
    return `the mean gradient may reach ${bound.toExponential(3)}, which could make Adam's state non-finite (the limit is ${MAX_SAFE_GRADIENT.toExponential(0)})`;
  }
  screen.commit();
  return undefined;
}
