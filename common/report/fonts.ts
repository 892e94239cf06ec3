/**
 * The one typeface every picture uses. skia finds no font on a machine without system fonts (text
 * then silently draws nothing), so a small subset of DejaVu Sans ships beside this file and is
 * registered under its own name: pictures look the same on every machine.
 */
import { GlobalFonts } from '@napi-rs/canvas';
import { fileURLToPath } from 'node:url';
import { DtrainError } from '../errors.ts';

export const FONT_FAMILY = 'dtrain-sans';

const FONT_FILES = ['fonts/DejaVuSans.ttf', 'fonts/DejaVuSans-Bold.ttf'] as const;

let registered = false;

/** Registers the bundled fonts once per process; later calls do nothing. */
export function ensureFonts(): void {
  if (registered) return;
  for (const file of FONT_FILES) {
    const path = fileURLToPath(new URL(file, import.meta.url));
    if (GlobalFonts.registerFromPath(path, FONT_FAMILY) === null) {
      throw new DtrainError('DTRAIN_ERR_FONT', `Expected a TrueType font at ${path}, but it could not be loaded.`, { expected: false });
    }
  }
  registered = true;
}

/** A CSS font shorthand in the bundled family, e.g. `font(13, 'bold')` → "bold 13px dtrain-sans". */
export function font(sizePx: number, weight: 'normal' | 'bold' = 'normal'): string {
  ensureFonts();
  return `${weight} ${sizePx}px ${FONT_FAMILY}`;
}
