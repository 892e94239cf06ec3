/**
 * `GET /worker`: the page that makes a browser tab a worker (worker/browser/), and what it loads.
 * The script is bundled with esbuild on the first request and kept in memory: there is no build
 * step to forget, the coordinator's image needs nothing extra (esbuild is a dependency), and a
 * coordinator no one opens /worker on never pays for it (about a second, see docs/cluster.md).
 * Everything is served from here, tfjs's .wasm files included, so the page works offline.
 *
 * The token is never in what these routes send: the page asks for it, or reads it from the URL
 * fragment, which browsers do not send to the server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import type { Logger } from '../common/logger.ts';

const require = createRequire(import.meta.url);
const here = (name: string) => fileURLToPath(new URL(`../worker/browser/${name}`, import.meta.url));

/** Scripts from this origin only, plus WebAssembly compilation for the wasm backend; sockets back to it. */
export const WORKER_PAGE_CSP = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** Packages the bundle may lack: the Docker image drops the optional WebGPU backend. */
const OPTIONAL_PACKAGES = ['@tensorflow/tfjs-backend-webgpu'];

/**
 * Node-only imports of modules shared with Node: `node:os` (codec.ts's endianness check) becomes a
 * shim that asks a typed array; optional packages that are not installed become a module whose
 * import fails, so the page skips that backend instead of the build failing.
 */
export function browserShims(optionalPackages: string[] = OPTIONAL_PACKAGES): Plugin {
  return {
    name: 'dtrain-browser-shims',
    setup(b) {
      b.onResolve({ filter: /^node:os$/ }, () => ({ path: 'node:os', namespace: 'dtrain-shim' }));
      b.onLoad({ filter: /^node:os$/, namespace: 'dtrain-shim' }, () => ({
        contents: "export function endianness() { return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 ? 'LE' : 'BE'; }",
        loader: 'js',
      }));
      const optional = new RegExp(`^(${optionalPackages.map((p) => p.replace(/[/.]/g, '\\$&')).join('|')})$`);
      b.onResolve({ filter: optional }, (args) => {
        try {
          require.resolve(args.path);
          return undefined;
        } catch {
          return { path: args.path, namespace: 'dtrain-missing' };
        }
      });
      b.onLoad({ filter: /.*/, namespace: 'dtrain-missing' }, (args) => ({
        contents: `throw new Error(${JSON.stringify(`${args.path} is not installed on the coordinator`)});`,
        loader: 'js',
      }));
    },
  };
}

export interface Bundle {
  code: string;
  /** How long esbuild took, for the log. */
  ms: number;
}

/** Bundles worker/browser/main.ts for browsers: one ES module, minified, every backend inside. */
export async function bundleBrowserWorker(): Promise<Bundle> {
  const started = performance.now();
  const result = await build({
    entryPoints: [here('main.ts')],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    legalComments: 'eof',
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
    plugins: [browserShims()],
  });
  return { code: result.outputFiles[0].text, ms: performance.now() - started };
}

const WASM_FILES = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm', 'tfjs-backend-wasm-threaded-simd.wasm'];

function wasmDir(): string {
  return join(dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
}

type Body = { type: string; body: () => Promise<string | Buffer> };

/** Every path these routes answer, and where each body comes from. */
function files(onBundled: (b: Bundle) => void): Record<string, Body> {
  let bundle: Promise<Bundle> | undefined;
  const script = () => {
    bundle ??= bundleBrowserWorker().then((b) => (onBundled(b), b));
    // A failed build is retried on the next request rather than cached.
    bundle.catch(() => (bundle = undefined));
    return bundle;
  };
  const table: Record<string, Body> = {
    '/worker': {
      type: 'text/html; charset=utf-8',
      body: () => {
        void script().catch(() => {}); // start bundling while the browser parses the page
        return readFile(here('page.html'));
      },
    },
    '/worker/app.js': { type: 'text/javascript; charset=utf-8', body: async () => (await script()).code },
    '/worker/worker.css': { type: 'text/css; charset=utf-8', body: () => readFile(here('worker.css')) },
  };
  for (const f of WASM_FILES) table[`/worker/${f}`] = { type: 'application/wasm', body: () => readFile(join(wasmDir(), f)) };
  return table;
}

/** The part of coordinator/http's RouteTable used here. */
export interface Routes {
  register(path: string, handler: (req: IncomingMessage, res: ServerResponse) => void | Promise<void>): unknown;
}

/** Registers /worker and its files. Static files are read once and kept; the script is bundled once. */
export function registerBrowserWorkerRoutes(routes: Routes, log?: Logger): void {
  const cache = new Map<string, string | Buffer>();
  const onBundled = (b: Bundle) => log?.info({ event: 'worker_page_bundled', ms: Math.round(b.ms), bytes: b.code.length }, `browser worker script bundled in ${Math.round(b.ms)} ms`);
  for (const [path, file] of Object.entries(files(onBundled))) {
    routes.register(path, async (req, res) => {
      let body = cache.get(path);
      if (body === undefined) {
        body = await file.body();
        cache.set(path, body);
      }
      res.setHeader('Content-Security-Policy', WORKER_PAGE_CSP);
      res.setHeader('Cache-Control', 'no-store');
      res.setHeader('X-Content-Type-Options', 'nosniff');
      res.writeHead(200, { 'Content-Type': file.type, 'Content-Length': Buffer.byteLength(body) });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  }
}

export const BROWSER_WORKER_PATHS = Object.keys(files(() => {}));
