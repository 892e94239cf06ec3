/** A real pino logger for tests, whose JSON lines land in `lines` as parsed objects. */
import { Writable } from 'node:stream';
import { pino } from 'pino';

export function capturingLogger(level: 'debug' | 'info' = 'info'): { log: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
      callback();
    },
  });
  return { log: pino({ level }, stream), lines };
}
