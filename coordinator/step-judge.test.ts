import { describe, expect, it } from 'vitest';
import { GradientScreen } from './result-check.ts';
import { judgeStep } from './step-judge.ts';

const layout = { entries: [], totalSize: 0, trainableSize: 0 };
/** A slice of 4 samples whose mean gradient has norm `norm`. */
const slot = (norm: number) => ({ count: 4, lossSum: 8, correct: 1, squares: (norm * 4) ** 2 });

describe('judging a step from its slots\' summaries', () => {
  it('accepts a step within the screen\'s bound and adds its norms to the history', () => {
    const screen = new GradientScreen(layout);
    screen.seedHistory([1, 1, 1]);
    expect(judgeStep(screen, [slot(2), slot(3)])).toBeUndefined();
    expect(screen.history).toEqual([1, 1, 1, 2, 3]);
  });

  it('refuses an outlier slot, naming it, and leaves the history as it was', () => {
    const screen = new GradientScreen(layout);
    screen.seedHistory([1, 1, 1]);
    expect(judgeStep(screen, [slot(1), slot(1e6)])).toMatch(/^slot 1: gradient norm 1\.000e\+6 exceeds the bound 5\.000e\+1/);
    expect(screen.history).toEqual([1, 1, 1]);
  });

  it('refuses a step the Adam guard would, even where the screen lets it through', () => {
    const screen = new GradientScreen(layout, { factor: Infinity });
    screen.seedHistory([1e20]);
    expect(judgeStep(screen, [slot(1e20)])).toMatch(/mean gradient may reach 1\.000e\+20, which could make Adam's state non-finite \(the limit is 1e\+19\)/);
    expect(screen.history).toEqual([1e20]);
  });

  it('refuses a slot whose tally is impossible', () => {
    const screen = new GradientScreen(layout);
    screen.seedHistory([1]);
    expect(judgeStep(screen, [{ ...slot(1), correct: 5 }])).toMatch(/slot 0: correct count 5; expected an integer from 0 to 4/);
  });
});
