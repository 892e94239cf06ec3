import { capturingLogger } from '../test/capture-logger.ts';
import { describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import type { WebSocket } from 'ws';
import { Connection, Stage } from './connection.ts';
import { Membership } from './membership.ts';
import { encode } from '../common/codec.ts';
import { NET_DEFAULTS } from '../common/config.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type TaskMessage } from '../common/protocol.ts';

/** Just enough of a ws socket: records what is sent and how it is closed. */
class FakeSocket extends EventEmitter {
  readonly OPEN = 1;
  readonly CONNECTING = 0;
  readyState = 1;
  readonly sent: unknown[] = [];
  closedWith: number | undefined;
  terminated = false;
  send(data: unknown, _opts?: unknown, cb?: (err?: Error) => void): void {
    this.sent.push(data);
    cb?.();
  }
  ping(): void {}
  close(code: number): void {
    this.closedWith = code;
    this.readyState = 2;
  }
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
  }
  frame(message: unknown): void {
    this.emit('message', Buffer.from(encode(message as never)), true);
  }
}

function setUp() {
  const { log, lines } = capturingLogger('debug');
  const membership = new Membership(log);
  const socket = new FakeSocket();
  const ended: string[] = [];
  const conn = new Connection('w1', '10.0.0.1', socket as unknown as WebSocket, log, {
    membership,
    welcome: { type: 'welcome', protocolVersion: PROTOCOL_VERSION, model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: 4 },
    expect: { gradientCount: 4, statsCount: 0 },
    limits: NET_DEFAULTS,
    maxPayload: 1 << 20,
    onEnded: (_c, e) => ended.push(e.kind),
  });
  return { conn, socket, membership, lines, ended };
}

const task: TaskMessage = { type: 'task', taskId: 7, kind: 'train', weightsVersion: 1, images: new Uint8Array(3072), labels: new Uint8Array([1]) };
const result = { type: 'result', taskId: 7, count: 1, lossSum: 1, correct: 0, computeMs: 1, gradients: new Uint8Array(16) };

describe('Connection', () => {
  it('goes AWAITING_HELLO → WELCOMING → READY, joining the membership on ready', () => {
    const { conn, socket, membership } = setUp();
    expect(conn.stage).toBe(Stage.AWAITING_HELLO);
    socket.frame({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'box' });
    expect(conn.stage).toBe(Stage.WELCOMING);
    expect(socket.sent).toHaveLength(1); // the welcome
    socket.frame({ type: 'ready', backend: 'wasm' });
    expect(conn.stage).toBe(Stage.READY);
    expect(membership.live()).toEqual([conn]);
  });

  it('drops a late result after an eviction by the membership quietly: no bad frame is logged', async () => {
    const { conn, socket, membership, lines, ended } = setUp();
    socket.frame({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'box' });
    socket.frame({ type: 'ready', backend: 'wasm' });
    const pending = conn.run(task).catch((e: Error) => e);
    // The scheduler gives up on the task (say, a step timeout) and evicts the worker.
    membership.leave('w1', 'evicted', 'took too long', CLOSE_CODES.evicted);
    expect(conn.stage).toBe(Stage.CLOSING);
    expect(socket.closedWith).toBe(CLOSE_CODES.evicted);
    expect(await pending).toBeInstanceOf(Error);
    socket.frame(result); // computed before the worker read our close frame
    expect(lines.filter((l) => l.event === 'frame_rejected')).toEqual([]);
    expect(lines.filter((l) => l.event === 'late_frame_dropped')).toHaveLength(1);
    expect(ended).toEqual(['evicted']);
    socket.emit('close', 4004, Buffer.from(''));
    expect(conn.stage).toBe(Stage.CLOSED);
    expect(ended).toEqual(['evicted']); // one teardown, however many ways it ends
  });

  it('ends once, as "left", when the peer closes its socket, and tells the membership', async () => {
    const { conn, socket, membership, ended, lines } = setUp();
    socket.frame({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'box' });
    socket.frame({ type: 'ready', backend: 'wasm' });
    const pending = conn.run(task).catch((e: Error) => e);
    socket.emit('close', 1006, Buffer.from(''));
    expect(await pending).toBeInstanceOf(Error);
    expect(membership.size).toBe(0);
    expect(ended).toEqual(['left']);
    expect(lines.filter((l) => l.event === 'worker_left')).toHaveLength(1);
  });

  it('evicts on a bad frame with its code, and close() is then a no-op', () => {
    const { conn, socket, ended } = setUp();
    socket.emit('message', Buffer.from([0xc1]), true);
    expect(socket.closedWith).toBe(CLOSE_CODES.badFrame);
    conn.close(CLOSE_CODES.finished, 'training finished');
    expect(socket.closedWith).toBe(CLOSE_CODES.badFrame);
    expect(ended).toEqual(['evicted']);
  });

  it('terminate() cuts the socket without a close frame', async () => {
    const { conn, socket } = setUp();
    conn.terminate('server closing');
    expect(socket.terminated).toBe(true);
    expect(socket.closedWith).toBeUndefined();
    await expect(conn.run(task)).rejects.toThrow(/closing/);
  });
});
