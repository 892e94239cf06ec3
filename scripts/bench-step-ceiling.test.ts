import { describe, expect, it } from 'vitest';
import { barrier, measureCeilingRun, measureStepCeilingInChild, parseSettings } from './bench-step-ceiling.ts';
import { ConfigError } from '../common/errors.ts';

describe('the step-ceiling barrier', () => {
  it('lets the last of the threads through at once and counts every arrival', () => {
    const words = new Int32Array(new SharedArrayBuffer(16));
    Atomics.store(words, 0, 1); // the other thread has arrived
    expect(barrier(words, 2, 1)).toBe(0);
    expect(Atomics.load(words, 0)).toBe(2);
  });

  it('fails, naming how many threads it waited for, when a thread never arrives', () => {
    const words = new Int32Array(new SharedArrayBuffer(16));
    expect(() => barrier(words, 3, 1, 0, 30)).toThrow('waited 30 ms at the barrier for 2 of 3 threads');
  });
});

describe('the step-ceiling command line', () => {
  it('takes models, thread counts and durations', () => {
    expect(parseSettings(['--models', 'mlp,lenet', '--threads', '1,2', '--rounds', '2', '--seconds', '0.5'])).toMatchObject({ models: ['mlp', 'lenet'], threads: [1, 2], rounds: 2, seconds: 0.5, warmSeconds: 1 });
  });

  it('refuses a model with BatchNorm and counts that are not positive', () => {
    expect(() => parseSettings(['--models', 'cnn-bn'])).toThrow(ConfigError);
    expect(() => parseSettings(['--models', 'cnn-bn'])).toThrow('models without BatchNorm (mlp, lenet, cnn-dropout), got "cnn-bn"');
    expect(() => parseSettings(['--rounds', '0'])).toThrow('--rounds must be a positive integer, got "0"');
    expect(() => parseSettings(['--threads', '1,x'])).toThrow('--threads must be a positive integer, got "x"');
    expect(() => parseSettings(['--help'])).toThrow(/Unknown option '--help'[\s\S]*Usage: npx tsx scripts\/bench-step-ceiling\.ts/);
  });
});

describe('a step-ceiling run', () => {
  it('runs two threads through whole steps: the stripes move every weight of the model, and each part of a thread fits in the step', async () => {
    const { run, weights } = await measureCeilingRun('mlp', 2, false, { warmSeconds: 0.05, seconds: 0.05 });
    expect(run).toMatchObject({ model: 'mlp', kind: 'step', threads: 2, batch: 32 });
    expect(run.steps).toBeGreaterThanOrEqual(20);
    expect(run.parts).toHaveLength(2);
    for (const p of run.parts) {
      expect(p.computeMs).toBeGreaterThan(0);
      expect(p.stripeMs).toBeGreaterThan(0);
      expect(p.computeMs + p.stripeMs + p.waitedMs).toBeLessThanOrEqual(run.stepMs * 1.01);
    }
    expect(run.imagesPerSecond).toBeCloseTo((2 * 32 * 1000) / run.stepMs, 6);
    // Both stripes wrote the copy that is current after the last step: no weight is left as it began.
    let moved = 0;
    for (let i = 0; i < weights.before.length; i++) if (weights.after[i] !== weights.before[i]) moved++;
    expect(moved).toBeGreaterThan(0.99 * weights.before.length);
    expect(weights.after.every(Number.isFinite)).toBe(true);
  }, 120_000);

  it('runs the bare pass on one thread only', async () => {
    await expect(measureCeilingRun('mlp', 2, true, { warmSeconds: 0.05, seconds: 0.05 })).rejects.toThrow('The bare pass runs on one thread, but 2 were asked for.');
  });
});

describe('the step ceiling in a process of its own', () => {
  it('fails the section with what the child said when it cannot run', async () => {
    const lines: string[] = [];
    const plan = { models: ['cnn-bn' as const], threads: [1, 2], rounds: 1, warmSeconds: 0.05, seconds: 0.05 };
    await expect(measureStepCeilingInChild(plan, (m) => lines.push(m))).rejects.toThrow(/bench-step-ceiling\.ts exited with 2: bench-step-ceiling: --models takes models without BatchNorm/);
    expect(lines).toEqual([]);
  }, 60_000);
});
