/**
 * A hostile or broken peer against a real coordinator: each malformed frame is rejected with its
 * stable code and close code, the connection is closed, and training goes on with the honest worker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { pack, unpack } from 'msgpackr';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DtrainProcess, killAll } from './processes.ts';
import { tempDir } from './helpers.ts';
import { encode } from '../common/codec.ts';
import { PROTOCOL_VERSION, type TaskMessage } from '../common/protocol.ts';

const TOKEN = 'frames-test-token';
const AUTH = { headers: { authorization: `Bearer ${TOKEN}` } };
const LENET_TRAINABLE = 62006;

let c: DtrainProcess;
let port: number;
let honest: DtrainProcess;
let out: string;

beforeAll(async () => {
  out = await tempDir();
  c = new DtrainProcess(
    ['coordinator', '--port', '0', '--host', '127.0.0.1', '--dataset', 'synthetic', '--limit-train', '2560', '--limit-test', '100', '--model', 'lenet',
      '--backend', 'wasm', '--no-plots', '--epochs', '1', '--min-workers', '1', '--max-frame-mb', '1', '--max-evictions', '0', '--out', out],
    { DTRAIN_TOKEN: TOKEN },
  );
  port = (await c.waitFor('listening')).port as number;
  honest = new DtrainProcess(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm'], { DTRAIN_TOKEN: TOKEN });
  await c.waitFor('step', (l) => (l.step as number) >= 2);
  // Training must outlast the hostile peers whatever the machine's speed: the honest worker is
  // stopped (and evicted by the heartbeat), so every task goes to the peers until it is continued.
  honest.kill('SIGSTOP');
  await c.waitFor('worker_evicted', undefined, 30_000);
});

afterAll(() => killAll());

interface Peer {
  socket: WebSocket;
  /** The id the coordinator gave this peer in its welcome. */
  workerId: string;
  closed: Promise<number>;
  /** The next task the coordinator sends, once joined. */
  task: Promise<TaskMessage>;
}

