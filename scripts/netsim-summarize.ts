/**
 * Turns scripts/netsim.sh's runs (a manifest line per run, each pointing at the coordinator's JSON
 * log) into docs/netsim.json: per run, the medians of the step log's timings and bytes, skipping
 * the first `--warmup` steps (JIT, first connections, the first frames of each size).
 */
import { readFile, writeFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { parseArgs } from 'node:util';
import type { NetsimReport, NetsimRun } from './netsim-model.ts';

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface ManifestLine {
  model: string;
  dtype: string;
  rate: string;
  workers: number;
  log: string;
  ifaceBytes: number;
  loadStart: string;
  loadEnd: string;
  wallSeconds: number;
}

function gbit(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)(g|m)bit$/.exec(rate);
  if (!m) throw new Error(`Expected a rate like 1gbit or 100mbit, but got "${rate}".`);
  return Number(m[1]) / (m[2] === 'm' ? 1000 : 1);
}

async function summarizeRun(line: ManifestLine, warmupSteps: number): Promise<NetsimRun> {
  const steps = (await readFile(line.log, 'utf8'))
    .split('\n')
    .filter((l) => l.includes('"event":"step"'))
    .map((l) => JSON.parse(l) as Record<string, number>);
  const used = steps.filter((s) => s.step > warmupSteps);
  if (used.length === 0) throw new Error(`netsim: ${line.log} logged ${steps.length} steps, none after the ${warmupSteps} of warm-up`);
  const pick = (key: string) => median(used.map((s) => s[key]));
  return {
    model: line.model,
    dtype: line.dtype as NetsimRun['dtype'],
    rateGbit: gbit(line.rate),
    workers: line.workers,
    stepsMeasured: used.length,
    ms: pick('ms'),
    computeMs: pick('computeMs'),
    commMs: pick('commMs'),
    optimizerMs: pick('optimizerMs'),
    bytesOut: pick('bytesOut'),
    bytesIn: pick('bytesIn'),
    samples: pick('samples'),
    ifaceBytesPerStep: Math.round(line.ifaceBytes / Math.max(1, steps.length)),
    loadStart: line.loadStart.split(' ').map(Number),
    loadEnd: line.loadEnd.split(' ').map(Number),
    wallSeconds: Math.round(line.wallSeconds * 10) / 10,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      manifest: { type: 'string' }, out: { type: 'string' }, began: { type: 'string' }, delay: { type: 'string' },
      'batch-per-worker': { type: 'string' }, 'delay-emulated': { type: 'string' }, steps: { type: 'string' }, warmup: { type: 'string' }, quick: { type: 'string' }, command: { type: 'string' },
    },
  });
  const lines = (await readFile(values.manifest!, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as ManifestLine);
  const warmupSteps = Number(values.warmup ?? '2');
  if (!Number.isInteger(warmupSteps) || warmupSteps < 0) throw new Error(`netsim: --warmup takes a whole number of steps, got "${values.warmup}"`);
  const runs = await Promise.all(lines.map((line) => summarizeRun(line, warmupSteps)));
  const report: NetsimReport = {
    date: values.began!,
    finished: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    command: values.command ?? 'scripts/netsim.sh',
    quick: values.quick === '1',
    machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version },
    setup: { delayMs: parseFloat(values.delay ?? '0.2'), delayEmulated: values['delay-emulated'] === '1', batchPerWorker: Number(values['batch-per-worker']), steps: Number(values.steps), warmupSteps, dataset: 'synthetic', backend: 'wasm' },
    runs,
  };
  await writeFile(values.out!, JSON.stringify(report, null, 2) + '\n');
  console.error(`netsim: wrote ${values.out} (${runs.length} runs)`);
}

await main();
