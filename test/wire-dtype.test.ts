/**
 * The leaner wire with real processes on loopback: float16 / bfloat16 weights and gradients still
 * train (close to the float32 run of the same seed), workers with their own copy of the data get
 * indices and end with exactly the weights of pixel workers, and a worker whose dataset differs is
 * refused in the handshake.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DtrainProcess, killAll } from './processes.ts';
import { maxAbsDiff, tempDir } from './helpers.ts';
import { decodeCoordinatorMessage, encode } from '../common/codec.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type HelloMessage, type WelcomeMessage } from '../common/protocol.ts';
import { loadCheckpoint } from '../coordinator/checkpoint.ts';
import { buildModel } from '../common/models.ts';
import { initialWeights, weightLayout } from '../common/weights.ts';

const TOKEN = 'wire-dtype-test-token';
const ENV = { DTRAIN_TOKEN: TOKEN };

afterEach(() => killAll());

function coordinator(out: string, extra: string[] = []): DtrainProcess {
  return new DtrainProcess(
    ['coordinator', '--port', '0', '--host', '127.0.0.1', '--no-http', '--dataset', 'synthetic', '--limit-train', '320', '--limit-test', '100',
      '--model', 'lenet', '--backend', 'wasm', '--no-plots', '--epochs', '1', '--out', out, ...extra],
    ENV,
  );
}

function worker(port: number, extra: string[] = []): DtrainProcess {
  return new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', ...extra], ENV);
}

interface Run {
  weights: Float32Array;
  testLoss: number;
  steps: { loss: number; bytesOut: number; bytesIn: number }[];
  coordinator: DtrainProcess;
}

/** One epoch (10 steps of 32) with one worker per entry of `workers` (its extra flags). */
async function train(coordinatorFlags: string[], workers: string[][]): Promise<Run> {
  const out = await tempDir();
  const c = coordinator(out, ['--min-workers', String(workers.length), ...coordinatorFlags]);
  const port = (await c.waitFor('listening')).port as number;
  const ws = workers.map((flags) => worker(port, flags));
  await c.waitFor('run_finished', undefined, 120_000);
  expect((await c.exited).code).toBe(0);
  for (const w of ws) expect((await w.exited).code).toBe(0);
  const ckpt = await loadCheckpoint(out, 'lenet');
  const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
  const steps = c.events('step').map((s) => ({ loss: s.loss as number, bytesOut: s.bytesOut as number, bytesIn: s.bytesIn as number }));
  return { weights: ckpt!.weights, testLoss: metrics.test_loss, steps, coordinator: c };
}

function distance(a: Float32Array, b: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return Math.sqrt(sum);
}

async function startingWeights(): Promise<Float32Array> {
  const model = buildModel('lenet');
  const layout = weightLayout(model);
  model.dispose();
  return initialWeights(layout, 42);
}

describe('the wire dtype and local data over WebSockets', () => {
  it('index tasks end with exactly the weights and test loss of pixel tasks, and send far fewer bytes', async () => {
    const pixels = await train([], [[]]);
    const indices = await train([], [['--dataset', 'synthetic']]);
    expect(indices.steps).toHaveLength(10);
    expect(maxAbsDiff(indices.weights, pixels.weights)).toBe(0);
    expect(indices.testLoss).toBe(pixels.testLoss);
    // Step 2 on: weights (62,006 float32) + 32 labels; pixels add 32 × 3,072 bytes, indices 32 × 4.
    expect(pixels.steps[1].bytesOut - indices.steps[1].bytesOut).toBe(32 * 3072 - 32 * 4);
  }, 180_000);

  it('trains with float16 and bfloat16 workers close to the float32 run of the same seed, with half the gradient bytes', async () => {
    // Two workers each, sliced the same way: the only difference is the rounding on the wire.
    const reference = await train([], [[], ['--dataset', 'synthetic']]);
    // The coordinator says float16; the second worker asks for bfloat16 and reads its own data.
    const narrow = await train(['--wire-dtype', 'float16'], [[], ['--wire-dtype', 'bfloat16', '--dataset', 'synthetic']]);
    expect(narrow.coordinator.events('run_started')[0].wireDtype).toBe('float16');
    // Every step's loss follows the float32 run's; the test loss too.
    for (const [i, step] of narrow.steps.entries()) expect(Math.abs(step.loss - reference.steps[i].loss)).toBeLessThan(0.01);
    expect(Math.abs(narrow.testLoss - reference.testLoss)).toBeLessThan(0.01);
    // The weights differ, but stay close. Not measured by the largest difference: early on, Adam's
    // normalized step moves every weight by about ±lr whatever its gradient's size, so rounding a
    // near-zero gradient (or a sum of two slices that nearly cancel) can flip a full step.
    const start = await startingWeights();
    const relative = distance(narrow.weights, reference.weights) / distance(reference.weights, start);

    expect(relative).toBeGreaterThan(0);
    expect(relative).toBeLessThan(0.5);
    // Gradients: 62,006 values in 2 bytes (+ 1 exponent byte per 256 for float16) instead of 4.
    expect(narrow.steps[1].bytesIn).toBe(62006 * 2 + Math.ceil(62006 / 256) + 62006 * 2);
    expect(reference.steps[1].bytesIn).toBe(2 * 62006 * 4);
  }, 180_000);

  it('gives float16 to a worker that asks for the coordinator\'s dtype, and float32 to one that does not speak wire dtypes', async () => {
    const out = await tempDir();
    const c = coordinator(out, ['--min-workers', '1', '--wire-dtype', 'float16']);
    const port = (await c.waitFor('listening')).port as number;
    const welcomeFor = async (hello: Record<string, unknown>) => {
      const socket = new WebSocket(`ws://127.0.0.1:${port}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      await new Promise((r) => socket.once('open', r));
      const welcome = new Promise<Buffer>((r) => socket.once('message', r));
      socket.send(encode({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'probe', ...hello } as HelloMessage));
      const msg = decodeCoordinatorMessage(await welcome) as WelcomeMessage;
      socket.close();
      return msg;
    };
    expect((await welcomeFor({ wireDtype: 'auto' })).wireDtype).toBe('float16');
    expect((await welcomeFor({ wireDtype: 'bfloat16' })).wireDtype).toBe('bfloat16');
    expect((await welcomeFor({})).wireDtype).toBe('float32'); // e.g. the browser worker
  }, 60_000);

  it('refuses a worker whose dataset fingerprint differs, with close code 4006', async () => {
    const out = await tempDir();
    const c = coordinator(out, ['--min-workers', '1']);
    const port = (await c.waitFor('listening')).port as number;
    const socket = new WebSocket(`ws://127.0.0.1:${port}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    await new Promise((r) => socket.once('open', r));
    socket.send(encode({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'other-data', dataset: 'cifar10:0000' }));
    expect(await closed).toBe(CLOSE_CODES.dataset);
    const refusal = await c.waitFor('dataset_mismatch');
    expect(refusal.code).toBe('DTRAIN_ERR_DATASET_MISMATCH');
    expect(String(refusal.reason)).toContain('cifar10:0000');
  }, 60_000);
});
