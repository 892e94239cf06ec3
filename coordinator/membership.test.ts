import { capturingLogger } from '../test/capture-logger.ts';
import { describe, expect, it } from 'vitest';
import { Membership, type WorkerHandle } from './membership.ts';
import { silentLogger } from '../common/logger.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';

class FakeWorker implements WorkerHandle {
  readonly backend = 'fake';
  weightsVersion = 0;
  readonly closed: { code: number; reason: string }[] = [];
  constructor(readonly id: string, readonly name = `host-${id}`) {}
  run(_task: TaskMessage): Promise<ResultMessage> {
    return new Promise(() => {});
  }
  close(code: number, reason: string): void {
    this.closed.push({ code, reason });
  }
}


describe('Membership', () => {
  it('bumps the generation on every join and leave', () => {
    const m = new Membership(silentLogger());
    expect(m.generation).toBe(0);
    m.join(new FakeWorker('a'));
    m.join(new FakeWorker('b'));
    expect(m.generation).toBe(2);
    m.leave('a', 'left', 'bye');
    expect(m.generation).toBe(3);
  });

  it('lists live workers in join order and counts them', () => {
    const m = new Membership(silentLogger());
    m.join(new FakeWorker('a'));
    m.join(new FakeWorker('b'));
    m.join(new FakeWorker('c'));
    m.leave('b', 'left', 'bye');
    expect(m.live().map((w) => w.id)).toEqual(['a', 'c']);
    expect(m.size).toBe(2);
  });

  it('treats a second leave of the same worker as a no-op', () => {
    const { log, lines } = capturingLogger();
    const m = new Membership(log);
    const a = new FakeWorker('a');
    m.join(a);
    m.leave('a', 'evicted', 'too slow', 4004);
    m.leave('a', 'left', 'socket closed', 1006);
    expect(m.generation).toBe(2);
    expect(a.closed.length).toBe(1);
    expect(lines.map((l) => l.event)).toEqual(['worker_joined', 'worker_evicted']);
  });

  it('holds leave lines and events back while held, changes the live set at once, and tells them in order on release', async () => {
    const { log, lines } = capturingLogger();
    const m = new Membership(log);
    const events: string[] = [];
    m.onEvent((e) => events.push(`${e.kind}:${e.workerId}`));
    const a = new FakeWorker('a');
    m.join(a);
    m.join(new FakeWorker('b'));
    const release = m.holdNews();
    // A second hold inside the first changes nothing: the outer release tells all.
    m.holdNews()();
    m.leave('a', 'evicted', 'too slow', 4004);
    m.leave('b', 'left', 'bye');
    expect(m.live()).toEqual([]);
    expect(a.closed.length).toBe(1);
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => l.event)).toEqual(['worker_joined', 'worker_joined']);
    expect(events).toEqual(['joined:a', 'joined:b']);
    release();
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.event, l.workerId, l.workers])).toEqual([['worker_joined', 'a', 1], ['worker_joined', 'b', 2], ['worker_evicted', 'a', 1], ['worker_left', 'b', 0]]);
    expect(events).toEqual(['joined:a', 'joined:b', 'evicted:a', 'left:b']);
    // Released: the next leave is told at once.
    m.join(new FakeWorker('c'));
    m.leave('c', 'left', 'bye');
    expect(events.at(-1)).toBe('left:c');
  });

  it('ignores a leave for a worker it never had', () => {
    const m = new Membership(silentLogger());
    m.leave('ghost', 'left', 'bye');
    expect(m.generation).toBe(0);
  });

  it('logs worker_joined with the worker and the new size', () => {
    const { log, lines } = capturingLogger();
    const m = new Membership(log);
    m.join(new FakeWorker('w-1', 'box'));
    expect(lines).toEqual([expect.objectContaining({ event: 'worker_joined', workerId: 'w-1', workerName: 'box', backend: 'fake', workers: 1, generation: 1 })]);
  });

  it('logs worker_left for a worker that left, and worker_evicted for one that was evicted', () => {
    const { log, lines } = capturingLogger();
    const m = new Membership(log);
    m.join(new FakeWorker('a'));
    m.join(new FakeWorker('b'));
    m.leave('a', 'left', 'socket closed');
    m.leave('b', 'evicted', 'step timeout');
    expect(lines.map((l) => l.event)).toEqual(['worker_joined', 'worker_joined', 'worker_left', 'worker_evicted']);
    expect(lines[2]).toMatchObject({ workerId: 'a', reason: 'socket closed', workers: 1, generation: 3 });
    expect(lines[3]).toMatchObject({ workerId: 'b', reason: 'step timeout', workers: 0, generation: 4 });
  });

  it('names a worker by id and, where it differs, by the name its operator gave it', () => {
    const { log, lines } = capturingLogger();
    const m = new Membership(log);
    m.join(new FakeWorker('w1', 'gpu-node-2'));
    m.join(new FakeWorker('w2', 'w2'));
    m.leave('w1', 'left', 'socket closed');
    expect(lines.map((l) => l.msg)).toEqual(['worker w1 (gpu-node-2) joined', 'worker w2 joined', 'worker w1 (gpu-node-2) left: socket closed']);
  });

  it('logs a leave at warn, and one we ended ourselves (training finished) at info', () => {
    const { log, lines } = capturingLogger();
    const m = new Membership(log);
    m.join(new FakeWorker('a'));
    m.join(new FakeWorker('b'));
    m.join(new FakeWorker('c'));
    m.leave('a', 'left', 'socket closed');
    m.leave('b', 'left', 'training finished', undefined, true);
    m.leave('c', 'evicted', 'bad frame', undefined, true);
    const leaves = lines.filter((l) => l.event !== 'worker_joined');
    expect(leaves.map((l) => [l.workerId, l.level])).toEqual([['a', 40], ['b', 30], ['c', 40]]);
  });

  it('closes the worker with the given code and reason when a close code is given', () => {
    const m = new Membership(silentLogger());
    const a = new FakeWorker('a');
    m.join(a);
    m.leave('a', 'evicted', 'step timeout', 4004);
    expect(a.closed).toEqual([{ code: 4004, reason: 'step timeout' }]);
  });

  it('does not close the worker when no close code is given', () => {
    const m = new Membership(silentLogger());
    const a = new FakeWorker('a');
    m.join(a);
    m.leave('a', 'left', 'socket already closed');
    expect(a.closed).toEqual([]);
  });

  it('resolves changed() on the next join', async () => {
    const m = new Membership(silentLogger());
    let resolved = false;
    const changed = m.changed().then(() => (resolved = true));
    await Promise.resolve();
    expect(resolved).toBe(false);
    m.join(new FakeWorker('a'));
    await changed;
    expect(resolved).toBe(true);
  });

  it('resolves changed() on a leave', async () => {
    const m = new Membership(silentLogger());
    m.join(new FakeWorker('a'));
    const changed = m.changed();
    m.leave('a', 'left', 'bye');
    await expect(changed).resolves.toBeUndefined();
  });

  it('resolves changed() when its signal aborts, with no join or leave', async () => {
    const m = new Membership(silentLogger());
    const controller = new AbortController();
    const changed = m.changed(controller.signal);
    controller.abort();
    await expect(changed).resolves.toBeUndefined();
  });

  it('stops calling a listener after it unsubscribes', () => {
    const m = new Membership(silentLogger());
    let calls = 0;
    const off = m.onChange(() => calls++);
    m.join(new FakeWorker('a'));
    off();
    m.join(new FakeWorker('b'));
    expect(calls).toBe(1);
  });

  it('closes every worker and empties itself on closeAll', () => {
    const m = new Membership(silentLogger());
    const a = new FakeWorker('a');
    const b = new FakeWorker('b');
    m.join(a);
    m.join(b);
    m.closeAll(4010, 'finished');
    expect(a.closed).toEqual([{ code: 4010, reason: 'finished' }]);
    expect(b.closed).toEqual([{ code: 4010, reason: 'finished' }]);
    expect(m.size).toBe(0);
  });
});
