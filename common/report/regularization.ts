/**
 * "Did dropout or batch normalization do more against overfitting?", answered from the runs at
 * hand. Every sentence compares numbers that it also prints; when the numbers do not separate the
 * two, the text says so instead of picking a side.
 *
 * The measure of overfitting is the final gap (training minus validation accuracy, averaged over
 * the last epochs): it is what regularization is meant to shrink. When the gaps are within
 * GAP_MARGIN of each other, the epoch at which validation accuracy peaked breaks the tie: a later
 * peak means held-out accuracy kept improving for longer before the model began to overfit.
 */
import { percent, points } from './format.ts';
import type { RunSummary } from './run-summary.ts';

export const DROPOUT_MODEL = 'cnn-dropout';
export const BATCH_NORM_MODEL = 'cnn-bn';
/** Runs without either regularizer, in order of preference as the contrast. */
export const BASELINE_MODELS = ['cnn', 'lenet', 'mlp'] as const;

/** Gaps closer than this (1 percentage point) are treated as equal. */
export const GAP_MARGIN = 0.01;
/** Peaks closer than this share of the run's length are treated as equally late. */
export const PEAK_MARGIN = 0.1;
/** Test accuracies closer than this are treated as equal. */
export const TEST_MARGIN = 0.005;
/** Chance on CIFAR-10's 10 classes, and how far above it a run's best validation accuracy must be for its gap to say anything. */
export const CHANCE_ACCURACY = 0.1;
export const ABOVE_CHANCE = 0.05;
/**
 * Steps a BatchNorm run needs before its moving statistics (momentum 0.99, as Keras) have caught up
 * with its weights: after 460 steps the first step's statistics weigh under 1%. Fewer, and its
 * validation accuracy understates the model, so its gap measures that, not overfitting.
 */
export const BN_WARM_STEPS = 460;

export type Verdict = 'dropout' | 'batch-normalization' | 'undecided' | 'missing-runs';

export interface RegularizationFinding {
  verdict: Verdict;
  /** Plain-text sentences, in reading order. */
  sentences: string[];
}

const NAMES = { dropout: 'dropout', bn: 'batch normalization' } as const;

