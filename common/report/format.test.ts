import { describe, expect, it } from 'vitest';
import { duration, fixed, integer, percent, points } from './format.ts';

describe('report number formats', () => {
  it('prints fractions as percentages and differences as points', () => {
    expect(percent(0.5712)).toBe('57.1%');
    expect(points(0.041)).toBe('4.1 points');
    expect(points(-0.2)).toBe('-20.0 points');
  });

  it('prints durations in the largest sensible units', () => {
    expect(duration(12.34)).toBe('12.3 s');
    expect(duration(250.1)).toBe('4 m 10 s');
    expect(duration(65)).toBe('1 m 05 s');
    expect(duration(3725)).toBe('1 h 02 m');
  });

  it('groups thousands', () => {
    expect(integer(62006)).toBe('62,006');
    expect(integer(3100.4)).toBe('3,100');
  });

  it('prints n/a for values a diverged run could not produce', () => {
    for (const f of [percent, points, duration, integer, (v: number) => fixed(v, 3)]) expect(f(Number.NaN)).toBe('n/a');
  });
});
