/**
 * The browser worker's protocol code, run in Node against a real coordinator process, with `ws`
 * standing in for the browser's WebSocket (same constructor, binaryType, on* handlers and
 * `protocol`). test/browser-worker.test.ts runs the same code in a real Chromium tab.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DtrainProcess, killAll } from '../../test/processes.ts';
import { tempDir } from '../../test/helpers.ts';
import { BrowserWorker, MAX_FAILED_JOINS, type SocketFactory } from './client.ts';

const TOKEN = 'browser-client-test-token';
afterEach(() => killAll());

/** `ws`, held to the browser's rules where they differ: close() takes only 1000 or 3000-4999. */
const connect: SocketFactory = (url, protocols) => {
  const socket = new WebSocket(url, protocols);
  const close = socket.close.bind(socket);
  socket.close = (code?: number, reason?: string) => {
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError: a browser refuses close code ${code}`);
    close(code, reason);
  };
  return socket as unknown as ReturnType<SocketFactory>;
};

async function coordinator(extra: string[] = []): Promise<{ c: DtrainProcess; url: string }> {
  const out = await tempDir();
  const c = new DtrainProcess(
    ['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--limit-train', '320', '--limit-test', '100',
      '--model', 'mlp', '--backend', 'wasm', '--no-plots', '--no-http', '--epochs', '1', '--min-workers', '1', '--out', out, ...extra],
    { DTRAIN_TOKEN: TOKEN },
  );
  const port = (await c.waitFor('listening')).port as number;
  return { c, url: `ws://127.0.0.1:${port}/` };
}

describe('the browser worker client', () => {
  it('joins with the token as a subprotocol, trains every step and ends when the run finishes', async () => {
    const { c, url } = await coordinator();
    const worker = new BrowserWorker({ url, token: TOKEN, workerName: 'browser-test', backend: 'cpu', connect });
    const status = await worker.start();
    expect(status.state).toBe('finished');
    expect((await c.exited).code).toBe(0);
    const joined = c.events('worker_joined');
    expect(joined).toHaveLength(1);
    expect(joined[0]).toMatchObject({ workerName: 'browser-test', backend: 'browser/cpu' });
    // 320 training images at batch 32: 10 steps, all of them computed by this one worker.
    const steps = c.events('step');
    expect(steps).toHaveLength(10);
    // Its results carry its own time (workerMs), which the coordinator splits its round trip with.
    for (const s of steps) expect(s.transferMs as number).toBeGreaterThan(0);
    expect(status.trainTasks).toBe(10);
    expect(status.trainSamples).toBe(320);
    expect(status.evalSamples).toBeGreaterThan(0);
    expect(status.tensorsAfterFirstTrain).toBeGreaterThan(0);
    expect(status.tensorsAfterLastTrain).toBe(status.tensorsAfterFirstTrain);
    expect(c.events('frame_rejected')).toHaveLength(0);
  });

  it('leaves when stopped, and the coordinator carries on without it', async () => {
    const { c, url } = await coordinator(['--min-workers', '2', '--limit-train', '1600']);
    const node = new DtrainProcess(['worker', '--connect', url, '--backend', 'wasm'], { DTRAIN_TOKEN: TOKEN });
    const worker = new BrowserWorker({ url, token: TOKEN, workerName: 'browser-test', backend: 'cpu', connect, onUpdate: (s) => s.trainTasks === 3 && worker.stop('left by the test') });
    const status = await worker.start();
    expect(status).toMatchObject({ state: 'stopped', message: 'left by the test', trainTasks: 3 });
    const left = await c.waitFor('worker_left');
    expect(left.workerId).toBe(c.events('worker_joined').find((j) => j.workerName === 'browser-test')!.workerId);
    await c.waitFor('run_finished', undefined, 120_000);
    expect((await node.exited).code).toBe(0);
  });

  it('gives up with "refused" after repeated refusals of a wrong token', async () => {
    const { c, url } = await coordinator();
    const worker = new BrowserWorker({ url, token: 'not-the-token', workerName: 'browser-test', backend: 'cpu', connect, reconnectMinMs: 10, reconnectMaxMs: 20 });
    const status = await worker.start();
    expect(status.state).toBe('refused');
    expect(status.message).toContain(`${MAX_FAILED_JOINS} connections in a row ended before a welcome`);
    expect(c.events('auth_failed').length).toBeGreaterThanOrEqual(1);
    expect(c.events('worker_joined')).toHaveLength(0);
  });
});