/** Connects, authenticates and (optionally) joins as a worker that will misbehave. */
async function peer(join: boolean): Promise<Peer> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}`, AUTH);
  const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
  let resolveTask: (t: TaskMessage) => void = () => {};
  const task = new Promise<TaskMessage>((r) => (resolveTask = r));
  await new Promise((r) => socket.once('open', r));
  socket.send(encode({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'hostile' }));
  const welcome = unpack((await new Promise((r) => socket.once('message', r))) as Buffer) as { workerId: string };
  if (join) {
    socket.on('message', (data: Buffer) => {
      const m = unpack(data);
      if (m.type === 'task') resolveTask(m as TaskMessage);
    });
    socket.send(encode({ type: 'ready', backend: 'fake' }));
  }
  return { socket, closed, task, workerId: welcome.workerId };
}

function result(taskId: number, count: number, gradients: Float32Array) {
  return { type: 'result', taskId, count, lossSum: 1, correct: 0, computeMs: 1, gradients: new Uint8Array(gradients.buffer) };
}

describe('malformed frames against a training coordinator', () => {
  const cases: { name: string; code: string; close: number; frame: (task?: TaskMessage) => Uint8Array | string; needsTask?: boolean }[] = [
    { name: 'random bytes', code: 'DTRAIN_ERR_FRAME_NOT_MSGPACK', close: 4003, frame: () => Uint8Array.from([0xc1, 0xff, 0x00, 0x13, 0x37]) },
    { name: 'an empty map', code: 'DTRAIN_ERR_FRAME_TYPE', close: 4003, frame: () => pack({}) },
    { name: 'an array', code: 'DTRAIN_ERR_FRAME_NOT_MAP', close: 4003, frame: () => pack([1, 2, 3]) },
    { name: 'a text frame', code: 'DTRAIN_ERR_FRAME_TEXT', close: 4003, frame: () => 'hello' },
    { name: 'a ready whose backend is a number', code: 'DTRAIN_ERR_FRAME_SHAPE', close: 4003, frame: () => pack({ type: 'ready', backend: 42 }) },
    { name: 'a result for no pending task', code: 'DTRAIN_ERR_UNKNOWN_TASK', close: 4003, needsTask: true, frame: () => pack(result(999_999, 1, new Float32Array(LENET_TRAINABLE))) },
    { name: 'a result before ready', code: 'DTRAIN_ERR_UNEXPECTED_MESSAGE', close: 4003, frame: () => pack(result(1, 1, new Float32Array(LENET_TRAINABLE))) },
    {
      name: 'gradients of the wrong length', code: 'DTRAIN_ERR_TENSOR_LENGTH', close: 4003, needsTask: true,
      frame: (t) => pack(result(t!.taskId, t!.labels.length, new Float32Array(10))),
    },
    {
      name: 'a result for another number of samples than its task', code: 'DTRAIN_ERR_COUNT_MISMATCH', close: 4003, needsTask: true,
      frame: (t) => pack(result(t!.taskId, t!.labels.length + 1, new Float32Array(LENET_TRAINABLE))),
    },
    {
      name: 'NaN gradients', code: 'DTRAIN_ERR_NON_FINITE', close: 4003, needsTask: true,
      frame: (t) => pack(result(t!.taskId, t!.labels.length, new Float32Array(LENET_TRAINABLE).fill(Number.NaN))),
    },
    {
      name: 'Infinity gradients', code: 'DTRAIN_ERR_NON_FINITE', close: 4003, needsTask: true,
      frame: (t) => pack(result(t!.taskId, t!.labels.length, new Float32Array(LENET_TRAINABLE).fill(Number.POSITIVE_INFINITY))),
    },
    {
      name: 'a train result without gradients', code: 'DTRAIN_ERR_MISSING_TENSOR', close: 4003, needsTask: true,
      frame: (t) => pack({ type: 'result', taskId: t!.taskId, count: t!.labels.length, lossSum: 1, correct: 0, computeMs: 1 }),
    },
    { name: 'a frame larger than any lenet result (under --max-frame-mb)', code: 'DTRAIN_ERR_FRAME_TOO_LARGE', close: 1009, frame: () => new Uint8Array(600 * 1024) },
    { name: 'a frame over the size limit', code: 'DTRAIN_ERR_FRAME_TOO_LARGE', close: 1009, frame: () => new Uint8Array(2 * 1024 * 1024) },
  ];

  it('gives each kind of malformed frame its own code', () => {
    // NaN and Infinity are one kind (non-finite); the two size cases are one kind (too large).
    const kinds = new Set(cases.map((tc) => tc.code));
    expect(kinds.size).toBe(cases.length - 2);
  });

  for (const tc of cases) {
    it(`rejects ${tc.name} with ${tc.code} and close code ${tc.close}`, async () => {
      const p = await peer(tc.needsTask === true);
      const task = tc.needsTask ? await p.task : undefined;
      const before = c.events('frame_rejected').length;
      p.socket.send(tc.frame(task));
      expect(await p.closed).toBe(tc.close);
      const rejected = await c.waitFor('frame_rejected', (l) => l.code === tc.code);
      expect(rejected.closeCode).toBe(tc.close);
      expect(c.events('frame_rejected').length).toBeGreaterThan(before);
    });
  }

  it('survives a task_failed whose long non-ASCII message cannot be a close reason', async () => {
    const p = await peer(true);
    const task = await p.task;
    p.socket.send(pack({ type: 'task_failed', taskId: task.taskId, code: 'X', message: 'é/日本/'.repeat(200) }));
    expect(await p.closed).toBe(4004);
    await c.waitFor('worker_left', (l) => String(l.reason).includes('task'));
    honest.kill('SIGCONT');
    // Still training: a later step completes.
    const step = (c.events('step').at(-1)?.step as number) ?? 0;
    await c.waitFor('step', (l) => (l.step as number) > step);
  });

  it('drops frames that arrive after it closed a connection, without logging them as bad frames', async () => {
    const p = await peer(true);
    const task = await p.task;
    // One bad frame, then a burst the coordinator reads while closing: only the first is a bad frame.
    p.socket.send(Uint8Array.from([0xc1]));
    for (let i = 0; i < 5; i++) p.socket.send(pack(result(task.taskId, task.labels.length, new Float32Array(LENET_TRAINABLE))));
    expect(await p.closed).toBe(4003);
    await new Promise((r) => setTimeout(r, 300));
    expect(c.events('frame_rejected').filter((l) => l.workerId === p.workerId)).toHaveLength(1);
  });

  it('refuses an unknown protocol version with close code 4002', async () => {
    const socket = new WebSocket(`ws://127.0.0.1:${port}`, AUTH);
    const closed = new Promise<number>((resolve) => socket.on('close', (code) => resolve(code)));
    await new Promise((r) => socket.once('open', r));
    socket.send(encode({ type: 'hello', protocolVersion: PROTOCOL_VERSION + 1, workerName: 'future' }));
    expect(await closed).toBe(4002);
    expect((await c.waitFor('auth_failed', (l) => l.code === 'DTRAIN_ERR_VERSION')).closeCode).toBe(4002);
  });

  it('keeps training through all of it, and finishes every step', async () => {
    await c.waitFor('run_finished', undefined, 180_000);
    const metrics = JSON.parse(await readFile(join(out, 'metrics.json'), 'utf8'));
    expect(metrics.steps).toBe(80);
    expect((await c.exited).code).toBe(0);
  });
});
