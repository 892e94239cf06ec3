/**
 * The worker's side of "no waits without an end", against fake coordinators: one that accepts the
 * WebSocket and never welcomes, and one that refuses every upgrade.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { runWorker } from '../worker/client.ts';
import { silentLogger } from '../common/logger.ts';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

async function listen(server: Server): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const fast = { handshakeTimeoutMs: 300, reconnectMinMs: 10, reconnectMaxMs: 20 };

/** A fake coordinator that answers every upgrade with `statusLine` and counts the attempts. */
async function refusingServer(statusLine: string): Promise<{ url: string; attempts: () => number }> {
  const server = createServer();
  let attempts = 0;
  server.on('upgrade', (_req, socket) => {
    attempts++;
    socket.end(`HTTP/1.1 ${statusLine}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  });
  return { url: await listen(server), attempts: () => attempts };
}

describe('runWorker', () => {
  it('gives up with exit 1 when no welcome comes three connections in a row', async () => {
    const server = createServer();
    const wss = new WebSocketServer({ server });
    let connections = 0;
    wss.on('connection', () => connections++); // accepts, reads the hello, never answers
    const url = await listen(server);
    const exit = await runWorker({ url, token: 'a-token-123', backend: 'cpu', log: silentLogger(), limits: fast });
    expect(exit.code).toBe(1);
    expect(exit.reason).toMatch(/DTRAIN_ERR_WELCOME_TIMEOUT\) ended 3 connections in a row/);
    expect(connections).toBe(3);
    wss.close();
  }, 60_000);

  it('gives up with exit 1 after giveUpAfterMs of refused upgrades (503), however many attempts', async () => {
    const { url, attempts } = await refusingServer('503 Service Unavailable');
    const exit = await runWorker({ url, token: 'a-token-123', backend: 'cpu', log: silentLogger(), limits: fast, giveUpAfterMs: 1000 });
    expect(exit.code).toBe(1);
    expect(exit.reason).toMatch(/could not reach the coordinator/);
    expect(attempts()).toBeGreaterThan(3);
  }, 60_000);

  it('exits 1 at once on a 401, without retrying', async () => {
    const { url, attempts } = await refusingServer('401 Unauthorized');
    const exit = await runWorker({ url, token: 'a-token-123', backend: 'cpu', log: silentLogger(), limits: fast });
    expect(exit.code).toBe(1);
    expect(attempts()).toBe(1);
  }, 60_000);
});
