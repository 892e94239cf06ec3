import { describe, expect, it } from 'vitest';
import { percent, points } from './format.ts';
import { compareRegularization, GAP_MARGIN } from './regularization.ts';
import { summarizeRuns, type RunSummary } from './run-summary.ts';
import { fakeHistory, fakeMetrics, type FakeRunShape } from './test-fixtures.ts';

function summaries(...shapes: FakeRunShape[]): RunSummary[] {
  return summarizeRuns(shapes.map((s, i) => ({ dir: `/runs/${i}-${s.model}`, history: fakeHistory(s), metrics: fakeMetrics(s) })));
}

// A narrow gap that keeps improving until late, against a wide gap that peaks early.
const narrow = { epochs: 20, trainAccuracy: 0.76, bestValAccuracy: 0.71, bestEpoch: 18, sag: 0.002, testAccuracy: 0.7 };
const wide = { epochs: 20, trainAccuracy: 0.93, bestValAccuracy: 0.74, bestEpoch: 8, sag: 0.004, testAccuracy: 0.72 };
const lenet = { model: 'lenet', epochs: 20, trainAccuracy: 0.82, bestValAccuracy: 0.6, bestEpoch: 9, sag: 0.006, testAccuracy: 0.58 };

describe('compareRegularization', () => {
  it('credits dropout when its final gap is clearly smaller', () => {
    const runs = summaries({ model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...wide });
    const finding = compareRegularization(runs);
    expect(finding.verdict).toBe('dropout');
    expect(finding.sentences.find((s) => s.startsWith('Verdict'))).toMatch(/^Verdict: dropout did more against overfitting/);
  });

  it('flips to batch normalization when the numbers are swapped', () => {
    const runs = summaries({ model: 'cnn-dropout', ...wide }, { model: 'cnn-bn', ...narrow });
    const finding = compareRegularization(runs);
    expect(finding.verdict).toBe('batch-normalization');
    expect(finding.sentences.join(' ')).toMatch(/Verdict: batch normalization did more against overfitting/);
  });

  it('prints the numbers each claim rests on', () => {
    const runs = summaries({ model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...wide });
    const [d, b] = runs;
    const text = compareRegularization(runs).sentences.join(' ');
    for (const value of [points(d.finalGap), points(b.finalGap), percent(d.testAccuracy), percent(b.testAccuracy), `epoch ${d.bestValEpoch} of 20`, `epoch ${b.bestValEpoch} of 20`]) {
      expect(text).toContain(value);
    }
    expect(text).toContain(`the gap is ${points(b.finalGap - d.finalGap)} smaller with dropout`);
  });

  it('says when the smaller gap did not give the higher test accuracy', () => {
    const text = compareRegularization(summaries({ model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...wide })).sentences.join(' ');
    // dropout: smaller gap but 70.0% on test; batch normalization: 72.0%
    expect(text).toContain('batch normalization still reached the higher test accuracy (72.0% vs 70.0%)');
  });

  it('does not pick a side when gaps and peaks are equal', () => {
    const finding = compareRegularization(summaries({ model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...narrow }));
    expect(finding.verdict).toBe('undecided');
    expect(finding.sentences.join(' ')).toMatch(/neither did clearly more/);
    expect(finding.sentences.join(' ')).toContain(`less than the ${points(GAP_MARGIN)}`);
  });

  it('lets the later peak decide when the gaps are within the margin', () => {
    // same training accuracy and end point, but dropout's validation accuracy peaks at 18, batch norm's at 6
    const late = { epochs: 20, trainAccuracy: 0.8, bestValAccuracy: 0.7, bestEpoch: 18, sag: 0.0, testAccuracy: 0.7 };
    const early = { ...late, bestEpoch: 6 };
    const finding = compareRegularization(summaries({ model: 'cnn-dropout', ...late }, { model: 'cnn-bn', ...early }));
    expect(finding.verdict).toBe('dropout');
    expect(finding.sentences.join(' ')).toMatch(/the gaps were close, but its validation accuracy peaked later \(epoch 18 of 20 vs 6 of 20\)/);
  });

  it('draws no verdict when a run never left chance on validation, and says why', () => {
    // A 2-epoch cnn-bn run whose moving statistics have not caught up: 11% at best, against a real dropout run.
    const stuck = { epochs: 2, trainAccuracy: 0.6, bestValAccuracy: 0.11, bestEpoch: 1, sag: 0, testAccuracy: 0.1 };
    const finding = compareRegularization(summaries({ model: 'cnn-dropout', ...narrow, epochs: 2, bestEpoch: 2 }, { model: 'cnn-bn', ...stuck }));
    expect(finding.verdict).toBe('undecided');
    const text = finding.sentences.join(' ');
    expect(text).toMatch(/cnn-bn peaked at 11\.0% on validation, within 5\.0 points of chance \(10\.0%\)/);
    expect(text).not.toMatch(/Verdict/);
    // Swapping in a run above chance brings the verdict back.
    expect(compareRegularization(summaries({ model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...wide })).verdict).toBe('dropout');
  });

  it('draws no verdict on a cnn-bn run too short for its moving statistics, and says why', () => {
    // 3 short epochs: 96% in training, about 20% on validation (above chance, so only the step count tells).
    const short = { epochs: 3, trainAccuracy: 0.96, bestValAccuracy: 0.218, bestEpoch: 3, sag: 0, testAccuracy: 0.2 };
    const runs = summaries({ model: 'cnn-dropout', ...narrow, epochs: 3, bestEpoch: 3 }, { model: 'cnn-bn', ...short });
    runs[1].steps = 189;
    const finding = compareRegularization(runs);
    expect(finding.verdict).toBe('undecided');
    expect(finding.sentences.join(' ')).toContain(`cnn-bn took only 189 steps: its BatchNorm moving statistics (momentum 0.99) need about 460 to catch up with its weights, so its validation accuracy (${percent(runs[1].bestValAccuracy)} at best, against 96.0% in training) understates the model`);
    // The same run after enough steps gets its verdict.
    runs[1].steps = 4700;
    expect(compareRegularization(runs).verdict).toBe('dropout');
  });

  it('says "below" where validation accuracy ends above training accuracy', () => {
    const under = { epochs: 20, trainAccuracy: 0.6, bestValAccuracy: 0.7, bestEpoch: 20, sag: 0, testAccuracy: 0.69 };
    const runs = summaries({ model: 'cnn-dropout', ...under }, { model: 'cnn-bn', ...wide });
    const text = compareRegularization(runs).sentences.join(' ');
    expect(runs[0].finalGap).toBeLessThan(0);
    expect(text).toContain(`cnn-dropout's training accuracy was ${points(-runs[0].finalGap)} below its validation accuracy`);
    expect(text).not.toMatch(/[( ]-\d/); // no negative gap printed
  });

  it('compares both with a baseline run when there is one', () => {
    const runs = summaries(lenet, { model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...wide });
    const text = compareRegularization(runs).sentences.join(' ');
    expect(text).toContain(`For contrast, lenet, which has neither dropout nor batch normalization, ended with a gap of ${points(runs[0].finalGap)}`);
    expect(text).toContain(`cnn-dropout ${points(runs[1].finalGap)} (${points(runs[0].finalGap - runs[1].finalGap)} narrower)`);
  });

  it('warns when the runs trained for different numbers of epochs', () => {
    const text = compareRegularization(summaries({ model: 'cnn-dropout', ...narrow }, { model: 'cnn-bn', ...wide, epochs: 10, bestEpoch: 6 })).sentences.join(' ');
    expect(text).toContain('different numbers of epochs (20 vs 10)');
  });

  it('says which run is missing instead of concluding', () => {
    const finding = compareRegularization(summaries(lenet, { model: 'cnn-bn', ...wide }));
    expect(finding.verdict).toBe('missing-runs');
    const text = finding.sentences.join(' ');
    expect(text).toContain('was given runs of lenet, cnn-bn, with no cnn-dropout run');
    expect(text).toContain('Train the cnn-dropout model');
    expect(text).not.toMatch(/Verdict/);
  });

  it('names both when neither regularized run is there', () => {
    const finding = compareRegularization(summaries(lenet));
    expect(finding.sentences.join(' ')).toContain('with no cnn-dropout and no cnn-bn run');
  });
});
