/** One run's learning curves: training and validation loss, and the same for accuracy. */
import { PALETTE, renderLineChart, type LineSeries } from './line-chart.ts';
import type { EpochRecord, TrainingHistory } from './run-files.ts';

export interface CurveImages {
  loss: Buffer;
  accuracy: Buffer;
}

export interface CurveOptions {
  /** Replaces the model name at the start of each title: "<title> — loss". */
  title?: string;
  width?: number;
  height?: number;
}

export const TRAIN_COLOR = PALETTE[0];
export const VALIDATION_COLOR = PALETTE[1];

/** The [epoch, value] points of one per-epoch field. */
export function epochSeries(epochs: readonly EpochRecord[], field: 'loss' | 'accuracy' | 'val_loss' | 'val_accuracy'): [number, number][] {
  return epochs.map((e) => [e.epoch, e[field]]);
}

export function renderCurves(history: TrainingHistory, options: CurveOptions = {}): CurveImages {
  const name = options.title ?? history.model;
  const chart = (metric: 'loss' | 'accuracy', label: string) => {
    const series: LineSeries[] = [
      { name: 'train', color: TRAIN_COLOR, points: epochSeries(history.epochs, metric) },
      { name: 'validation', color: VALIDATION_COLOR, dashed: true, points: epochSeries(history.epochs, `val_${metric}`) },
    ];
    return renderLineChart({
      title: `${name} — ${metric}`,
      xLabel: 'Epoch',
      yLabel: label,
      series,
      width: options.width,
      height: options.height,
      yBounds: metric === 'accuracy' ? [0, 1] : [0, Number.POSITIVE_INFINITY],
      minYSpan: metric === 'accuracy' ? 0.1 : undefined,
    });
  };
  return { loss: chart('loss', 'Loss'), accuracy: chart('accuracy', 'Accuracy') };
}
