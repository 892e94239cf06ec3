/**
 * The pictures and summary kept in a run folder. The trainer may call this after every epoch, so
 * each file is replaced atomically: someone watching loss.png never opens a half-written PNG.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../atomic-write.ts';
import { renderCurves } from './curves.ts';
import { renderPredictions, type PredictionSheet } from './grid.ts';
import type { TrainingHistory } from './run-files.ts';

export const RUN_PICTURE_FILES = {
  loss: 'loss.png',
  accuracy: 'accuracy.png',
  summary: 'summary.txt',
  predictions: 'predictions.png',
} as const;

export interface RunPictures {
  history: TrainingHistory;
  /** Written as-is to summary.txt (a trailing newline is added when missing). */
  summaryText: string;
  /** Test images with labels and predictions; predictions.png is written only when given. */
  predictions?: PredictionSheet;
}

/** Writes loss.png, accuracy.png, summary.txt and, given predictions, predictions.png; returns their paths. */
export async function writeRunPictures(runDir: string, pictures: RunPictures): Promise<string[]> {
  const curves = renderCurves(pictures.history);
  const files: [string, string | Buffer][] = [
    [RUN_PICTURE_FILES.loss, curves.loss],
    [RUN_PICTURE_FILES.accuracy, curves.accuracy],
    [RUN_PICTURE_FILES.summary, pictures.summaryText.endsWith('\n') ? pictures.summaryText : `${pictures.summaryText}\n`],
  ];
  if (pictures.predictions !== undefined) files.push([RUN_PICTURE_FILES.predictions, renderPredictions(pictures.predictions)]);
  const paths: string[] = [];
  for (const [name, data] of files) {
    const path = join(runDir, name);
    await writeFileAtomic(path, data);
    paths.push(path);
  }
  return paths;
}
