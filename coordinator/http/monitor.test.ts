import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../common/logger.ts';
import { Membership, type WorkerHandle } from '../membership.ts';
import type { Metrics } from '../run-files.ts';
import { RunMonitor } from './monitor.ts';
import { epochRecord } from './testing.ts';

const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function monitorIn(): Promise<{ monitor: RunMonitor; out: string }> {
  const out = await mkdtemp(join(tmpdir(), 'dtrain-monitor-'));
  dirs.push(out);
  return { monitor: new RunMonitor({ model: 'lenet', dataset: 'synthetic', epochs: 3, batchSize: 32, transport: 'websocket', out }), out };
}

function handle(id: string): WorkerHandle {
  return { id, name: `name-${id}`, backend: 'wasm', weightsVersion: -1, run: () => new Promise(() => {}), close: () => {} };
}

const trainer = { parameters: { total: 62_006, trainable: 62_006, nonTrainable: 0 }, currentPosition: { epoch: 1, sampleOffset: 0, globalStep: 243, epochLossSum: 0, epochCorrect: 0, epochSamples: 0, epochSeconds: 0 } };

describe('RunMonitor', () => {
  it('follows the membership into the status and the workers gauge', async () => {
    const { monitor } = await monitorIn();
    const membership = new Membership(silentLogger());
    await monitor.attach(membership, trainer, false);
    membership.join(handle('w1'));
    membership.join(handle('w2'));
    membership.leave('w1', 'evicted', 'stalled');
    expect(monitor.state.snapshot().workers.map((w) => [w.id, w.state])).toEqual([['w1', 'evicted'], ['w2', 'joined']]);
    expect(monitor.state.snapshot().run.parameters).toBe(62_006);
    expect((await monitor.metrics.render()).text).toMatch(/^dtrain_workers 1$/m);
  });

  it('never shows the run folder\'s path', async () => {
    const { monitor, out } = await monitorIn();
    expect(JSON.stringify(monitor.state.snapshot())).not.toContain(out);
  });

  it('restores a resumed run\'s epochs from history.json, and ignores it for a fresh run', async () => {
    const { monitor, out } = await monitorIn();
    await writeFile(join(out, 'history.json'), JSON.stringify({ model: 'lenet', epochs: [epochRecord({ epoch: 1 }), epochRecord({ epoch: 2 })] }));
    await monitor.attach(new Membership(silentLogger()), trainer, false);
    expect(monitor.state.snapshot().history.epochs).toEqual([]);
    expect(monitor.state.snapshot().events.map((e) => e.kind)).not.toContain('resumed');
    await monitor.attach(new Membership(silentLogger()), trainer, true);
    expect(monitor.state.snapshot().history.epochs.map((e) => e.epoch)).toEqual([1, 2]);
    // Its step curves begin at the checkpoint: the events say where it resumed.
    expect(monitor.state.snapshot().events.find((e) => e.kind === 'resumed')?.text).toBe('resumed from the checkpoint at step 243 (epoch 2)');
  });

  it('publishes the test result and predictions.png as a data: URL when the run finishes, then calls afterFinished', async () => {
    const { monitor, out } = await monitorIn();
    await writeFile(join(out, 'predictions.png'), Buffer.from('PNGDATA'));
    let after = 0;
    monitor.afterFinished = async () => {
      after++;
    };
    await monitor.finished({ status: 'finished', metrics: { test_loss: 0.9, test_accuracy: 0.7 } as Metrics });
    const s = monitor.state.snapshot();
    expect(s.run).toMatchObject({ state: 'finished', test: { loss: 0.9, accuracy: 0.7 } });
    expect(s.predictions).toBe(`data:image/png;base64,${Buffer.from('PNGDATA').toString('base64')}`);
    expect(after).toBe(1);
  });

  it('marks an interrupted or failed run as stopped, with no grid', async () => {
    const { monitor } = await monitorIn();
    await monitor.finished(undefined);
    expect(monitor.state.snapshot().run.state).toBe('stopped');
    expect(monitor.state.snapshot().predictions).toBeUndefined();
  });
});
