/**
 * The HTTP routes of real `dtrain` processes: the coordinator answers them on the port its workers
 * connect to, shows no secret, counts refused workers in /metrics; `--no-http` turns them off;
 * `dtrain train --port` serves the same routes for a single-machine run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';

const TOKEN = 'http-test-token-do-not-show';
const ENV = { DTRAIN_TOKEN: TOKEN };
const SMALL = ['--dataset', 'synthetic', '--limit-train', '320', '--limit-test', '100', '--model', 'mlp', '--backend', 'wasm', '--no-plots'];

afterEach(() => killAll());

const hasPromtool = () => !spawnSync('promtool', ['--version']).error;

async function get(url: string): Promise<{ status: number; type: string | null; body: string }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: r.status, type: r.headers.get('content-type'), body: await r.text() };
}

describe('HTTP routes of a running dtrain', () => {
  it('the coordinator serves status, metrics and health on the workers\' port, and never the token', async () => {
    const out = await tempDir();
    const c = new DtrainProcess(['coordinator', '--port', '0', '--host', '127.0.0.1', '--min-workers', '1', '--epochs', '1', ...SMALL, '--out', out], ENV);
    const port = (await c.waitFor('listening')).port as number;
    expect((await c.waitFor('http_listening')).url).toBe(`http://127.0.0.1:${port}/`);
    const base = `http://127.0.0.1:${port}`;

    expect(await get(`${base}/healthz`)).toMatchObject({ status: 200 });
    const waiting = JSON.parse((await get(`${base}/api/status`)).body);
    expect(waiting.run).toMatchObject({ model: 'mlp', state: 'waiting', transport: 'websocket', parameters: 402_250 });

    // A worker with the wrong token is refused, and counted.
    const intruder = new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--give-up-after', '2'], { DTRAIN_TOKEN: 'not-the-token' });
    await c.waitFor('auth_failed');
    intruder.kill();
    const afterRefusal = (await get(`${base}/metrics`)).body;
    expect(afterRefusal).toMatch(/^dtrain_rejected_frames_total\{code="DTRAIN_ERR_AUTH"\} [1-9]/m);

    new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--name', 'solo'], ENV);
    await c.waitFor('step', (l) => (l.step as number) >= 3);
    const metrics = await get(`${base}/metrics`);
    expect(metrics.type).toMatch(/^text\/plain/);
    // `curl /metrics | promtool check metrics`, where promtool is installed (CI installs it).
    if (hasPromtool() || process.env.CI) expect(execFileSync('promtool', ['check', 'metrics'], { input: metrics.body, encoding: 'utf8' }).trim()).toBe('');
    expect(metrics.body).toMatch(/^dtrain_workers 1$/m);
    expect(metrics.body).toMatch(/^dtrain_steps_total [3-9]|^dtrain_steps_total \d\d/m);
    const status = JSON.parse((await get(`${base}/api/status`)).body);
    expect(status.workers.map((w: { name: string }) => w.name)).toEqual(['solo']);
    expect(status.progress.step).toBeGreaterThanOrEqual(3);
    for (const path of ['/', '/api/status', '/metrics', '/healthz', '/dashboard.js']) expect((await get(`${base}${path}`)).body, path).not.toContain(TOKEN);

    await c.waitFor('run_finished', undefined, 60_000);
    expect((await c.exited).code).toBe(0);
  });

  it('--no-http leaves only the WebSocket: plain requests get 404', async () => {
    const out = await tempDir();
    const c = new DtrainProcess(['coordinator', '--port', '0', '--host', '127.0.0.1', '--no-http', '--epochs', '1', ...SMALL, '--out', out], ENV);
    const port = (await c.waitFor('listening')).port as number;
    for (const path of ['/', '/api/status', '/metrics']) expect((await get(`http://127.0.0.1:${port}${path}`)).status, path).toBe(404);
    expect(c.events('http_listening')).toEqual([]);
  });

  it('dtrain train --port serves the same routes for worker threads', async () => {
    const out = await tempDir();
    const t = new DtrainProcess(['train', '--port', '0', '--workers', '2', '--epochs', '2', ...SMALL, '--limit-train', '3200', '--out', out]);
    const url = (await t.waitFor('http_listening')).url as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    await t.waitFor('step', (l) => (l.step as number) >= 2);
    const status = JSON.parse((await get(`${url}api/status`)).body);
    expect(status.run.transport).toBe('threads');
    expect(status.workers.map((w: { id: string; backend: string }) => [w.id, w.backend])).toEqual([['thread-1', 'wasm'], ['thread-2', 'wasm']]);
    expect((await get(`${url}metrics`)).body).toMatch(/^dtrain_run_info\{model="mlp",dataset="synthetic",transport="threads"\} 1$/m);
    expect((await t.exited).code).toBe(0);
  });
});
