/**
 * `dtrain scratch`: run the from-scratch two-layer network once and show its loss and gradients,
 * checked against the assignment's numbers when the flags reproduce the assignment.
 *
 * Everything but registerScratchCommand is pure, so the report can be tested without a process.
 */
import { Command, Option } from 'commander';
import { ConfigError } from '../../common/errors.ts';
import {
  ASSIGNMENT_EXPECTED,
  ASSIGNMENT_TOLERANCE,
  EXERCISE_DEFAULTS,
  type Gradients,
  initialiseExercise,
  lossAndGradients,
} from '../../common/scratch/two-layer.ts';

/**
 * Flag limits, checked before any work. The network is held in plain nested arrays, so size is
 * capped: the largest run (100k samples, 64 units) takes about 6 s and 0.5 GB on one core.
 */
export const SCRATCH_LIMITS = Object.freeze({
  seed: { min: 0, max: 0xffffffff }, // what np.random.seed accepts
  samples: { min: 1, max: 100_000 },
  hidden: { min: 1, max: 64 },
});

export interface ScratchFlags {
  seed: number;
  samples: number;
  hidden: number;
  json: boolean;
}

/** What commander hands the action: option-arguments stay strings until parseScratchFlags. */
export interface RawScratchFlags {
  seed?: string;
  samples?: string;
  hidden?: string;
  json?: boolean;
}

type Quantity = 'loss' | keyof Gradients;

export interface ScratchComparison {
  quantity: Quantity;
  matches: boolean;
  maxAbsDifference: number;
  tolerance: number;
}

export interface ScratchReport {
  flags: ScratchFlags;
  loss: number;
  gradients: Gradients;
  /** Null when the flags differ from the assignment's, because its numbers do not apply then. */
  comparison: ScratchComparison[] | null;
}

/** Turns raw flag strings into numbers, or throws ConfigError naming the flag, the range and the input. */
export function parseScratchFlags(raw: RawScratchFlags): ScratchFlags {
  return {
    seed: parseIntegerFlag('seed', raw.seed, EXERCISE_DEFAULTS.seed),
    samples: parseIntegerFlag('samples', raw.samples, EXERCISE_DEFAULTS.samples),
    hidden: parseIntegerFlag('hidden', raw.hidden, EXERCISE_DEFAULTS.hidden),
    json: raw.json === true,
  };
}

function parseIntegerFlag(name: keyof typeof SCRATCH_LIMITS, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const { min, max } = SCRATCH_LIMITS[name];
  // Digits only: Number() would also take '', ' 5', '1e3', '0x10' and '2.0'.
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (!(value >= min && value <= max)) {
    throw new ConfigError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

export function scratchReport(flags: ScratchFlags): ScratchReport {
  const { loss, gradients } = lossAndGradients(initialiseExercise(flags));
  const isAssignment =
    flags.seed === EXERCISE_DEFAULTS.seed &&
    flags.samples === EXERCISE_DEFAULTS.samples &&
    flags.hidden === EXERCISE_DEFAULTS.hidden;
  return { flags, loss, gradients, comparison: isAssignment ? compareWithAssignment(loss, gradients) : null };
}

function compareWithAssignment(loss: number, gradients: Gradients): ScratchComparison[] {
  const actual: Record<Quantity, number[]> = {
    loss: [loss],
    W1: gradients.W1.flat(),
    b1: gradients.b1,
    W2: gradients.W2,
    b2: [gradients.b2],
  };
  const expected: Record<Quantity, number[]> = {
    loss: [ASSIGNMENT_EXPECTED.loss],
    W1: ASSIGNMENT_EXPECTED.W1.flat(),
    b1: ASSIGNMENT_EXPECTED.b1,
    W2: ASSIGNMENT_EXPECTED.W2,
    b2: [ASSIGNMENT_EXPECTED.b2],
  };
  return (Object.keys(actual) as Quantity[]).map((quantity) => {
    const maxAbsDifference = Math.max(...actual[quantity].map((v, i) => Math.abs(v - expected[quantity][i])));
    const tolerance = ASSIGNMENT_TOLERANCE[quantity];
    return { quantity, matches: maxAbsDifference <= tolerance, maxAbsDifference, tolerance };
  });
}

/** The --json output: one object, full precision (JSON numbers round-trip float64 exactly). */
export function formatScratchJson(report: ScratchReport): string {
  const { W1, b1, W2, b2 } = report.gradients;
  return JSON.stringify({ loss: report.loss, gradients: { W1, b1, W2, b2 } });
}

/** The human output: one row per hidden unit, since every gradient but db2 has one entry per unit. */
export function formatScratchTable(report: ScratchReport): string {
  const { flags, loss, gradients } = report;
  const header = ['unit', 'dL/dW1[:,0]', 'dL/dW1[:,1]', 'dL/db1', 'dL/dW2'];
  const rows = gradients.W1.map((w, j) => [String(j), ...[w[0], w[1], gradients.b1[j], gradients.W2[j]].map(signed)]);
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]): string => cells.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd();
  const lines = [
    `Two-layer sigmoid network from scratch: seed ${flags.seed}, ${flags.samples} samples, ${flags.hidden} hidden units (float64)`,
    '',
    `loss    ${signed(loss)}`,
    `dL/db2  ${signed(gradients.b2)}`,
    '',
    line(header),
    ...rows.map(line),
    '',
  ];
  if (report.comparison === null) {
    lines.push(
      `Comparison with the assignment does not apply: it used seed ${EXERCISE_DEFAULTS.seed}, ` +
        `${EXERCISE_DEFAULTS.samples} samples, ${EXERCISE_DEFAULTS.hidden} hidden units.`,
    );
  } else {
    lines.push("Against the assignment's values:");
    for (const c of report.comparison) {
      const mark = c.matches ? '✓' : '✗';
      lines.push(`  ${mark} ${c.quantity.padEnd(4)}  max |diff| ${c.maxAbsDifference.toExponential(2)}  (tolerance ${c.tolerance.toExponential(2)})`);
    }
  }
  return lines.join('\n');
}

/** A leading space for non-negative numbers keeps the columns' digits aligned. */
function signed(value: number): string {
  return value < 0 || Object.is(value, -0) ? String(value) : ` ${value}`;
}

export function registerScratchCommand(program: Command): Command {
  return program
    .command('scratch')
    .description("two-layer sigmoid network with hand-written forward and backward passes, checked against the assignment's numbers")
    .addOption(new Option('--seed <n>', `np.random.seed value, ${SCRATCH_LIMITS.seed.min} to ${SCRATCH_LIMITS.seed.max}`).default(String(EXERCISE_DEFAULTS.seed)))
    .addOption(new Option('--samples <n>', `rows of X, up to ${SCRATCH_LIMITS.samples.max}`).default(String(EXERCISE_DEFAULTS.samples)))
    .addOption(new Option('--hidden <n>', `hidden units, up to ${SCRATCH_LIMITS.hidden.max}`).default(String(EXERCISE_DEFAULTS.hidden)))
    .addOption(new Option('--json', 'print one JSON object {loss, gradients} instead of the table'))
    .action((raw: RawScratchFlags) => {
      const report = scratchReport(parseScratchFlags(raw));
      process.stdout.write(`${report.flags.json ? formatScratchJson(report) : formatScratchTable(report)}\n`);
    });
}
