import { describe, expect, it } from 'vitest';
import { LogLimiter, StrikeCounter } from './admission.ts';

describe('StrikeCounter', () => {
  it('starts a cool-down at maxStrikes strikes within the window, and ends it after coolDownMs', () => {
    let now = 0;
    const s = new StrikeCounter({ maxStrikes: 3, windowMs: 1000, coolDownMs: 5000 }, () => now);
    expect(s.strike('a')).toBe(false);
    expect(s.strike('a')).toBe(false);
    expect(s.coolDownLeft('a')).toBe(0);
    expect(s.strike('a')).toBe(true);
    expect(s.coolDownLeft('a')).toBe(5000);
    now = 4999;
    expect(s.coolDownLeft('a')).toBe(1);
    now = 5000;
    expect(s.coolDownLeft('a')).toBe(0);
  });

  it('forgets strikes older than the window', () => {
    let now = 0;
    const s = new StrikeCounter({ maxStrikes: 2, windowMs: 1000, coolDownMs: 5000 }, () => now);
    s.strike('a');
    now = 1000;
    expect(s.strike('a')).toBe(false);
  });

  it('counts each address on its own', () => {
    const s = new StrikeCounter({ maxStrikes: 2, windowMs: 1000, coolDownMs: 5000 }, () => 0);
    s.strike('a');
    expect(s.strike('b')).toBe(false);
    expect(s.coolDownLeft('b')).toBe(0);
  });

  it('never cools down with maxStrikes 0', () => {
    const s = new StrikeCounter({ maxStrikes: 0, windowMs: 1000, coolDownMs: 5000 }, () => 0);
    for (let i = 0; i < 100; i++) expect(s.strike('a')).toBe(false);
  });

  it('keeps its memory bounded: stale addresses are pruned past 10,000', () => {
    let now = 0;
    const s = new StrikeCounter({ maxStrikes: 5, windowMs: 10, coolDownMs: 10 }, () => now);
    for (let i = 0; i < 10_000; i++) s.strike(`10.0.${i >> 8}.${i & 255}`);
    now = 100;
    s.strike('fresh');
    expect(s.size).toBe(1);
  });
});

describe('LogLimiter', () => {
  it('lets one line per key per interval through, then reports how many it held back', () => {
    let now = 0;
    const l = new LogLimiter(1000, () => now);
    expect(l.allow('k')).toBe(0);
    expect(l.allow('k')).toBeUndefined();
    expect(l.allow('k')).toBeUndefined();
    expect(l.allow('other')).toBe(0);
    now = 1000;
    expect(l.allow('k')).toBe(2);
  });
});
