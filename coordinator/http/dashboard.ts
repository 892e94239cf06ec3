/**
 * The dashboard's static files: our page, script and style (dashboard/), and uPlot's, served from
 * node_modules as npm installed it. No build step: the page is plain HTML, CSS and a JS module.
 * Each file is read once, on first request.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { sendBody, type RouteTable } from './routes.ts';

const require = createRequire(import.meta.url);
const here = (name: string) => fileURLToPath(new URL(`./dashboard/${name}`, import.meta.url));

/** The page loads nothing but these, from this origin: the policy says so. */
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const FILES: Record<string, { path: () => string; type: string }> = {
  '/': { path: () => here('index.html'), type: 'text/html; charset=utf-8' },
  '/dashboard.js': { path: () => here('dashboard.js'), type: 'text/javascript; charset=utf-8' },
  '/dashboard.css': { path: () => here('dashboard.css'), type: 'text/css; charset=utf-8' },
  '/vendor/uPlot.iife.min.js': { path: () => require.resolve('uplot/dist/uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
  '/vendor/uPlot.min.css': { path: () => require.resolve('uplot/dist/uPlot.min.css'), type: 'text/css; charset=utf-8' },
};

export function dashboardRoutes(routes: RouteTable): void {
  const cache = new Map<string, Buffer>();
  for (const [route, file] of Object.entries(FILES)) {
    routes.register(route, async (_req, res) => {
      let body = cache.get(route);
      if (!body) {
        body = await readFile(file.path());
        cache.set(route, body);
      }
      res.setHeader('Content-Security-Policy', CSP);
      sendBody(res, file.type, body);
    });
  }
}
