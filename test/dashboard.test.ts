/**
 * The live dashboard in a real browser: Debian's chromium (test/chromium.ts) opens the page of a
 * coordinator with two worker processes, and watches the step counter advance, both workers appear,
 * the loss curve being drawn, and, once the run ends, the prediction grid. It measures how long
 * after the coordinator finished a step the page drew it (the goal: under one second).
 *
 * DTRAIN_UPDATE_SCREENSHOT=1 writes the final screenshot to docs/images/dashboard.png (the README
 * shows it); otherwise it goes to a temporary folder.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from 'playwright-core';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';
import { launchChromium, skipWithoutChromium, type TestBrowser } from './chromium.ts';

const ENV = { DTRAIN_TOKEN: 'dashboard-test-token' };
const SCREENSHOT = process.env.DTRAIN_UPDATE_SCREENSHOT === '1' ? fileURLToPath(new URL('../docs/images/dashboard.png', import.meta.url)) : undefined;

let browser: TestBrowser | undefined;
afterEach(async () => {
  killAll();
  await browser?.close();
  browser = undefined;
});

/** Counts the pixels of the chart's canvas drawn in the train series' colour (#2563eb). */
function seriesPixels(page: Page, chartId: string): Promise<number> {
  return page.evaluate((id) => {
    const canvas = document.querySelector<HTMLCanvasElement>(`#${id} canvas`);
    if (!canvas) return -1;
    const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - 37) < 40 && Math.abs(data[i + 1] - 99) < 40 && Math.abs(data[i + 2] - 235) < 40 && data[i + 3] > 128) n++;
    return n;
  }, chartId);
}

const stepShown = (page: Page) => page.$eval('#step', (el) => Number(el.textContent));

describe.skipIf(skipWithoutChromium())('the live dashboard in Chromium', () => {
  it('shows steps as they happen, both workers, the curves, and the prediction grid at the end', async () => {
    const out = await tempDir();
    const coordinator = new DtrainProcess(
      ['coordinator', '--port', '0', '--host', '127.0.0.1', '--min-workers', '2', '--dataset', 'synthetic', '--limit-train', '1600', '--limit-test', '100',
        '--model', 'lenet', '--epochs', '3', '--backend', 'wasm', '--no-plots', '--out', out],
      ENV,
    );
    const url = (await coordinator.waitFor('http_listening')).url as string;
    const port = (await coordinator.waitFor('listening')).port as number;
    browser = await launchChromium();
    const page = await browser.browser.newPage({ viewport: { width: 1440, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(url);
    await page.waitForSelector('#connection:text("live")');
    for (let i = 0; i < 2; i++) new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--name', `worker-${i + 1}`], ENV);

    // The step counter advances, live (no reload).
    await page.waitForFunction(() => Number(document.getElementById('step')!.textContent) >= 3, undefined, { timeout: 60_000 });
    const first = await stepShown(page);
    await page.waitForFunction((n) => Number(document.getElementById('step')!.textContent) > n, first, { timeout: 30_000 });
    expect(await stepShown(page)).toBeGreaterThan(first);

    // Both workers, by the names they gave, with their backend.
    await page.waitForFunction(() => document.querySelectorAll('#workers tbody tr').length === 2);
    const rows = await page.$$eval('#workers tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(rows.map((r) => r[1]).sort()).toEqual(['worker-1', 'worker-2']);
    expect(rows.every((r) => r[2] === 'wasm' && r[3] === 'joined')).toBe(true);

    // A curve is drawn: the loss-per-step canvas has pixels of the series' colour.
    expect(await seriesPixels(page, 'chart-step-loss')).toBeGreaterThan(50);

    // The run ends: the prediction grid and the test accuracy appear, and stay after the coordinator exits.
    await coordinator.waitFor('run_finished', undefined, 120_000);
    await page.waitForSelector('#predictions-panel:not([hidden])', { timeout: 10_000 });
    await page.waitForFunction(() => (document.getElementById('predictions') as HTMLImageElement).naturalWidth > 0);
    expect(await page.textContent('#run-state')).toBe('finished');
    expect(await page.textContent('#test-result')).toMatch(/test accuracy \d+\.\d%/);
    expect(await page.$eval('#epoch', (el) => el.textContent)).toBe('3 / 3');
    expect(await seriesPixels(page, 'chart-epoch-acc')).toBeGreaterThan(20);
    expect(errors).toEqual([]);

    // How long after the coordinator finished each step the page drew it.
    const latency = await page.evaluate(() => (window as unknown as { __dtrain: { latency: { samples: number[] } } }).__dtrain.latency.samples);
    const sorted = [...latency].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)];
    const p95 = sorted[Math.floor(sorted.length * 0.95)];
    console.log(`dashboard latency over ${sorted.length} draws: median ${median} ms, p95 ${p95} ms, max ${sorted[sorted.length - 1]} ms`);
    expect(sorted.length).toBeGreaterThan(5);
    expect(p95).toBeLessThan(1000);

    await page.screenshot({ path: SCREENSHOT ?? join(out, 'dashboard.png') });
    expect((await coordinator.exited).code).toBe(0);
  });
});
