import { describe, expect, it } from 'vitest';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseClassNames, readClassNames } from './class-names.ts';
import { CIFAR10_CLASSES } from './types.ts';

const TEN = ['apple', 'bee', 'cow', 'dune', 'elm', 'fig', 'gnu', 'hat', 'ink', 'jar'];

describe('parseClassNames', () => {
  it('reads one name per line, label 0 first, allowing a trailing blank line and CRLF', () => {
    expect(parseClassNames(`${TEN.join('\r\n')}\r\n\r\n`, 'f')).toEqual(TEN);
  });

  it('reads CIFAR-10\'s own file', () => {
    expect(parseClassNames(`${CIFAR10_CLASSES.join('\n')}\n\n`, 'f')).toEqual(CIFAR10_CLASSES);
  });

  it.each([
    ['too few names', TEN.slice(0, 9).join('\n'), /expected 10 class names.*found 9 line/],
    ['too many names', [...TEN, 'kiwi'].join('\n'), /found 11 line/],
    ['a blank line inside', [...TEN.slice(0, 4), '', ...TEN.slice(4, 9)].join('\n'), /line 5 is empty/],
    ['a duplicate', [...TEN.slice(0, 9), 'apple'].join('\n'), /"apple" appears twice/],
    ['a control character', [...TEN.slice(0, 9), 'j\u0007r'].join('\n'), /line 10 holds a control character/],
    ['a name too long', [...TEN.slice(0, 9), 'x'.repeat(65)].join('\n'), /line 10 is 65 characters long/],
    ['an empty file', '', /found 0 line/],
  ])('refuses %s, naming the file', (_what, text, message) => {
    expect(() => parseClassNames(text, '/data/batches.meta.txt')).toThrow(message);
    expect(() => parseClassNames(text, '/data/batches.meta.txt')).toThrow(/^\/data\/batches\.meta\.txt: /);
  });
});

describe('readClassNames', () => {
  it('uses the folder\'s batches.meta.txt, and CIFAR-10\'s names without one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dtrain-classes-'));
    try {
      expect(await readClassNames(dir)).toBe(CIFAR10_CLASSES);
      await writeFile(join(dir, 'batches.meta.txt'), TEN.join('\n') + '\n');
      expect(await readClassNames(dir)).toEqual(TEN);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a batches.meta.txt that is a folder', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dtrain-classes-'));
    try {
      await mkdir(join(dir, 'batches.meta.txt'));
      await expect(readClassNames(dir)).rejects.toThrow(/expected a text file/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