export function compareRegularization(runs: readonly RunSummary[]): RegularizationFinding {
  const dropoutRuns = runs.filter((r) => r.model === DROPOUT_MODEL);
  const bnRuns = runs.filter((r) => r.model === BATCH_NORM_MODEL);
  if (dropoutRuns.length === 0 || bnRuns.length === 0) return missingRuns(runs, dropoutRuns.length > 0, bnRuns.length > 0);

  const d = dropoutRuns[0];
  const b = bnRuns[0];
  const sentences: string[] = [];
  for (const [model, list] of [[DROPOUT_MODEL, dropoutRuns], [BATCH_NORM_MODEL, bnRuns]] as const) {
    if (list.length > 1) sentences.push(`There are ${list.length} ${model} runs; this compares the first one given, ${list[0].label}.`);
  }
  if (!Number.isFinite(d.finalGap) || !Number.isFinite(b.finalGap)) {
    const without = [d, b].filter((r) => !Number.isFinite(r.finalGap)).map((r) => r.label);
    sentences.push(`${without.join(' and ')} recorded no epoch with both a training and a validation accuracy, so the gap between them cannot be measured; rerun it with a validation split.`);
    return { verdict: 'undecided', sentences };
  }

  const unmeasurable = gapMeasuresNoOverfitting(d, b);
  if (unmeasurable !== undefined) {
    sentences.push(unmeasurable, ...caveats(d, b));
    return { verdict: 'undecided', sentences };
  }

  // Gap: the smaller one did more against overfitting.
  const gapDiff = d.finalGap - b.finalGap;
  const gapWinner = Math.abs(gapDiff) < GAP_MARGIN ? undefined : gapDiff < 0 ? 'dropout' : 'bn';
  const lastEpochs = d.gapEpochs === b.gapEpochs ? `the last ${d.gapEpochs} epoch${d.gapEpochs === 1 ? '' : 's'}` : 'the last epochs';
  let gapSentence =
    `At the end of training, ${DROPOUT_MODEL}'s training accuracy was ${signedGap(d.finalGap)} its validation accuracy and ${BATCH_NORM_MODEL}'s was ${signedGap(b.finalGap)} its own (mean gap over ${lastEpochs})`;
  gapSentence +=
    gapWinner === undefined
      ? `: they differ by only ${points(Math.abs(gapDiff))}, less than the ${points(GAP_MARGIN)} this report counts as a difference.`
      : `: the gap is ${points(Math.abs(gapDiff))} smaller with ${NAMES[gapWinner]}.`;
  sentences.push(gapSentence);

  // Peak: the later (relative to the run's length) one kept improving on held-out data for longer.
  const dPeak = d.bestValEpoch / d.epochsRun;
  const bPeak = b.bestValEpoch / b.epochsRun;
  const peakWinner = !Number.isFinite(dPeak) || !Number.isFinite(bPeak) || Math.abs(dPeak - bPeak) < PEAK_MARGIN ? undefined : dPeak > bPeak ? 'dropout' : 'bn';
  const peakFacts = `${percent(d.bestValAccuracy)} in epoch ${d.bestValEpoch} of ${d.epochsRun} for ${DROPOUT_MODEL} and ${percent(b.bestValAccuracy)} in epoch ${b.bestValEpoch} of ${b.epochsRun} for ${BATCH_NORM_MODEL}`;
  const peaksKnown = Number.isFinite(d.bestValEpoch) && Number.isFinite(b.bestValEpoch);
  if (peaksKnown) sentences.push(
    peakWinner === undefined
      ? `Validation accuracy peaked at about the same point of training in both: ${peakFacts}.`
      : `Validation accuracy kept improving for longer with ${NAMES[peakWinner]}: it peaked at ${peakFacts}.`,
  );

  // Test accuracy: reported beside the overfitting measures, since less overfitting is not the same as a better model.
  const testDiff = d.testAccuracy - b.testAccuracy;
  const testWinner = !Number.isFinite(testDiff) || Math.abs(testDiff) < TEST_MARGIN ? undefined : testDiff > 0 ? 'dropout' : 'bn';
  const testFacts = `${DROPOUT_MODEL} ${percent(d.testAccuracy)}, ${BATCH_NORM_MODEL} ${percent(b.testAccuracy)}`;
  sentences.push(
    testWinner === undefined
      ? `On the test set they are level (${testFacts}).`
      : `On the test set ${testWinner === 'dropout' ? DROPOUT_MODEL : BATCH_NORM_MODEL} scored ${points(Math.abs(testDiff))} higher (${testFacts}).`,
  );

  const baseline = BASELINE_MODELS.map((m) => runs.find((r) => r.model === m)).find((r) => r !== undefined && Number.isFinite(r.finalGap));
  if (baseline !== undefined) sentences.push(baselineSentence(baseline, d, b));

  const winner = gapWinner ?? peakWinner;
  if (winner === undefined) {
    sentences.push(
      `Verdict: on these numbers neither did clearly more against overfitting; the gaps (${signedGap(d.finalGap)} vs ${signedGap(b.finalGap)}) and the peak epochs (${d.bestValEpoch} of ${d.epochsRun} vs ${b.bestValEpoch} of ${b.epochsRun}) are too close to separate them.`,
    );
  } else {
    const [w, l] = winner === 'dropout' ? [d, b] : [b, d];
    const reason =
      gapWinner !== undefined
        ? `its final gap was smaller (training accuracy ${signedGap(w.finalGap)} validation, against ${signedGap(l.finalGap)})`
        : `the gaps were close, but its validation accuracy peaked later (epoch ${w.bestValEpoch} of ${w.epochsRun} vs ${l.bestValEpoch} of ${l.epochsRun})`;
    let verdict = `Verdict: ${NAMES[winner]} did more against overfitting in these runs: ${reason}`;
    if (testWinner !== undefined && testWinner !== winner) {
      verdict += `; ${NAMES[testWinner]} still reached the higher test accuracy (${percent(l.testAccuracy)} vs ${percent(w.testAccuracy)}), so less overfitting did not make the better classifier here`;
    }
    sentences.push(`${verdict}.`);
  }
  sentences.push(...caveats(d, b));
  return { verdict: winner === undefined ? 'undecided' : winner === 'dropout' ? 'dropout' : 'batch-normalization', sentences };
}

