import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'node:http';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { silentLogger } from '../../common/logger.ts';
import { createHttpFrontend, RunMonitor, sendJson, type HttpFrontend } from './index.ts';
import { FLUSH_MS, MAX_CLIENTS } from './events.ts';
import { stepEvent } from './testing.ts';

const open: HttpFrontend[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((f) => f.close()));
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })));
});

async function serve(): Promise<{ monitor: RunMonitor; frontend: HttpFrontend; base: string; out: string }> {
  const out = await mkdtemp(join(tmpdir(), 'dtrain-http-'));
  dirs.push(out);
  const monitor = new RunMonitor({ model: 'mlp', dataset: 'synthetic', epochs: 1, batchSize: 32, transport: 'threads', out });
  const frontend = createHttpFrontend(monitor, { runDir: out, log: silentLogger() });
  open.push(frontend);
  const port = await frontend.listen(0, '127.0.0.1');
  return { monitor, frontend, base: `http://127.0.0.1:${port}`, out };
}

describe('the coordinator\'s HTTP routes', () => {
  it('answers /healthz, /api/status and /metrics', async () => {
    const { monitor, base } = await serve();
    monitor.hooks.onStep(stepEvent({ step: 7 }));
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const status = await (await fetch(`${base}/api/status`)).json();
    expect(status.progress.step).toBe(7);
    expect(status.run.model).toBe('mlp');
    expect(status.run).not.toHaveProperty('out');
    const metrics = await fetch(`${base}/metrics`);
    expect(metrics.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await metrics.text()).toMatch(/^dtrain_steps_total 1$/m);
  });

  it('serves the dashboard page, its script and uPlot from node_modules, under a strict CSP', async () => {
    const { base } = await serve();
    const page = await fetch(`${base}/`);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("default-src 'none'");
    const html = await page.text();
    for (const src of ['/vendor/uPlot.iife.min.js', '/dashboard.js', '/dashboard.css', '/vendor/uPlot.min.css']) {
      expect(html).toContain(src);
      const r = await fetch(`${base}${src}`);
      expect(r.status, src).toBe(200);
      expect((await r.text()).length, src).toBeGreaterThan(500);
    }
  });

  it('is read-only: other methods get 405, unknown paths 404, both as JSON', async () => {
    const { base } = await serve();
    const post = await fetch(`${base}/api/status`, { method: 'POST', body: '{}' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect((await post.json()).error).toMatch(/read-only: expected GET or HEAD, got POST/);
    const missing = await fetch(`${base}/../../etc/passwd`);
    expect(missing.status).toBe(404);
    expect((await missing.json()).error).toMatch(/No route/);
  });

  it('serves predictions.png only once the run has drawn it', async () => {
    const { base, out } = await serve();
    expect((await fetch(`${base}/predictions.png`)).status).toBe(404);
    await writeFile(join(out, 'predictions.png'), Buffer.from([0x89, 0x50, 0x4e, 0x47]));
    const r = await fetch(`${base}/predictions.png`);
    expect(r.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await r.arrayBuffer())[1]).toBe(0x50);
  });

  it('takes new routes with one line, before or after it listens', async () => {
    const { frontend, base } = await serve();
    frontend.routes.register('/hello', (_req, res) => sendJson(res, 200, { hello: 'world' }));
    expect(await (await fetch(`${base}/hello`)).json()).toEqual({ hello: 'world' });
    expect(() => frontend.routes.register('/hello', () => {})).toThrow(/already registered/);
    expect(() => frontend.routes.register('hello', () => {})).toThrow(/must start with "\/"/);
  });

  it('streams the snapshot, then each step within a second, over Server-Sent Events', async () => {
    const { monitor, base } = await serve();
    const events: { type: string; data: unknown; at: number }[] = [];
    const res = await new Promise<import('node:http').IncomingMessage>((resolve) => request(`${base}/api/events`, resolve).end());
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    let buffer = '';
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const type = /^event: (.*)$/m.exec(block)?.[1];
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (type && data) events.push({ type, data: JSON.parse(data), at: Date.now() });
      }
    });
    await until(() => events.length >= 1);
    expect(events[0].type).toBe('status');
    const sent = Date.now();
    monitor.hooks.onStep(stepEvent({ step: 1 }));
    monitor.hooks.onStep(stepEvent({ step: 2 }));
    await until(() => events.filter((e) => e.type === 'step').length === 2);
    const steps = events.filter((e) => e.type === 'step');
    expect(steps.map((e) => (e.data as { point: { step: number } }).point.step)).toEqual([1, 2]);
    // Batched every FLUSH_MS: well under the one-second goal.
    expect(steps[1].at - sent).toBeLessThan(FLUSH_MS + 400);
    res.destroy();
  });

  it(`refuses more than ${MAX_CLIENTS} live dashboards at once`, async () => {
    const { base } = await serve();
    const held = await Promise.all(Array.from({ length: MAX_CLIENTS }, () => new Promise<import('node:http').IncomingMessage>((resolve) => request(`${base}/api/events`, resolve).end())));
    expect(held.every((r) => r.statusCode === 200)).toBe(true);
    expect((await fetch(`${base}/api/events`)).status).toBe(503);
    for (const r of held) r.destroy();
  });
});

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
