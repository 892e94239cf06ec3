import { describe, expect, it } from 'vitest';
import type { NetsimReport, NetsimRun } from './netsim-model.ts';
import { betaReading, loadNote } from './netsim-report.ts';

function report(loads: number[]): NetsimReport {
  const runs = loads.map((load) => ({ loadStart: [load, 0, 0] }) as unknown as NetsimRun);
  return { machine: { cores: 2, cpu: 'test', node: 'v20' }, runs } as unknown as NetsimReport;
}

describe('the load note', () => {
  it('judges the machine by the first run: later runs carry netsim\'s own load', () => {
    const quiet = loadNote(report([0.2, 3.1, 4.9]));
    expect(quiet).toMatch(/^> \*\*Load\.\*\* The machine was otherwise idle/);
    expect(quiet).toContain('0.20 when the first run started');
    expect(quiet).toContain('up to 4.9');
  });

  it('warns when other work shared the machine from the start', () => {
    const noisy = loadNote(report([17.3, 27.5]));
    expect(noisy).toMatch(/^> \*\*Noisy machine\.\*\* The 1-minute load average was 17.3 when the first run started/);
    expect(noisy).toContain('up to 27.5');
  });
});

describe('the reading of a freely fitted β', () => {
  it('says which way the wire time moved', () => {
    expect(betaReading(0.75)).toContain('less than the whole wire time');
    expect(betaReading(1.4)).toContain('more than the wire time');
    expect(betaReading(1.0)).toContain('accounts for the transfers');
  });
});