/**
 * Why the runs' gaps cannot tell overfitting apart, where they cannot: a cnn-bn run too short for
 * its moving statistics, or a run that never left chance on held-out data. Either way the gap
 * measures a model that has not generalized yet, and the report draws no verdict.
 */
function gapMeasuresNoOverfitting(d: RunSummary, b: RunSummary): string | undefined {
  if (b.steps !== undefined && b.steps < BN_WARM_STEPS) {
    return `${b.label} took only ${b.steps} steps: its BatchNorm moving statistics (momentum 0.99) need about ${BN_WARM_STEPS} to catch up with its weights, so its validation accuracy (${percent(b.bestValAccuracy)} at best, against ${percent(b.history.at(-1)?.accuracy ?? Number.NaN)} in training) understates the model and its gap measures that, not overfitting. This report draws no verdict; train it for more steps and compare again.`;
  }
  const atChance = [d, b].filter((r) => !(r.bestValAccuracy >= CHANCE_ACCURACY + ABOVE_CHANCE));
  if (atChance.length === 0) return undefined;
  const facts = atChance.map((r) => `${r.label} peaked at ${percent(r.bestValAccuracy)}`).join(' and ');
  return `${facts} on validation, within ${points(ABOVE_CHANCE)} of chance (${percent(CHANCE_ACCURACY)}): a gap against that measures a model that has not learned to generalize yet (a very short run, or for ${BATCH_NORM_MODEL} moving statistics that have not caught up), not overfitting, so this report draws no verdict. Train longer and compare again.`;
}

/** "3.2 points above" or, where validation accuracy is the higher, "1.5 points below". */
function signedGap(gap: number): string {
  return `${points(Math.abs(gap))} ${gap < 0 ? 'below' : 'above'}`;
}

function baselineSentence(base: RunSummary, d: RunSummary, b: RunSummary): string {
  const change = (r: RunSummary) => {
    const diff = base.finalGap - r.finalGap;
    if (Math.abs(diff) < GAP_MARGIN) return `${r.model} ${points(r.finalGap)} (about the same)`;
    return `${r.model} ${points(r.finalGap)} (${points(Math.abs(diff))} ${diff > 0 ? 'narrower' : 'wider'})`;
  };
  return `For contrast, ${base.label}, which has neither dropout nor batch normalization, ended with a gap of ${points(base.finalGap)}, against ${change(d)} and ${change(b)}.`;
}

function caveats(d: RunSummary, b: RunSummary): string[] {
  const notes: string[] = [];
  if (d.epochsRun !== b.epochsRun) {
    notes.push(`Note that the runs trained for different numbers of epochs (${d.epochsRun} vs ${b.epochsRun}), and a longer run has more time to overfit.`);
  }
  if (d.dataset !== undefined && b.dataset !== undefined && d.dataset !== b.dataset) {
    notes.push(`Note that the runs used different datasets (${d.dataset} vs ${b.dataset}), so their numbers do not compare directly.`);
  } else if (d.dataset === 'synthetic' && b.dataset === 'synthetic') {
    notes.push('Both runs used the synthetic dataset, so this says nothing yet about CIFAR-10.');
  }
  return notes;
}

function missingRuns(runs: readonly RunSummary[], haveDropout: boolean, haveBn: boolean): RegularizationFinding {
  const missing = [haveDropout ? undefined : DROPOUT_MODEL, haveBn ? undefined : BATCH_NORM_MODEL].filter((m): m is string => m !== undefined);
  const given = runs.length === 0 ? 'no runs' : `runs of ${[...new Set(runs.map((r) => r.model))].join(', ')}`;
  return {
    verdict: 'missing-runs',
    sentences: [
      `Comparing dropout with batch normalization needs a ${DROPOUT_MODEL} run and a ${BATCH_NORM_MODEL} run; this report was given ${given}, with no ${missing.join(' and no ')} run.`,
      `Train the ${missing.join(' and ')} model${missing.length > 1 ? 's' : ''} and pass ${missing.length > 1 ? 'their run folders' : 'its run folder'} to dtrain report together with these.`,
    ],
  };
}
