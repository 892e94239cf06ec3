/**
 * What watching a run costs the coordinator per step: RunMonitor's step hook (the dashboard's
 * state, the Prometheus metrics, and one subscriber standing in for a live dashboard), and a
 * /metrics render. `npx tsx scripts/bench-monitor.ts`
 */
import { RunMonitor } from '../coordinator/http/monitor.ts';
import { stepEvent } from '../coordinator/http/testing.ts';

const STEPS = 20_000;
const monitor = new RunMonitor({ model: 'lenet', dataset: 'synthetic', epochs: 20, batchSize: 32, transport: 'websocket', out: '/nonexistent' });
let delivered = 0;
monitor.state.subscribe(() => delivered++);
const events = Array.from({ length: STEPS }, (_, i) => stepEvent({ step: i + 1, stepInEpoch: (i % 1250) + 1, stepsInEpoch: 1250, epoch: Math.floor(i / 1250) + 1 }));

function perStepMicros(from: number, to: number): number {
  const t = process.hrtime.bigint();
  for (let i = from; i < to; i++) monitor.hooks.onStep(events[i]);
  return Number(process.hrtime.bigint() - t) / 1000 / (to - from);
}

perStepMicros(0, 2000); // warm up
const runs = [2000, 6000, 10_000, 14_000, 18_000].map((from) => perStepMicros(from, from + 2000)).sort((a, b) => a - b);
const t = process.hrtime.bigint();
const text = (await monitor.metrics.render()).text;
const renderMs = Number(process.hrtime.bigint() - t) / 1e6;
console.log(`step hook: median ${runs[2].toFixed(1)} µs per step (min ${runs[0].toFixed(1)}, max ${runs[4].toFixed(1)}; 5 batches of 2,000 steps), ${delivered} messages delivered`);
console.log(`/metrics render: ${renderMs.toFixed(2)} ms for ${text.length} bytes; /api/status snapshot: ${JSON.stringify(monitor.state.snapshot()).length} bytes after ${STEPS} steps`);
