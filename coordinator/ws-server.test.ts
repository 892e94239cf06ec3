import { describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startWsServer } from './ws-server.ts';
import { Membership } from './membership.ts';
import { silentLogger } from '../common/logger.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';

const TOKEN = 'ws-server-test-token';

/** The HTTP status of a refused upgrade, or 101 for one that opened. */
function upgradeStatus(url: string): Promise<number> {
  return new Promise((resolve) => {
    const s = new WebSocket(url, { headers: { authorization: `Bearer ${TOKEN}` } });
    s.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      s.terminate();
    });
    s.on('open', () => {
      resolve(101);
      s.terminate();
    });
    s.on('error', () => {});
  });
}

describe('startWsServer', () => {
  it('welcomes no worker once the run is over: an upgrade after close() is refused with 503', async () => {
    const refused: string[] = [];
    const server = await startWsServer(new Membership(silentLogger()), {
      port: 0,
      host: '127.0.0.1',
      token: TOKEN,
      welcome: { type: 'welcome', protocolVersion: PROTOCOL_VERSION, model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: 62006 },
      expect: { gradientCount: 62006, statsCount: 0 },
      onRejected: (_event, code) => refused.push(code),
      log: silentLogger(),
    });
    const url = `ws://127.0.0.1:${server.port}`;
    expect(await upgradeStatus(url)).toBe(101);
    const closed = server.close('shutdown');
    // The server still listens for a moment so that workers read their close frames.
    expect(await upgradeStatus(url)).toBe(503);
    expect(refused).toEqual(['DTRAIN_ERR_CLOSING']);
    await closed;
  });
});
