/**
 * Who may connect: strikes per peer address, with a cool-down. An address that fails too often
 * within a window (wrong tokens, or evictions for bad frames, rejected results, timeouts) is
 * refused at the HTTP upgrade until its cool-down ends, before any token check or WebSocket work.
 * A second small class keeps the log from being flooded: one line per key per interval, with a
 * count of the lines it held back.
 */

export interface StrikeRules {
  /** Strikes within `windowMs` that start a cool-down. 0 disables the rule. */
  maxStrikes: number;
  windowMs: number;
  coolDownMs: number;
}

interface StrikeRecord {
  strikes: number[];
  coolDownUntil: number;
}

/** Beyond this many addresses, stale records are pruned before a new one is added. */
const PRUNE_ABOVE = 10_000;

export interface AdmissionOptions {
  /** Open worker connections (welcomed or not) at most; more get HTTP 503. Default 256. */
  maxWorkers: number;
  /** Wrong tokens per address: default 5 within 60 s start a 60 s cool-down. */
  authStrikes: StrikeRules;
  /** Evictions per address (bad frames, rejected results, timeouts): default 3 within 10 min start a 5 min cool-down. */
  evictionStrikes: StrikeRules;
}

export const ADMISSION_DEFAULTS: AdmissionOptions = {
  maxWorkers: 256,
  authStrikes: { maxStrikes: 5, windowMs: 60_000, coolDownMs: 60_000 },
  evictionStrikes: { maxStrikes: 3, windowMs: 600_000, coolDownMs: 300_000 },
};

export class StrikeCounter {
  private readonly records = new Map<string, StrikeRecord>();

  constructor(private readonly rules: StrikeRules, private readonly now: () => number = Date.now) {}

  /** Milliseconds until `address` may try again; 0 when it may now. */
  coolDownLeft(address: string): number {
    const r = this.records.get(address);
    return r ? Math.max(0, r.coolDownUntil - this.now()) : 0;
  }

  /** Counts a strike; returns true when it starts a cool-down. */
  strike(address: string): boolean {
    if (this.rules.maxStrikes <= 0) return false;
    const t = this.now();
    let r = this.records.get(address);
    if (!r) {
      if (this.records.size >= PRUNE_ABOVE) this.prune(t);
      r = { strikes: [], coolDownUntil: 0 };
      this.records.set(address, r);
    }
    r.strikes = r.strikes.filter((s) => t - s < this.rules.windowMs);
    r.strikes.push(t);
    if (r.strikes.length < this.rules.maxStrikes) return false;
    r.strikes = [];
    r.coolDownUntil = t + this.rules.coolDownMs;
    return true;
  }

  get size(): number {
    return this.records.size;
  }

  private prune(t: number): void {
    for (const [address, r] of this.records) {
      if (r.coolDownUntil <= t && r.strikes.every((s) => t - s >= this.rules.windowMs)) this.records.delete(address);
    }
  }
}

/** One log line per key per interval; the next line says how many were held back. */
export class LogLimiter {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(private readonly intervalMs: number, private readonly now: () => number = Date.now) {}

  /** Returns the number of lines held back since the last one, or undefined when this one is held back too. */
  allow(key: string): number | undefined {
    const t = this.now();
    const r = this.last.get(key);
    if (r && t - r.at < this.intervalMs) {
      r.held++;
      return undefined;
    }
    if (!r && this.last.size >= PRUNE_ABOVE) this.last.clear();
    this.last.set(key, { at: t, held: 0 });
    return r?.held ?? 0;
  }
}
