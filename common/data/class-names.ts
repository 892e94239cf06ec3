/**
 * Class names from a CIFAR-10-format folder's `batches.meta.txt`: one name per line, label 0 first.
 * A folder of other images in the same binary format names its own classes there, and pictures
 * (the prediction grid, `dtrain samples`) use those names instead of CIFAR-10's. Without the file,
 * CIFAR-10's names stand.
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DataError } from '../errors.ts';
import { CIFAR10_CLASSES } from './types.ts';

export const CLASS_NAMES_FILE = 'batches.meta.txt';
/** The binary format's label byte is 0-9 (cifar10.ts checks every record). */
export const CLASS_COUNT = CIFAR10_CLASSES.length;
const MAX_NAME_LENGTH = 64;
const MAX_FILE_BYTES = 64 * 1024;

/** Parses the file's text; `source` names it in errors. Trailing blank lines are allowed (CIFAR-10's own file ends with one). */
export function parseClassNames(text: string, source: string): readonly string[] {
  const lines = text.split(/\r?\n/).map((l) => l.trim());
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  const fail = (what: string) => new DataError('DTRAIN_ERR_DATA_CLASS_NAMES', `${source}: expected ${CLASS_COUNT} class names, one per line (label 0 first), but ${what}.`);
  if (lines.length !== CLASS_COUNT) throw fail(`found ${lines.length} line(s)`);
  lines.forEach((name, i) => {
    if (name === '') throw fail(`line ${i + 1} is empty`);
    if (name.length > MAX_NAME_LENGTH) throw fail(`line ${i + 1} is ${name.length} characters long (at most ${MAX_NAME_LENGTH})`);
    // eslint-disable-next-line no-control-regex
    if (/[\u0000-\u001f\u007f]/.test(name)) throw fail(`line ${i + 1} holds a control character`);
  });
  const seen = new Set<string>();
  for (const name of lines) {
    if (seen.has(name)) throw fail(`"${name}" appears twice`);
    seen.add(name);
  }
  return Object.freeze(lines);
}

/** The names in `<batchesDir>/batches.meta.txt`, or CIFAR-10's when the file is absent. */
export async function readClassNames(batchesDir: string): Promise<readonly string[]> {
  const file = join(batchesDir, CLASS_NAMES_FILE);
  const info = await stat(file).catch(() => undefined);
  if (!info) return CIFAR10_CLASSES;
  if (!info.isFile() || info.size > MAX_FILE_BYTES) throw new DataError('DTRAIN_ERR_DATA_CLASS_NAMES', `${file}: expected a text file of at most ${MAX_FILE_BYTES} bytes, but got ${info.isFile() ? `${info.size} bytes` : 'something else'}.`);
  return parseClassNames(await readFile(file, 'utf8'), file);
}
