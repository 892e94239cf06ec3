import { describe, expect, it } from 'vitest';
import { renderCurves, TRAIN_COLOR, VALIDATION_COLOR } from './curves.ts';
import { countColour, decodePng, fakeHistory, pixelStats, pngSize } from './test-fixtures.ts';

const history = fakeHistory({ model: 'lenet', epochs: 12, trainAccuracy: 0.8, bestValAccuracy: 0.6, bestEpoch: 7, testAccuracy: 0.58 });

describe('renderCurves', () => {
  it('returns a loss and an accuracy PNG of 900×500', () => {
    const curves = renderCurves(history);
    expect(pngSize(curves.loss)).toEqual({ width: 900, height: 500 });
    expect(pngSize(curves.accuracy)).toEqual({ width: 900, height: 500 });
    expect(curves.loss.equals(curves.accuracy)).toBe(false);
  });

  it('draws both the training and the validation curve', async () => {
    for (const png of Object.values(renderCurves(history))) {
      const image = await decodePng(png);
      expect(pixelStats(image).colours).toBeGreaterThan(20);
      expect(countColour(image, TRAIN_COLOR)).toBeGreaterThan(300);
      expect(countColour(image, VALIDATION_COLOR)).toBeGreaterThan(200);
    }
  });

  it('shows a single epoch as markers', async () => {
    const one = renderCurves({ model: 'cnn-bn', epochs: history.epochs.slice(0, 1) });
    const image = await decodePng(one.accuracy);
    // legend swatches alone give ~70 train-coloured pixels; the marker adds a filled dot
    const plot = { x: 78, y: 56, w: 600, h: 380 };
    expect(countColour(image, TRAIN_COLOR, 8, plot)).toBeGreaterThan(20);
    expect(countColour(image, VALIDATION_COLOR, 8, plot)).toBeGreaterThan(10);
  });

  it('names the model in the title unless told otherwise', async () => {
    const a = renderCurves(history);
    const b = renderCurves(history, { title: 'something else' });
    expect(a.loss.equals(b.loss)).toBe(false);
    expect(renderCurves(history).loss.equals(a.loss)).toBe(true);
  });
});
