import { describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeOutputDir, removeMadeDirs } from './output-dir.ts';
import { ConfigError } from './errors.ts';

const scratch = () => mkdtempSync(join(tmpdir(), 'dtrain-outdir-'));

describe('makeOutputDir', () => {
  it('makes the folder and every missing level above it, and accepts one that exists', () => {
    const root = scratch();
    const dir = join(root, 'a', 'b', 'c');
    makeOutputDir(dir, '--out');
    expect(statSync(dir).isDirectory()).toBe(true);
    expect(() => makeOutputDir(dir, '--out')).not.toThrow();
  });

  it('returns the folders it made, which removeMadeDirs takes away again while they are empty', () => {
    const root = scratch();
    const made = makeOutputDir(join(root, 'a', 'b'), '--out');
    expect(made).toEqual([join(root, 'a'), join(root, 'a', 'b')]);
    expect(makeOutputDir(join(root, 'a', 'b'), '--out')).toEqual([]);
    writeFileSync(join(root, 'a', 'kept.txt'), 'x');
    removeMadeDirs(made);
    expect(existsSync(join(root, 'a', 'b'))).toBe(false);
    expect(existsSync(join(root, 'a', 'kept.txt'))).toBe(true);
  });

  it('refuses a path that is a file, or lies under one, naming the flag and the file', () => {
    const root = scratch();
    const file = join(root, 'afile');
    writeFileSync(file, 'x');
    expect(() => makeOutputDir(file, '--out')).toThrow(ConfigError);
    expect(() => makeOutputDir(file, '--out')).toThrow(`--out ${file}: ${file} exists and is not a folder.`);
    expect(() => makeOutputDir(join(file, 'below'), '--log-file')).toThrow(`--log-file ${join(file, 'below')}: ${file} exists and is not a folder.`);
  });

  it.runIf(process.platform === 'linux')('refuses a folder under /proc at once, where a recursive mkdir never returns', () => {
    expect(() => makeOutputDir('/proc/dtrain-nope/run', '--out')).toThrow(/--out \/proc\/dtrain-nope\/run: cannot create the folder \/proc\/dtrain-nope \(ENOENT\)/);
  });
});
