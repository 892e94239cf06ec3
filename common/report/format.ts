/** How numbers read in reports: the same rules for the table, the text and the tests. */

const NOT_AVAILABLE = 'n/a';

/** 0.5712 → "57.1%". */
export function percent(fraction: number): string {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(1)}%` : NOT_AVAILABLE;
}

/** A difference of two fractions in percentage points: 0.041 → "4.1 points". */
export function points(fraction: number): string {
  return Number.isFinite(fraction) ? `${(fraction * 100).toFixed(1)} points` : NOT_AVAILABLE;
}

export function fixed(value: number, decimals: number): string {
  return Number.isFinite(value) ? value.toFixed(decimals) : NOT_AVAILABLE;
}

/** 62006 → "62,006". */
export function integer(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : NOT_AVAILABLE;
}

/** 12.34 → "12.3 s", 250.1 → "4 m 10 s", 3725 → "1 h 02 m". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return NOT_AVAILABLE;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const whole = Math.round(seconds);
  if (whole < 3600) return `${Math.floor(whole / 60)} m ${String(whole % 60).padStart(2, '0')} s`;
  const minutes = Math.round(whole / 60);
  return `${Math.floor(minutes / 60)} h ${String(minutes % 60).padStart(2, '0')} m`;
}
