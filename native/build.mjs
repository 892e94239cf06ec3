#!/usr/bin/env node
/**
 * Builds dtrain's optional native kernels (native/dtrain-kernels.cc → native/build/dtrain-kernels.node):
 * an N-API addon on oneDNN, loaded at run time by common/kernels/native/addon.ts when present.
 *
 *   npm run build:native            build; exit 1 with the reason when it cannot (no g++, no oneDNN)
 *   node native/build.mjs --if-possible   the same, but exit 0 when a prerequisite is missing
 *                                   (npm's postinstall: a bare machine still installs, on wasm kernels)
 *
 * g++ directly rather than node-gyp: node-gyp downloads Node's headers, and this must build
 * offline. Node's own headers (node_api.h) ship with Node under <prefix>/include/node. Needs
 * g++ and Debian's libdnnl-dev (oneDNN 2.6). Skips the compile when the addon is newer than its source.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const source = join(here, 'dtrain-kernels.cc');
const output = join(here, 'build', 'dtrain-kernels.node');
const ifPossible = process.argv.includes('--if-possible');
const force = process.argv.includes('--force');

function stop(reason) {
  if (ifPossible) {
    console.log(`dtrain: native kernels not built (${reason}); training uses the wasm kernels. See README: npm run build:native.`);
    process.exit(0);
  }
  console.error(`dtrain: cannot build the native kernels: ${reason}.`);
  process.exit(1);
}

try {
  build();
} catch (err) {
  // Never let an unexpected failure break `npm install` (postinstall runs this with --if-possible).
  stop(`unexpected error: ${err instanceof Error ? err.message : String(err)}`);
}

function build() {
  if (process.env.DTRAIN_NATIVE_KERNELS === '0' && ifPossible) stop('DTRAIN_NATIVE_KERNELS=0');
  if (process.platform !== 'linux' || process.arch !== 'x64') stop(`only linux-x64 is supported, this is ${process.platform}-${process.arch}`);

  const nodeInclude = [resolve(dirname(process.execPath), '..', 'include', 'node'), '/usr/include/node', '/usr/local/include/node'].find((d) => existsSync(join(d, 'node_api.h')));
  if (!nodeInclude) stop("Node's headers (include/node/node_api.h) were not found next to this node binary");
  const dnnlInclude = ['/usr/include', '/usr/local/include'].find((d) => existsSync(join(d, 'oneapi', 'dnnl', 'dnnl.hpp')));
  if (!dnnlInclude) stop('oneDNN headers not found (Debian: apt-get install libdnnl-dev)');
  const compiler = process.env.CXX || 'g++';
  if (spawnSync(compiler, ['--version'], { stdio: 'ignore' }).status !== 0) stop(`no C++ compiler (${compiler}; Debian: apt-get install g++)`);

  if (!force && existsSync(output) && statSync(output).mtimeMs > statSync(source).mtimeMs && statSync(output).mtimeMs > statSync(fileURLToPath(import.meta.url)).mtimeMs) {
    console.log(`dtrain: native kernels up to date (${output}).`);
    process.exit(0);
  }

  mkdirSync(dirname(output), { recursive: true });
  const partial = `${output}.partial`;
  const args = ['-std=c++17', '-O3', '-fPIC', '-shared', '-fvisibility=hidden', '-Wall', '-Wno-unused-parameter', `-I${nodeInclude}`, `-I${dnnlInclude}`, source, '-o', partial, '-ldnnl', '-fopenmp'];
  console.log(`dtrain: building native kernels: ${compiler} ${args.join(' ')}`);
  const started = Date.now();
  const run = spawnSync(compiler, args, { stdio: 'inherit' });
  if (run.status !== 0) stop(`${compiler} exited with ${run.status ?? run.signal}`);
  renameSync(partial, output);
  console.log(`dtrain: built ${output} in ${((Date.now() - started) / 1000).toFixed(1)} s.`);
}
