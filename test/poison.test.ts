/**
 * One worker that holds the token and answers every train task with finite 1e21 gradients, among
 * two honest ones, in a real (short) training run: each poisoned result is rejected and logged, the
 * worker is evicted and then refused for a cool-down, its slices are recomputed by honest workers,
 * and the run ends with the accuracy of a run without it.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';
import { startPoisoner, type Poisoner } from './poisoner.ts';

const TOKEN = 'poison-test-token';
const ENV = { DTRAIN_TOKEN: TOKEN };
let poisoner: Poisoner | undefined;

afterEach(() => {
  poisoner?.stop();
  killAll();
});

async function run(workers: number, withPoisoner: boolean): Promise<{ c: DtrainProcess; accuracy: number }> {
  const out = await tempDir();
  const c = new DtrainProcess(
    ['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--limit-train', '1280', '--limit-test', '500', '--model', 'lenet',
      '--backend', 'wasm', '--no-plots', '--epochs', '3', '--min-workers', String(workers + (withPoisoner ? 1 : 0)), '--out', out],
    ENV,
  );
  const port = (await c.waitFor('listening')).port as number;
  if (withPoisoner) poisoner = startPoisoner(`ws://127.0.0.1:${port}`, TOKEN);
  for (let i = 0; i < workers; i++) new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm'], ENV);
  await c.waitFor('run_finished', undefined, 90_000);
  const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
  return { c, accuracy: metrics.test_accuracy as number };
}

describe('a poisoning worker among two honest ones', () => {
  it('is rejected each time, refused after 3 evictions, and the run ends as accurate as without it', { timeout: 200_000 }, async () => {
    const clean = await run(2, false);
    const poisoned = await run(2, true);
    const rejected = poisoned.c.events('result_rejected');
    // Every poisoned result that reached the coordinator was rejected and logged with its norm and bound.
    expect(poisoner!.sent).toBeGreaterThanOrEqual(3);
    expect(rejected).toHaveLength(poisoner!.sent);
    for (const r of rejected) {
      expect(r.norm as number).toBeGreaterThan(1e20);
      expect(r.norm as number).toBeGreaterThan(r.bound as number);
      expect(typeof r.workerId).toBe('string');
    }
    expect(poisoned.c.events('cool_down')).toHaveLength(1);
    expect(poisoner!.refused).toBeGreaterThanOrEqual(1);
    // Refused every 200 ms, but logged at most once per 10 s per address.
    const refusalLines = poisoned.c.events('connection_refused');
    expect(refusalLines.length).toBeGreaterThanOrEqual(1);
    expect(refusalLines.length).toBeLessThan(poisoner!.refused);
    expect(poisoned.c.events('step_refused')).toHaveLength(0);
    console.log(`poison test: clean accuracy ${clean.accuracy}, poisoned ${poisoned.accuracy}, rejected ${rejected.length}, refused upgrades ${poisoner!.refused}`);
    expect(Math.abs(poisoned.accuracy - clean.accuracy)).toBeLessThanOrEqual(0.02);
    expect(clean.accuracy).toBeGreaterThan(0.5);
  });
});
