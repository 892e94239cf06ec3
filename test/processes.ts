/**
 * Real dtrain processes for integration tests: spawn the CLI, collect its JSON log lines, and wait
 * for events. Every process is killed when the test ends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { GC_FLAG } from '../common/gc-mode.ts';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../bin/dtrain.js', import.meta.url));

export interface LogLine {
  event?: string;
  level: number;
  msg?: string;
  [key: string]: unknown;
}

export class DtrainProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly stderr: string[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private listeners: (() => void)[] = [];

  constructor(args: string[], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [GC_FLAG, CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as LogLine);
      } catch {
        this.lines.push({ level: 30, msg: line });
      }
      for (const l of this.listeners) l();
    });
    createInterface({ input: this.child.stderr! }).on('line', (line) => this.stderr.push(line));
    this.exited = new Promise((resolve) => this.child.on('exit', (code, signal) => resolve({ code, signal })));
    running.add(this);
    void this.exited.then(() => running.delete(this));
  }

  events(name: string): LogLine[] {
    return this.lines.filter((l) => l.event === name);
  }

  /** Resolves with the first line matching `event` (and `where`), already seen or to come. */
  waitFor(event: string, where: (l: LogLine) => boolean = () => true, timeoutMs = 60_000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const hit = this.lines.find((l) => l.event === event && where(l));
        if (hit) {
          cleanup();
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timed out waiting for "${event}"; last lines:\n${this.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${this.stderr.slice(-10).join('\n')}`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners = this.listeners.filter((l) => l !== check);
      };
      this.listeners.push(check);
      check();
    });
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}

const running = new Set<DtrainProcess>();

export function killAll(): void {
  for (const p of running) {
    try {
      p.child.kill('SIGCONT');
      p.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  running.clear();
}
