import { describe, expect, it } from 'vitest';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { build } from 'esbuild';
import { BROWSER_WORKER_PATHS, browserShims, registerBrowserWorkerRoutes, WORKER_PAGE_CSP } from './browser-worker.ts';

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** The routes on a plain http.Server on loopback, as the coordinator's route table would serve them. */
async function serve(): Promise<{ base: string; close(): void }> {
  const table = new Map<string, Handler>();
  registerBrowserWorkerRoutes({ register: (path, handler) => table.set(path, handler) });
  const server = createServer((req, res) => {
    const handler = table.get(new URL(req.url ?? '/', 'http://x').pathname);
    if (handler) void handler(req, res);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => server.close() };
}

async function bundleOf(source: string, optional: string[]): Promise<string> {
  const r = await build({ stdin: { contents: source, resolveDir: process.cwd(), loader: 'ts' }, bundle: true, write: false, format: 'esm', platform: 'browser', logLevel: 'silent', plugins: [browserShims(optional)] });
  return r.outputFiles[0].text;
}

describe('the browser worker routes', () => {
  it('serve the page, its style, its bundled script and the tfjs .wasm files, under a strict policy', async () => {
    const { base, close } = await serve();
    try {
      expect(BROWSER_WORKER_PATHS).toEqual(expect.arrayContaining(['/worker', '/worker/app.js', '/worker/worker.css', '/worker/tfjs-backend-wasm-simd.wasm']));
      const page = await fetch(`${base}/worker`);
      expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
      expect(page.headers.get('content-security-policy')).toBe(WORKER_PAGE_CSP);
      expect(await page.text()).toContain('<script type="module" src="/worker/app.js">');
      const script = await fetch(`${base}/worker/app.js`);
      expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
      const code = await script.text();
      // One self-contained module: nothing left to resolve in the browser, no Node built-ins.
      expect(code.length).toBeGreaterThan(500_000);
      expect(code).not.toMatch(/from\s*["'](node:|@tensorflow|msgpackr)/);
      const wasm = new Uint8Array(await (await fetch(`${base}/worker/tfjs-backend-wasm-simd.wasm`)).arrayBuffer());
      // "\0asm": the WebAssembly magic number.
      expect([...wasm.subarray(0, 4)]).toEqual([0, 0x61, 0x73, 0x6d]);
    } finally {
      close();
    }
  });
});

describe('the browser shims', () => {
  it('answer node:os endianness from a typed array', async () => {
    const code = await bundleOf("import { endianness } from 'node:os'; export const e = endianness();", []);
    const mod = await import(`data:text/javascript,${encodeURIComponent(code)}`);
    expect(mod.e).toBe('LE');
  });

  it('turn an optional package that is not installed into an import that fails, not a failed build', async () => {
    const code = await bundleOf("export const loaded = import('@tensorflow/not-installed-here').then(() => 'yes', (e) => e.message);", ['@tensorflow/not-installed-here']);
    const mod = await import(`data:text/javascript,${encodeURIComponent(code)}`);
    expect(await mod.loaded).toBe('@tensorflow/not-installed-here is not installed on the coordinator');
  });
});
