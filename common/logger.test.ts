import { describe, expect, it, vi } from 'vitest';
import fs, { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { tempDir } from '../test/helpers.ts';
import { LOG_BUFFER_BYTES, LOG_FLUSH_MS, createLogger } from './logger.ts';

const lines = (path: string) => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean) : []);

describe('createLogger: JSON lines written in batches', () => {
  it('holds a few lines until the flush interval, then writes them all, in order', async () => {
    const path = join(await tempDir('log-'), 'run.log');
    const log = createLogger({ destination: path, pretty: false });
    await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 2)); // the file is open
    for (let i = 0; i < 5; i++) log.info({ event: 'step', step: i }, 'step');
    expect(lines(path)).toHaveLength(0);
    await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 3));
    expect(lines(path).map((l) => JSON.parse(l).step)).toEqual([0, 1, 2, 3, 4]);
  });

  it('writes any other line at once, with the step lines before it, in order', async () => {
    const path = join(await tempDir('log-'), 'run.log');
    const log = createLogger({ destination: path, pretty: false });
    await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 2));
    log.info({ event: 'step', step: 1 }, 'step');
    log.info({ event: 'step', step: 2 }, 'step');
    log.warn({ event: 'worker_left', workerId: 'w1' }, 'left');
    expect(lines(path).map((l) => JSON.parse(l).event)).toEqual(['step', 'step', 'worker_left']);
    log.info({ event: 'step', step: 3 }, 'step');
    expect(lines(path)).toHaveLength(3);
  });

  it('writes without an fsync of the file (a log file would block the owning thread at each flush)', async () => {
    const path = join(await tempDir('log-'), 'run.log');
    const fsync = vi.spyOn(fs, 'fsyncSync');
    try {
      const log = createLogger({ destination: path, pretty: false });
      await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 2));
      log.info({ event: 'step', step: 1 }, 'step');
      await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 3));
      log.warn({ event: 'worker_left', workerId: 'w1' }, 'left');
      expect(lines(path).map((l) => JSON.parse(l).event)).toEqual(['step', 'worker_left']);
      expect(fsync).not.toHaveBeenCalled();
    } finally {
      fsync.mockRestore();
    }
  });

  it('writes at once when the lines fill the buffer', async () => {
    const path = join(await tempDir('log-'), 'run.log');
    const log = createLogger({ destination: path, pretty: false });
    await new Promise((r) => setTimeout(r, LOG_FLUSH_MS * 2));
    const pad = 'x'.repeat(200);
    const n = Math.ceil(LOG_BUFFER_BYTES / 200) + 5;
    for (let i = 0; i < n; i++) log.info({ event: 'step', step: i, pad }, 'step');
    // Without waiting: everything up to the last full buffer is on disk.
    expect(lines(path).length).toBeGreaterThanOrEqual(Math.floor(LOG_BUFFER_BYTES / 300));
  });

  it('writes what is left when the process exits, however soon after the line', () => {
    const script = `import { createLogger } from ${JSON.stringify(new URL('./logger.ts', import.meta.url).pathname)};
const log = createLogger({ pretty: false });
log.info({ event: 'run_finished' }, 'done');
process.exit(3);`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(3);
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l).event)).toEqual(['run_finished']);
  });
});
