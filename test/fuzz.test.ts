/**
 * A fuzz run against a live, training coordinator: at least 10,000 random and mutated frames from
 * authenticated peers (before the hello, after it, and once joined with a task in hand), bounded in
 * time. The coordinator must not crash or report an internal error, and once an honest worker
 * joins, training must finish every step. The generator is seeded: a failure names its seed.
 */
import { afterAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';
import { PROTOCOL_VERSION } from '../common/protocol.ts';
import { seededRandom } from '../common/report/test-fixtures.ts';

const TOKEN = 'fuzz-test-token';
const AUTH = { headers: { authorization: `Bearer ${TOKEN}` } };
const FRAMES = 10_000;
const DEADLINE_MS = 45_000;
const CONCURRENCY = 12;
const SEED = Number(process.env.DTRAIN_FUZZ_SEED ?? 20261130);

afterAll(() => killAll());

function fuzzer(random: () => number) {
  const int = (n: number) => Math.floor(random() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  const bytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
  const values = (): unknown => pick([
    () => int(1e6), () => -int(100), () => Number.NaN, () => Number.POSITIVE_INFINITY, () => 2 ** 53 + 2, () => random() * 1e30,
    () => 'x'.repeat(int(600)), () => '', () => bytes(int(64)), () => [1, 2, 3], () => ({ nested: { deep: [null] } }), () => null, () => true,
  ])();
  const TYPES = ['hello', 'ready', 'result', 'task_failed', 'bn_sums', 'welcome', 'task', 'nope', undefined];
  const randomMessage = (): Record<string, unknown> => {
    const m: Record<string, unknown> = { type: pick(TYPES) };
    for (const k of ['protocolVersion', 'workerName', 'backend', 'taskId', 'count', 'lossSum', 'correct', 'computeMs', 'gradients', 'stats', 'predictions', 'code', 'message']) {
      if (random() < 0.5) m[k] = values();
    }
    return m;
  };
  const valid = (taskId: number, count: number): Uint8Array => pick([
    () => pack({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'fuzz' }),
    () => pack({ type: 'ready', backend: 'fuzz' }),
    () => pack({ type: 'task_failed', taskId, code: 'X', message: 'm' }),
    () => pack({ type: 'result', taskId, count, lossSum: 1, correct: 0, computeMs: 1, predictions: new Uint8Array(count) }),
  ])();
  const mutate = (frame: Uint8Array): Uint8Array => {
    const f = Uint8Array.from(frame);
    switch (int(3)) {
      case 0:
        for (let i = 0, n = 1 + int(8); i < n; i++) f[int(f.length)] = int(256);
        return f;
      case 1:
        return f.subarray(0, int(f.length));
      default: {
        const out = new Uint8Array(f.length + 1 + int(32));
        out.set(f);
        out.set(bytes(out.length - f.length), f.length);
        return out;
      }
    }
  };
  /** One frame: random bytes, a mutated valid frame, a random message, or a text frame. */
  return (taskId: number, count: number): Uint8Array | string => {
    const r = random();
    if (r < 0.25) return bytes(int(512));
    if (r < 0.6) return mutate(valid(taskId, count));
    if (r < 0.95) return pack(randomMessage());
    return 'text frame';
  };
}

/** One peer: maybe hello, maybe ready (and a task), then a burst of fuzz frames. Resolves with frames sent. */
function peer(url: string, random: () => number, frame: ReturnType<typeof fuzzer>): Promise<number> {
  return new Promise((resolve) => {
    const s = new WebSocket(url, AUTH);
    let sent = 0;
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      s.terminate();
      resolve(sent);
    };
    const burst = (taskId: number, count: number) => {
      const n = 1 + Math.floor(random() * 6);
      for (let i = 0; i < n && s.readyState === s.OPEN; i++) {
        s.send(frame(taskId, count));
        sent++;
      }
      setTimeout(finish, 50);
    };
    const stage = random();
    s.on('open', () => {
      if (stage < 0.3) return burst(1, 1); // garbage before the hello
      s.send(pack({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'fuzz' }));
      sent++;
    });
    let welcomed = false;
    s.on('message', (data: Buffer) => {
      if (!welcomed) {
        welcomed = true;
        if (stage < 0.6) return burst(1, 1); // after the welcome
        s.send(pack({ type: 'ready', backend: 'fuzz' }));
        sent++;
        setTimeout(() => burst(1, 1), 100); // joined, but no task came
        return;
      }
      // A task: answer it with fuzz that knows its id and count, so some of it reaches the result checks.
      const task = unpack(data) as { taskId?: number; labels?: Uint8Array };
      burst(task.taskId ?? 1, task.labels?.length ?? 1);
    });
    s.on('error', () => {});
    s.on('close', finish);
    setTimeout(finish, 5000);
  });
}

describe('fuzzing a live coordinator', () => {
  it(`survives ${FRAMES} random and mutated frames, and then trains to the end (seed ${SEED})`, { timeout: 150_000 }, async () => {
    const out = await tempDir();
    const c = new DtrainProcess(
      ['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--limit-train', '640', '--limit-test', '100', '--model', 'lenet',
        '--backend', 'wasm', '--no-plots', '--epochs', '1', '--min-workers', '1', '--max-evictions', '0', '--max-workers', '64', '--out', out],
      { DTRAIN_TOKEN: TOKEN },
    );
    const url = `ws://127.0.0.1:${(await c.waitFor('listening')).port as number}`;
    const random = seededRandom(SEED);
    const frame = fuzzer(random);
    const started = Date.now();
    let sent = 0;
    let peers = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (sent < FRAMES && Date.now() - started < DEADLINE_MS) {
        const n = await peer(url, random, frame); // not `sent += await …`: that reads `sent` before the await
        sent += n;
        peers++;
      }
    }));
    const seconds = (Date.now() - started) / 1000;
    console.log(`fuzz: ${sent} frames from ${peers} peers in ${seconds.toFixed(1)} s (seed ${SEED})`);
    expect(sent).toBeGreaterThanOrEqual(FRAMES);
    expect(c.child.exitCode).toBeNull();
    // Then an honest worker joins, and every step is trained.
    new DtrainProcess(['worker', '--connect', url, '--backend', 'wasm'], { DTRAIN_TOKEN: TOKEN });
    expect((await c.exited).code).toBe(0);
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    expect(metrics.steps).toBe(20);
    expect(c.lines.filter((l) => l.code === 'DTRAIN_ERR_INTERNAL')).toEqual([]);
    expect(c.events('frame_rejected').length).toBeGreaterThan(100);
    expect(c.stderr.filter((l) => /Error|at /.test(l))).toEqual([]);
  });
});
