import { describe, expect, it } from 'vitest';
import { tokenFromProtocols, tokenProtocols, WORKER_PROTOCOL } from './token-protocol.ts';

describe('the token as a WebSocket subprotocol', () => {
  it('offers the dtrain protocol first, then the token in base64url', () => {
    // "secret-token" in UTF-8 is c2VjcmV0LXRva2Vu in base64, with no padding to strip.
    expect(tokenProtocols('secret-token')).toEqual([WORKER_PROTOCOL, 'dtrain.bearer.c2VjcmV0LXRva2Vu']);
  });

  it('round-trips tokens with characters a subprotocol may not hold', () => {
    for (const token of ['a b/c+d=e,f', 'ünïcödé-tökén', '?'.repeat(97), '12345678']) {
      const offered = tokenProtocols(token);
      for (const p of offered) expect(p).toMatch(/^[A-Za-z0-9._-]+$/);
      expect(tokenFromProtocols(offered.join(', '))).toBe(token);
    }
  });

  it('finds the token anywhere in the list', () => {
    expect(tokenFromProtocols(`chat, ${tokenProtocols('abcdefgh')[1]}, dtrain`)).toBe('abcdefgh');
  });

  it('gives an empty token for a missing, malformed or non-UTF-8 entry', () => {
    expect(tokenFromProtocols(undefined)).toBe('');
    expect(tokenFromProtocols('')).toBe('');
    expect(tokenFromProtocols('dtrain')).toBe('');
    expect(tokenFromProtocols('dtrain.bearer.not*base64')).toBe('');
    // "_-4" is the bytes 0xff 0xee, which are not UTF-8.
    expect(tokenFromProtocols('dtrain.bearer._-4')).toBe('');
  });
});
