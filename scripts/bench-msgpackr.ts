/**
 * What msgpackr loses without its native decoder (msgpackr-extract): decodes dtrain-shaped frames
 * with the codec's Packr settings and prints µs per decode. Run it twice and compare:
 *
 *   npx tsx scripts/bench-msgpackr.ts
 *   MSGPACKR_NATIVE_ACCELERATION_DISABLED=true npx tsx scripts/bench-msgpackr.ts
 *
 * msgpackr-extract only speeds up reading strings; dtrain's frames are mostly raw tensor bytes.
 */
import { Packr, isNativeAccelerationEnabled } from 'msgpackr';

const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number' });
const bytes = (n: number) => new Uint8Array(n).map((_, i) => i & 255);

const frames: Record<string, unknown> = {
  'hello (strings only)': { type: 'hello', protocolVersion: 3, workerName: 'worker-on-some-host-1', backend: 'wasm' },
  'lenet result (62,006 gradients)': { type: 'result', taskId: 17, count: 16, lossSum: 36.8, correct: 3, computeMs: 21.5, gradients: bytes(62_006 * 4) },
  'mlp result (402,250 gradients)': { type: 'result', taskId: 18, count: 16, lossSum: 36.8, correct: 3, computeMs: 9.1, gradients: bytes(402_250 * 4) },
  'lenet task (weights + 16 images)': { type: 'task', taskId: 19, kind: 'train', weightsVersion: 4, weights: bytes(62_006 * 4), images: bytes(16 * 3072), labels: bytes(16) },
  '/api/status-like JSON (300 strings)': { events: Array.from({ length: 100 }, (_, i) => ({ t: new Date(1e12 + i).toISOString(), kind: 'worker_joined', text: `worker w${i} (host-${i}, wasm) joined` })) },
};

function microsPerDecode(frame: Uint8Array): number {
  const run = (n: number) => {
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) packr.unpack(frame);
    return Number(process.hrtime.bigint() - t) / 1000 / n;
  };
  run(200); // warm up the JIT
  const times = Array.from({ length: 7 }, () => run(Math.max(50, Math.round(2e7 / (frame.byteLength + 2000)))));
  return times.sort((a, b) => a - b)[3];
}

console.log(`msgpackr native acceleration: ${isNativeAccelerationEnabled ? 'on (msgpackr-extract loaded)' : 'off'}; Node ${process.version}`);
for (const [name, message] of Object.entries(frames)) {
  const frame = packr.pack(message);
  console.log(`${name.padEnd(38)} ${String(frame.byteLength).padStart(9)} bytes  ${microsPerDecode(frame).toFixed(2).padStart(9)} µs/decode (median of 7)`);
}
