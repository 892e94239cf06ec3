import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Command } from 'commander';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../common/errors.ts';
import { initialiseExercise, lossAndGradients } from '../../common/scratch/two-layer.ts';
import {
  type ScratchReport,
  formatScratchJson,
  formatScratchTable,
  parseScratchFlags,
  registerScratchCommand,
  scratchReport,
} from './scratch.ts';

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const entry = fileURLToPath(new URL('./fixtures/scratch-entry.ts', import.meta.url));
const ASSIGNMENT_FLAGS = { seed: 0, samples: 1000, hidden: 3, json: false };

describe('parseScratchFlags', () => {
  it('falls back to the assignment configuration', () => {
    expect(parseScratchFlags({})).toEqual(ASSIGNMENT_FLAGS);
  });

  it('accepts the ends of each range', () => {
    expect(parseScratchFlags({ seed: '4294967295', samples: '100000', hidden: '64', json: true })).toEqual({
      seed: 4294967295,
      samples: 100000,
      hidden: 64,
      json: true,
    });
    expect(parseScratchFlags({ seed: '0', samples: '1', hidden: '1' })).toMatchObject({ seed: 0, samples: 1, hidden: 1 });
  });

  it.each([
    [{ samples: 'abc' }, '--samples must be an integer from 1 to 100000, got "abc"'],
    [{ samples: '0' }, '--samples must be an integer from 1 to 100000, got "0"'],
    [{ samples: '100001' }, '--samples must be an integer from 1 to 100000, got "100001"'],
    [{ samples: '1e3' }, '--samples must be an integer from 1 to 100000, got "1e3"'],
    [{ samples: '' }, '--samples must be an integer from 1 to 100000, got ""'],
    [{ hidden: '2.0' }, '--hidden must be an integer from 1 to 64, got "2.0"'],
    [{ hidden: ' 3' }, '--hidden must be an integer from 1 to 64, got " 3"'],
    [{ hidden: '0x10' }, '--hidden must be an integer from 1 to 64, got "0x10"'],
    [{ seed: '-1' }, '--seed must be an integer from 0 to 4294967295, got "-1"'],
    [{ seed: '4294967296' }, '--seed must be an integer from 0 to 4294967295, got "4294967296"'],
  ])('rejects %o', (raw, message) => {
    let thrown: unknown;
    try {
      parseScratchFlags(raw);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).message).toBe(message);
    expect((thrown as ConfigError).code).toBe('DTRAIN_ERR_CONFIG');
  });
});

describe('scratchReport', () => {
  it('reproduces the assignment with the default flags and says so for every quantity', () => {
    const report = scratchReport(ASSIGNMENT_FLAGS);
    expect(report.loss).toBe(0.1332476222330792);
    expect(report.comparison?.map((c) => [c.quantity, c.matches])).toEqual([
      ['loss', true],
      ['W1', true],
      ['b1', true],
      ['W2', true],
      ['b2', true],
    ]);
    // W1 [1][1] is -0.000241875023 against a printed -0.00024188: just inside half of 1e-8.
    expect(report.comparison?.find((c) => c.quantity === 'W1')?.maxAbsDifference).toBeCloseTo(4.977e-9, 11);
  });

  it('makes no comparison when any flag differs from the assignment', () => {
    for (const change of [{ seed: 1 }, { samples: 999 }, { hidden: 4 }]) {
      expect(scratchReport({ ...ASSIGNMENT_FLAGS, ...change }).comparison).toBeNull();
    }
  });
});

describe('formatScratchJson', () => {
  it('prints one object with the loss and the four gradients at full precision', () => {
    const report = scratchReport({ ...ASSIGNMENT_FLAGS, seed: 1, samples: 10, hidden: 5 });
    const text = formatScratchJson(report);
    expect(text).not.toContain('\n');
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['loss', 'gradients']);
    expect(Object.keys(parsed.gradients as object)).toEqual(['W1', 'b1', 'W2', 'b2']);
    expect(parsed).toEqual({ loss: report.loss, gradients: report.gradients }); // toEqual on numbers is exact
  });
});

describe('formatScratchTable', () => {
  it('shows the loss, every gradient entry and a tick per quantity for the assignment', () => {
    const report = scratchReport(ASSIGNMENT_FLAGS);
    const text = formatScratchTable(report);
    expect(text).toContain('loss     0.1332476222330792');
    expect(text).toContain('dL/db2   0.029249230265318685');
    for (const value of [...report.gradients.W1.flat(), ...report.gradients.b1, ...report.gradients.W2]) {
      expect(text).toContain(String(value));
    }
    for (const quantity of ['loss', 'W1', 'b1', 'W2', 'b2']) expect(text).toMatch(new RegExp(`✓ ${quantity} `));
    expect(text).not.toContain('✗');
  });

  it('marks a quantity that misses the assignment with a cross and its difference', () => {
    const report: ScratchReport = {
      ...scratchReport(ASSIGNMENT_FLAGS),
      comparison: [{ quantity: 'b1', matches: false, maxAbsDifference: 0.00125, tolerance: 5e-9 }],
    };
    expect(formatScratchTable(report)).toContain('✗ b1    max |diff| 1.25e-3  (tolerance 5.00e-9)');
  });

  it('says the comparison does not apply for other flags', () => {
    const text = formatScratchTable(scratchReport({ ...ASSIGNMENT_FLAGS, hidden: 2 }));
    expect(text).toContain('Comparison with the assignment does not apply');
    expect(text).not.toMatch(/[✓✗]/);
  });
});

describe('registerScratchCommand', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  function program(): Command {
    const root = new Command('dtrain').exitOverride();
    registerScratchCommand(root);
    return root;
  }

  it('writes the JSON report for --json', async () => {
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    await program().parseAsync(['scratch', '--json', '--hidden', '2'], { from: 'user' });
    expect(write).toHaveBeenCalledTimes(1);
    const expected = lossAndGradients(initialiseExercise({ hidden: 2 }));
    expect(JSON.parse(String(write.mock.calls[0][0]))).toEqual(expected);
  });

  it('throws ConfigError for a bad flag before computing anything', async () => {
    const write = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    const parsing = program().parseAsync(['scratch', '--hidden', '65'], { from: 'user' });
    await expect(parsing).rejects.toBeInstanceOf(ConfigError);
    await expect(parsing).rejects.toThrow('--hidden must be an integer from 1 to 64, got "65"');
    expect(write).not.toHaveBeenCalled();
  });
});

describe('dtrain scratch as a process', () => {
  it('prints exactly one JSON object that parses back to the in-process result', async () => {
    const { stdout } = await run(process.execPath, ['--import', 'tsx', entry, 'scratch', '--json'], { cwd: repoRoot });
    expect(stdout.trimEnd().split('\n')).toHaveLength(1);
    const parsed = JSON.parse(stdout) as unknown;
    expect(parsed).toEqual(lossAndGradients(initialiseExercise()));
    expect((parsed as { loss: number }).loss).toBe(0.1332476222330792);
  });

  it('exits non-zero with the flag named on stderr for a bad value', async () => {
    const failure = await run(process.execPath, ['--import', 'tsx', entry, 'scratch', '--samples', 'abc'], {
      cwd: repoRoot,
    }).then(
      () => null,
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    expect(failure).not.toBeNull();
    expect(failure?.code).toBe(2);
    expect(failure?.stdout).toBe('');
    expect(failure?.stderr).toContain('--samples must be an integer from 1 to 100000, got "abc"');
    expect(failure?.stderr).not.toContain('    at '); // no stack trace for a user error
  });
});
