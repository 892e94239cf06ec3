/**
 * Flag parsers for commander: each turns a string into a typed value or throws a ConfigError that
 * names the flag, what was expected and what arrived.
 */
import { Option } from 'commander';
import { ConfigError } from '../../common/errors.ts';
import { MAX_TIMER_MS } from '../../common/timeout.ts';

export function integer(flag: string, min: number, max = Number.MAX_SAFE_INTEGER): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isInteger(n) || n < min || n > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
      throw new ConfigError(`${flag} must be an integer ${range}, got "${value}".`);
    }
    return n;
  };
}

export function positiveNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new ConfigError(`${flag} must be a number > 0, got "${value}".`);
    return n;
  };
}

export function oneOf<T extends string>(flag: string, choices: readonly T[]): (value: string) => T {
  return (value) => {
    if ((choices as readonly string[]).includes(value)) return value as T;
    throw new ConfigError(`${flag} must be one of ${choices.join(', ')}, got "${value}".`);
  };
}

/**
 * An option that can also come from an environment variable (flags win). A value its parser refuses
 * that came from the variable says so, since the user may not know the variable is set.
 */
export function envOption(flags: string, description: string, env: string): Option {
  const option = new Option(flags, description).env(env);
  const setParser = option.argParser.bind(option) as (fn: (value: string, previous: unknown) => unknown) => Option;
  option.argParser = ((fn: (value: string, previous: unknown) => unknown) =>
    setParser((value, previous) => {
      try {
        return fn(value, previous);
      } catch (err) {
        if (err instanceof ConfigError && cameFromEnv(option, env, value)) throw new ConfigError(`${err.message} It came from the environment variable ${env}.`);
        throw err;
      }
    })) as Option['argParser'];
  return option;
}

/** True when `value` is the variable's and the command line does not give the flag itself. */
function cameFromEnv(option: Option, env: string, value: string, argv: readonly string[] = process.argv): boolean {
  const long = option.long ?? '';
  return process.env[env] === value && !argv.some((a) => a === long || a.startsWith(`${long}=`));
}

/**
 * A duration in `unit` (ms or seconds), at least `minMs`, and no longer than a timer can hold
 * (2^31 - 1 ms, about 24.8 days): setTimeout fires a longer delay at once. Returns milliseconds.
 */
export function duration(flag: string, unit: 'ms' | 's', minMs = 1): (value: string) => number {
  return (value) => {
    const n = Number(value);
    const ms = unit === 's' ? n * 1000 : n;
    const max = unit === 's' ? `${Math.floor(MAX_TIMER_MS / 1000)} s` : `${MAX_TIMER_MS} ms`;
    if (value.trim() === '' || !Number.isFinite(n) || ms < minMs || ms > MAX_TIMER_MS || (unit === 'ms' && !Number.isInteger(n))) {
      throw new ConfigError(`${flag} must be a duration between ${unit === 's' ? `${minMs / 1000} s` : `${minMs} ms`} and ${max} (what a timer can hold), got "${value}".`);
    }
    return Math.round(ms);
  };
}
