import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { GC_FLAG, gcHint, gcMode, warnGcMode } from './gc-mode.ts';

describe('the garbage-collection mode', () => {
  it('is single-threaded only when Node was started with the flag, and hints at the flag otherwise', () => {
    expect(gcMode(['--enable-source-maps', GC_FLAG])).toEqual({ gc: 'single-threaded' });
    expect(gcMode(['--enable-source-maps'])).toEqual({ gc: 'background threads' });
    // V8's other spellings of the same flag, and its negations.
    expect(gcMode(['--single_threaded_gc'])).toEqual({ gc: 'single-threaded' });
    expect(gcMode(['--single-threaded-gc=true'])).toEqual({ gc: 'single-threaded' });
    expect(gcMode([GC_FLAG, '--no-single-threaded-gc'])).toEqual({ gc: 'background threads' });
    expect(gcMode(['--single-threaded-gc=false'])).toEqual({ gc: 'background threads' });
    expect(gcMode(['--single-threaded-gc-scavenger'])).toEqual({ gc: 'background threads' });
    expect(gcHint({ gc: 'single-threaded' })).toBeUndefined();
    expect(gcHint({ gc: 'background threads' })).toContain(GC_FLAG);
    const warned: unknown[][] = [];
    const log = { warn: (...a: unknown[]) => warned.push(a) };
    warnGcMode(log, { gc: 'single-threaded' });
    expect(warned).toEqual([]);
    warnGcMode(log, { gc: 'background threads' });
    expect(warned).toEqual([[{ event: 'gc_background_threads', flag: GC_FLAG }, gcHint({ gc: 'background threads' })]]);
  });

  it('is what bin/dtrain.js runs in when started as an executable: its shebang line passes the flag to Node', async () => {
    const cli = fileURLToPath(new URL('../bin/dtrain.js', import.meta.url));
    const shebang = readFileSync(cli, 'utf8').split('\n')[0];
    expect(shebang).toContain(GC_FLAG);
    // The same line on a script that prints Node's flags: env -S splits it, and Node gets the flag.
    const dir = await mkdtemp(join(tmpdir(), 'dtrain-gc-'));
    const probe = join(dir, 'probe.mjs');
    writeFileSync(probe, `${shebang}\nprocess.stdout.write(JSON.stringify(process.execArgv));\n`, { mode: 0o755 });
    const r = spawnSync(probe, [], { encoding: 'utf8', timeout: 60_000 });
    await rm(dir, { recursive: true, force: true });
    expect(r.status).toBe(0);
    expect(gcMode(JSON.parse(r.stdout) as string[])).toEqual({ gc: 'single-threaded' });
  });
});
