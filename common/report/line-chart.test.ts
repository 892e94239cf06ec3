import { describe, expect, it } from 'vitest';
import { niceStep, niceTicks, PALETTE, renderLineChart } from './line-chart.ts';
import { countColour, decodePng, pixelStats, pngSize } from './test-fixtures.ts';

describe('niceTicks', () => {
  it('picks steps of 1, 2 or 5 times a power of ten', () => {
    // span 1.4 / 6 parts = 0.233 → next nice step is 0.5
    expect(niceStep(1.4, 6)).toBeCloseTo(0.5);
    // span 19 / 9 parts = 2.1 → 5
    expect(niceStep(19, 9)).toBe(5);
    // span 0.05 / 6 = 0.0083 → 0.01
    expect(niceStep(0.05, 6)).toBeCloseTo(0.01);
  });

  it('covers the data with whole steps', () => {
    const t = niceTicks(0.31, 0.72, 6);
    // step 0.1: 0.3 … 0.8
    expect(t.step).toBeCloseTo(0.1);
    expect(t.values).toEqual([0.3, 0.4, 0.5, 0.6, 0.7, 0.8]);
    expect(t.min).toBeLessThanOrEqual(0.31);
    expect(t.max).toBeGreaterThanOrEqual(0.72);
  });

  it('spreads a single value into a range around it', () => {
    const t = niceTicks(1.5, 1.5, 6);
    expect(t.min).toBeLessThan(1.5);
    expect(t.max).toBeGreaterThan(1.5);
    expect(t.values.length).toBeGreaterThan(1);
  });

  it('keeps integer axes on whole numbers', () => {
    const t = niceTicks(1, 3, 10, { integer: true });
    expect(t.values).toEqual([1, 2, 3]);
  });
});

describe('renderLineChart', () => {
  const base = { title: 'Chart', xLabel: 'Epoch', yLabel: 'Value' };

  it('writes a PNG of the requested size that is not blank', async () => {
    const png = renderLineChart({ ...base, width: 640, height: 360, series: [{ name: 'a', color: PALETTE[0], points: [[1, 1], [2, 0.5], [3, 0.2]] }] });
    expect(pngSize(png)).toEqual({ width: 640, height: 360 });
    const image = await decodePng(png);
    const stats = pixelStats(image);
    expect(stats.colours).toBeGreaterThan(20);
    expect(stats.variance).toBeGreaterThan(10);
  });

  it('draws every series in its own colour', async () => {
    const image = await decodePng(
      renderLineChart({
        ...base,
        series: [
          { name: 'first', color: '#d62728', points: [[1, 1], [2, 2], [3, 3]] },
          { name: 'second', color: '#2ca02c', dashed: true, points: [[1, 3], [2, 2], [3, 1]] },
        ],
      }),
    );
    expect(countColour(image, '#d62728')).toBeGreaterThan(200);
    expect(countColour(image, '#2ca02c')).toBeGreaterThan(100);
  });

  it('draws text with the bundled font (the title area is not empty)', async () => {
    const withTitle = await decodePng(renderLineChart({ ...base, title: 'A fairly long title', series: [] }));
    const withoutTitle = await decodePng(renderLineChart({ ...base, title: '', series: [] }));
    const titleBand = { x: 0, y: 10, w: 900, h: 30 };
    expect(pixelStats(withTitle, titleBand).colours).toBeGreaterThan(5);
    expect(pixelStats(withoutTitle, titleBand).colours).toBe(1);
  });

  it('marks a lone point, which has no line to show it', async () => {
    const image = await decodePng(renderLineChart({ ...base, series: [{ name: 'one', color: '#9467bd', points: [[1, 0.4]] }], markers: 'never' }));
    // the legend swatch also uses the colour; the plot must add a marker on top of that
    const legendOnly = await decodePng(renderLineChart({ ...base, series: [{ name: 'one', color: '#9467bd', points: [[1, Number.NaN]] }], markers: 'never' }));
    expect(countColour(image, '#9467bd')).toBeGreaterThan(countColour(legendOnly, '#9467bd') + 15);
  });

  it('breaks the line at non-finite values instead of failing', () => {
    expect(() => renderLineChart({ ...base, series: [{ name: 'nan', color: '#000000', points: [[1, 1], [2, Number.NaN], [3, 2]] }] })).not.toThrow();
  });
});
