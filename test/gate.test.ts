/**
 * What a peer meets before and around joining, against a real coordinator: the token is checked in
 * the HTTP upgrade (no WebSocket, no frame buffered without it), repeated failures are refused for
 * a cool-down, the connection count is capped, the hello is capped at the frame level, and no stage
 * waits without an end (hello, ready, heartbeats). The coordinator trains mlp (whose largest result,
 * 1.6 MB, is above --max-frame-mb 1) and waits for 10 workers, so it never starts a step.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';
import { encode } from '../common/codec.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';

const TOKEN = 'gate-test-token';
const AUTH = { headers: { authorization: `Bearer ${TOKEN}` } };
let c: DtrainProcess;
let url: string;

beforeAll(async () => {
  c = new DtrainProcess(
    ['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--limit-train', '64', '--limit-test', '10', '--model', 'mlp',
      '--backend', 'wasm', '--no-plots', '--min-workers', '10', '--max-frame-mb', '1', '--ready-timeout-ms', '1500', '--heartbeat-ms', '300',
      '--max-workers', '4', '--max-evictions', '0', '--out', await tempDir()],
    { DTRAIN_TOKEN: TOKEN },
  );
  url = `ws://127.0.0.1:${(await c.waitFor('listening')).port as number}`;
}, 60_000);

afterAll(() => killAll());

/** Opens a socket; resolves with the HTTP status of a refused upgrade, or the close code. */
function attempt(options: WebSocket.ClientOptions, onOpen?: (s: WebSocket) => void): Promise<{ status?: number; close?: number; reason?: string; opened: boolean }> {
  return new Promise((resolve) => {
    const s = new WebSocket(url, options);
    let opened = false;
    let status: number | undefined;
    s.on('unexpected-response', (_req, res) => {
      status = res.statusCode;
      s.terminate();
    });
    s.on('open', () => {
      opened = true;
      onOpen?.(s);
    });
    s.on('error', () => {});
    s.on('close', (code, reason) => resolve({ status, close: status ? undefined : code, reason: reason.toString(), opened }));
  });
}

const hello = () => encode({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'gate' });

describe('before a WebSocket exists', () => {
  it('answers a missing token with HTTP 401: no WebSocket is opened and no frame is read', async () => {
    const before = c.events('frame_rejected').length;
    const r = await attempt({});
    expect(r).toMatchObject({ status: 401, opened: false });
    const line = await c.waitFor('auth_failed', (l) => l.status === 401);
    expect(line.code).toBe('DTRAIN_ERR_AUTH');
    expect(c.events('frame_rejected').length).toBe(before);
  });

  it('answers a wrong token with 401, and after 5 failures refuses that address (429) even with the right token', async () => {
    // From 127.0.0.2, so the cool-down does not refuse the other tests' peers.
    const from = { localAddress: '127.0.0.2' };
    for (let i = 0; i < 5; i++) expect((await attempt({ ...from, headers: { authorization: 'Bearer wrong-token-123' } })).status).toBe(401);
    expect((await attempt({ ...from, ...AUTH })).status).toBe(429);
    expect((await c.waitFor('connection_refused', (l) => l.code === 'DTRAIN_ERR_COOL_DOWN')).address).toBe('127.0.0.2');
    // Five failed attempts, but their log lines are rate-limited per address.
    expect(c.events('auth_failed').filter((l) => l.address === '127.0.0.2').length).toBeLessThan(5);
  });

  it('refuses connections beyond --max-workers with 503', async () => {
    const held: WebSocket[] = [];
    for (let i = 0; i < 4; i++) {
      const s = new WebSocket(url, AUTH);
      await new Promise((r) => s.once('open', r));
      held.push(s);
    }
    expect((await attempt(AUTH)).status).toBe(503);
    expect((await c.waitFor('connection_refused', (l) => l.code === 'DTRAIN_ERR_FULL')).status).toBe(503);
    for (const s of held) s.close();
    await new Promise((r) => setTimeout(r, 200));
    const r = await attempt(AUTH, (s) => s.close());
    expect(r.opened).toBe(true);
  });
});

describe('before the hello', () => {
  it('rejects garbage sent before the hello with DTRAIN_ERR_FRAME_NOT_MSGPACK and 4003', async () => {
    const r = await attempt(AUTH, (s) => s.send(Uint8Array.from([0xc1, 0x00, 0xff, 0x13])));
    expect(r.close).toBe(4003);
    expect((await c.waitFor('frame_rejected', (l) => l.code === 'DTRAIN_ERR_FRAME_NOT_MSGPACK')).closeCode).toBe(4003);
  });

  it('caps the first frame at the hello limit in the frame header (1009), far below the result limit', async () => {
    const r = await attempt(AUTH, (s) => s.send(new Uint8Array(64 * 1024)));
    expect(r.close).toBe(1009);
    const line = await c.waitFor('frame_rejected', (l) => l.code === 'DTRAIN_ERR_FRAME_TOO_LARGE' && String(l.reason).includes('limit 8192 bytes'));
    expect(line.closeCode).toBe(1009);
  });

  it('evicts a zombie that says hello but never ready (a hung compute thread) at --ready-timeout-ms, with 4004', async () => {
    const started = Date.now();
    const r = await attempt(AUTH, (s) => s.send(hello()));
    expect(r.close).toBe(4004);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(c.events('worker_evicted').some((l) => l.code === 'DTRAIN_ERR_READY_TIMEOUT')).toBe(true);
  });
});

describe('once joined', () => {
  it('caps a frame at --max-frame-mb when the model allows more (mlp results are 1.6 MB)', async () => {
    const r = await attempt(AUTH, (s) => {
      s.send(hello());
      s.once('message', () => {
        s.send(encode({ type: 'ready', backend: 'fake' }));
        setTimeout(() => s.send(new Uint8Array(1024 * 1024 + 1024)), 100);
      });
    });
    expect(r.close).toBe(1009);
    await c.waitFor('frame_rejected', (l) => l.code === 'DTRAIN_ERR_FRAME_TOO_LARGE' && String(l.reason).includes(`limit ${1024 * 1024} bytes`));
  });

  it('evicts a real worker that stops answering heartbeats (SIGSTOP), within a few intervals', async () => {
    const w = new DtrainProcess(['worker', '--connect', url, '--backend', 'wasm'], { DTRAIN_TOKEN: TOKEN });
    const joined = await c.waitFor('worker_joined', (l) => l.workerName !== 'gate', 60_000);
    w.kill('SIGSTOP');
    const stoppedAt = Date.now();
    const evicted = await c.waitFor('worker_evicted', (l) => l.workerId === joined.workerId, 10_000);
    expect(String(evicted.reason)).toMatch(/DTRAIN_ERR_HEARTBEAT|no heartbeat/);
    expect(Date.now() - stoppedAt).toBeLessThan(5_000);
    w.kill('SIGKILL');
  }, 90_000);
});

describe('a worker that cannot reach the coordinator', () => {
  it('exits 1 after --give-up-after', async () => {
    const w = new DtrainProcess(['worker', '--connect', 'ws://127.0.0.1:9', '--backend', 'cpu', '--give-up-after', '2'], { DTRAIN_TOKEN: TOKEN });
    const exit = await w.exited;
    expect(exit.code).toBe(1);
    expect(w.events('giving_up')[0]?.reason).toMatch(/could not reach the coordinator/);
  }, 60_000);
});
