/**
 * Headless Chromium for tests, driven by playwright-core: Debian's `chromium` from PATH, with
 * exactly the flags below and a fresh user-data-dir, removed afterwards. Where chromium is missing
 * the tests that need it skip, except under CI (CI=1), where they fail: CI installs it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The path of `chromium` on PATH, or undefined. */
export function chromiumPath(): string | undefined {
  try {
    return execFileSync('sh', ['-c', 'command -v chromium'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

/** Whether to skip browser tests: only outside CI, and only when chromium is missing. */
export function skipWithoutChromium(): boolean {
  if (chromiumPath()) return false;
  if (process.env.CI) throw new Error('chromium is not on PATH, and CI must run the browser tests: apt-get install chromium');
  return true;
}

export interface TestBrowser {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<TestBrowser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error('chromium is not on PATH: apt-get install chromium');
  const userDataDir = mkdtempSync(join(tmpdir(), 'dtrain-chromium-'));
  // ignoreDefaultArgs: only our flags, plus the pipe playwright talks over.
  const browser = await chromium.launch({ executablePath, ignoreDefaultArgs: true, args: [...CHROMIUM_FLAGS, `--user-data-dir=${userDataDir}`, '--remote-debugging-pipe', 'about:blank'] });
  return {
    browser,
    close: async () => {
      await browser.close().catch(() => {});
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
