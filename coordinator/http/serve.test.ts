import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { httpEnabled, logDashboardUrl } from './serve.ts';

describe('httpEnabled', () => {
  it('is on by default, off with --no-http, and follows DTRAIN_HTTP when the flag is not given', () => {
    expect(httpEnabled({}, {})).toBe(true);
    expect(httpEnabled({ http: true }, {})).toBe(true);
    expect(httpEnabled({ http: false }, { DTRAIN_HTTP: '1' })).toBe(false);
    expect(httpEnabled({ http: true }, { DTRAIN_HTTP: '0' })).toBe(false);
    expect(httpEnabled({}, { DTRAIN_HTTP: 'off' })).toBe(false);
    expect(httpEnabled({}, { DTRAIN_HTTP: 'yes' })).toBe(true);
  });

  it('refuses a DTRAIN_HTTP it cannot read, naming it', () => {
    expect(() => httpEnabled({}, { DTRAIN_HTTP: 'maybe' })).toThrow('DTRAIN_HTTP must be 1/true/yes/on or 0/false/no/off, got "maybe".');
  });
});

describe('logDashboardUrl', () => {
  function logged(host: string, port: number): Record<string, unknown> {
    const lines: string[] = [];
    logDashboardUrl(pino({}, { write: (l: string) => lines.push(l) }), host, port);
    return JSON.parse(lines[0]);
  }

  it('says which URL to open: localhost for a wildcard bind, brackets for IPv6', () => {
    expect(logged('0.0.0.0', 8787)).toMatchObject({ event: 'http_listening', url: 'http://localhost:8787/' });
    expect(logged('127.0.0.1', 9000).url).toBe('http://127.0.0.1:9000/');
    expect(logged('::1', 9000).url).toBe('http://[::1]:9000/');
  });
});
