/**
 * A Chromium tab as a worker: a coordinator waits for two workers, a Node worker process and a
 * headless Chromium tab that opened /worker#token=..., and both train to the end of the run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';
import { launchChromium, skipWithoutChromium, type TestBrowser } from './chromium.ts';

const TOKEN = 'browser-worker-test-token';
let chromium: TestBrowser | undefined;
afterEach(async () => {
  await chromium?.close();
  chromium = undefined;
  killAll();
});

/** A coordinator on synthetic data for one epoch, on a free port of loopback. */
async function coordinator(args: string[]): Promise<{ c: DtrainProcess; port: number }> {
  const c = new DtrainProcess(
    ['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--backend', 'wasm', '--no-plots', '--epochs', '1', '--out', await tempDir(), ...args],
    { DTRAIN_TOKEN: TOKEN },
  );
  return { c, port: (await c.waitFor('listening')).port as number };
}

/**
 * Opens the worker page and waits for its script: a script the coordinator could not build (a
 * failed esbuild bundle answers 500) fails the test here, with the server's message, instead of
 * after the run's whole timeout.
 */
async function openWorkerPage(page: import('playwright-core').Page, url: string): Promise<void> {
  const script = page.waitForResponse((r) => new URL(r.url()).pathname === '/worker/app.js', { timeout: 60_000 });
  await page.goto(url);
  const response = await script;
  expect(response.status(), `GET /worker/app.js: ${response.status() === 200 ? '' : await response.text()}`).toBe(200);
}

describe.skipIf(skipWithoutChromium())('a browser tab as a worker', () => {
  it('trains with a Node worker to the end of the run, its slices counted', async () => {
    // 1,280 synthetic images at batch 32: 40 steps, each split between the two workers. Evaluation
    // in chunks of 25 images, so that both workers, idle when it starts, get a chunk: with one
    // chunk per split, the worker first in line would take them all.
    const { c, port } = await coordinator(['--limit-train', '1280', '--limit-test', '200', '--model', 'mlp', '--min-workers', '2', '--eval-batch-size', '25']);
    const base = `http://127.0.0.1:${port}`;

    // The page never carries the token: the server does not know which one the tab will use.
    const html = await (await fetch(`${base}/worker`)).text();
    expect(html).toContain('/worker/app.js');
    expect(html).not.toContain(TOKEN);

    const node = new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm'], { DTRAIN_TOKEN: TOKEN });
    chromium = await launchChromium();
    const page = await chromium.browser.newPage();
    const consoleErrors: string[] = [];
    page.on('console', (m) => m.type() === 'error' && consoleErrors.push(m.text()));
    page.on('pageerror', (e) => consoleErrors.push(e.message));
    await openWorkerPage(page, `${base}/worker#token=${TOKEN}`);

    const finished = await c.waitFor('run_finished', undefined, 240_000);
    expect((await c.exited).code).toBe(0);
    expect((await node.exited).code).toBe(0);

    const joined = c.events('worker_joined');
    expect(joined).toHaveLength(2);
    const tab = joined.find((j) => String(j.backend).startsWith('browser/'));
    expect(tab, JSON.stringify(joined)).toBeDefined();
    expect(tab!.workerName).toMatch(/^browser-Chrome\d+-/);
    expect(['browser/webgpu', 'browser/webgl', 'browser/wasm']).toContain(tab!.backend);
    // Nobody left before the end, so every step was split between both workers.
    const steps = c.events('step');
    expect(steps).toHaveLength(40);
    expect(steps.every((s) => s.workers === 2)).toBe(true);
    expect(c.events('worker_left').filter((l) => l.reason !== 'training finished')).toEqual([]);
    expect(c.events('frame_rejected')).toEqual([]);
    // Synthetic classes are easy to tell apart: chance is 10 %.
    expect(finished.test_accuracy as number).toBeGreaterThan(0.5);

    // The tab's own count: a slice of every step, half of each 32-image batch.
    await page.waitForFunction(() => document.body.dataset.state === 'finished', undefined, { timeout: 10_000 });
    const count = async (id: string) => Number(await page.textContent(`#${id}`));
    expect(await count('train-tasks')).toBe(40);
    expect(await count('train-samples')).toBe(40 * 16);
    expect(await count('eval-samples')).toBeGreaterThan(0);
    // No tensor leaks across 40 steps in the tab: the count after the first slice and after the last.
    const [first, last] = (await page.textContent('#tensors'))!.split(' → ').map(Number);
    expect(first).toBeGreaterThan(0);
    expect(last).toBe(first);
    // The token left the address bar once read.
    expect(page.url()).toBe(`${base}/worker`);
    expect(consoleErrors).toEqual([]);
    console.log(`browser worker: ${tab!.backend}, test accuracy ${finished.test_accuracy}`);
  });

  it('trains lenet alone on WebAssembly with dtrain\'s kernels, the .wasm files from the coordinator', async () => {
    const { c, port } = await coordinator(['--limit-train', '320', '--limit-test', '100', '--model', 'lenet', '--min-workers', '1']);
    chromium = await launchChromium();
    const page = await chromium.browser.newPage();
    const wasmFetched: string[] = [];
    page.on('response', (r) => r.url().endsWith('.wasm') && wasmFetched.push(`${r.status()} ${new URL(r.url()).pathname}`));
    await openWorkerPage(page, `http://127.0.0.1:${port}/worker?backend=wasm#token=${TOKEN}`);
    await c.waitFor('run_finished', undefined, 120_000);
    expect((await c.exited).code).toBe(0);
    expect(c.events('worker_joined').map((j) => j.backend)).toEqual(['browser/wasm']);
    expect(c.events('step')).toHaveLength(10);
    await page.waitForFunction(() => document.body.dataset.state === 'finished', undefined, { timeout: 10_000 });
    expect(Number(await page.textContent('#train-tasks'))).toBe(10);
    expect(await page.textContent('#backend-name')).toBe('wasm');
    // SIMD is in every current browser; the threaded build needs cross-origin isolation, which the page does not ask for.
    expect(wasmFetched).toEqual(['200 /worker/tfjs-backend-wasm-simd.wasm']);
  });
});
