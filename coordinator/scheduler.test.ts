import { afterEach, describe, expect, it, vi } from 'vitest';
import { NoWorkersError, ResultRejectedError, roundTripParts, runTasks, TaskFailedError, TimeoutError, withTimeout, WORKER_EVICTED, type TaskSpec, type WeightsSource } from './scheduler.ts';
import { Membership, type WorkerHandle } from './membership.ts';
import { silentLogger } from '../common/logger.ts';
import { CLOSE_CODES, type ResultMessage, type TaskMessage } from '../common/protocol.ts';
import { gradientsAgree } from './result-check.ts';
import { BN_SYNC_ABORTED, BnSyncAbortedError } from '../common/bn-sync-errors.ts';

type Behaviour = (task: TaskMessage) => Promise<ResultMessage>;

/** Answers each task with lossSum = its first label, so results can be matched to tasks. */
function answer(task: TaskMessage, delayMs = 0): Promise<ResultMessage> {
  const r: ResultMessage = { type: 'result', taskId: task.taskId, count: task.labels.length, lossSum: task.labels[0], correct: 0, computeMs: 1 };
  return new Promise((resolve) => setTimeout(() => resolve(r), delayMs));
}

class FakeWorker implements WorkerHandle {
  readonly name: string;
  readonly backend = 'fake';
  weightsVersion = -1;
  inSharedMemory?: (task: TaskMessage) => boolean;
  readonly received: TaskMessage[] = [];
  readonly closed: { code: number; reason: string }[] = [];

  constructor(readonly id: string, private readonly behaviour: Behaviour = (t) => answer(t)) {
    this.name = id;
  }

  run(task: TaskMessage): Promise<ResultMessage> {
    this.received.push(task);
    return this.behaviour(task);
  }

  close(code: number, reason: string): void {
    this.closed.push({ code, reason });
  }
}

/** Task i carries label i, so the result for task i has lossSum i. */
function tasks(n: number): TaskSpec[] {
  return Array.from({ length: n }, (_, i) => ({ kind: 'train', images: new Uint8Array(3072), labels: new Uint8Array([i]) }));
}

const weights: WeightsSource = { version: 1, bytes: new Uint8Array(16) };
const never = () => new Promise<ResultMessage>(() => {});

function membershipOf(...workers: FakeWorker[]): Membership {
  const m = new Membership(silentLogger());
  for (const w of workers) m.join(w);
  return m;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('runTasks', () => {
  it('returns one result per task, in task order, however the answers arrive', async () => {
    // Later tasks answer sooner, so completion order is the reverse of task order.
    let delay = 40;
    const slowThenFast: Behaviour = (t) => answer(t, (delay = Math.max(0, delay - 10)));
    const m = membershipOf(new FakeWorker('a', slowThenFast), new FakeWorker('b', slowThenFast), new FakeWorker('c', slowThenFast));
    const { results } = await runTasks(tasks(7), weights, m, { stepTimeoutMs: 5000, log: silentLogger() });
    expect(results.map((r) => r.lossSum)).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('spreads the tasks over all live workers', async () => {
    const workers = [new FakeWorker('a', (t) => answer(t, 5)), new FakeWorker('b', (t) => answer(t, 5))];
    await runTasks(tasks(4), weights, membershipOf(...workers), { stepTimeoutMs: 5000, log: silentLogger() });
    expect(workers.map((w) => w.received.length)).toEqual([2, 2]);
  });

  it('sends the weights only to workers that do not hold the current version', async () => {
    const a = new FakeWorker('a');
    const b = new FakeWorker('b');
    b.weightsVersion = 1;
    const m = membershipOf(a, b);
    await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() });
    expect(a.received[0].weights).toBe(weights.bytes);
    expect(b.received[0].weights).toBeUndefined();

    // Second call, same version: both now hold it, so nobody gets weights.
    await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() });
    expect(a.received[1].weights).toBeUndefined();
    expect(b.received[1].weights).toBeUndefined();

    // Third call, new version: everybody gets the new bytes, tagged with the new version.
    const next: WeightsSource = { version: 2, bytes: new Uint8Array(16).fill(1) };
    await runTasks(tasks(2), next, m, { stepTimeoutMs: 5000, log: silentLogger() });
    for (const w of [a, b]) {
      expect(w.received[2].weights).toBe(next.bytes);
      expect(w.received[2].weightsVersion).toBe(2);
    }
  });

  it('sends the weights once to a worker that runs several tasks in one call', async () => {
    const a = new FakeWorker('a');
    await runTasks(tasks(3), weights, membershipOf(a), { stepTimeoutMs: 5000, log: silentLogger() });
    expect(a.received.map((t) => t.weights !== undefined)).toEqual([true, false, false]);
  });

  it('gives each dispatched task a distinct id', async () => {
    const a = new FakeWorker('a');
    await runTasks(tasks(4), weights, membershipOf(a), { stepTimeoutMs: 5000, log: silentLogger() });
    expect(new Set(a.received.map((t) => t.taskId)).size).toBe(4);
  });

  it('removes a worker whose run rejects and recomputes its task on another worker', async () => {
    const failing = new FakeWorker('bad', () => Promise.reject(new Error('socket closed')));
    const good = new FakeWorker('good', (t) => answer(t, 5));
    const m = membershipOf(failing, good);
    const { results, stats } = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() });
    expect(results.map((r) => r.lossSum)).toEqual([0, 1]);
    expect(m.live().map((w) => w.id)).toEqual(['good']);
    expect(failing.received.length).toBe(1);
    expect(good.received.length).toBe(2);
    expect(stats.retries).toBe(1);
    // Left, not evicted: it is closed with the bad-frame code and the error's message.
    expect(failing.closed).toEqual([{ code: CLOSE_CODES.evicted, reason: 'socket closed' }]);
  });

  it('evicts a worker that never answers within stepTimeoutMs, and the step still completes', async () => {
    const silent = new FakeWorker('silent', never);
    const good = new FakeWorker('good', (t) => answer(t, 1));
    const m = membershipOf(silent, good);
    const started = Date.now();
    const { results } = await runTasks(tasks(3), weights, m, { stepTimeoutMs: 50, log: silentLogger() });
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(results.map((r) => r.lossSum)).toEqual([0, 1, 2]);
    expect(m.live().map((w) => w.id)).toEqual(['good']);
    expect(silent.closed.map((c) => c.code)).toEqual([CLOSE_CODES.evicted]);
    expect(silent.closed[0].reason).toMatch(/took longer than 50 ms/);
  });

  it('waits with no workers, and completes once one joins', async () => {
    const m = new Membership(silentLogger());
    const warnings: unknown[] = [];
    const log = silentLogger();
    log.warn = ((obj: unknown) => void warnings.push(obj)) as typeof log.warn;
    let settled = false;
    const run = runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log }).then((r) => ((settled = true), r));
    await new Promise((r) => setTimeout(r, 30));
    expect(settled).toBe(false);
    m.join(new FakeWorker('late'));
    const { results } = await run;
    expect(results.map((r) => r.lossSum)).toEqual([0, 1]);
    // Says so once, not on every wake-up.
    expect(warnings).toEqual([expect.objectContaining({ event: 'waiting_for_workers', pendingTasks: 2 })]);
  });

  it('rejects with the abort reason when its signal aborts mid-step', async () => {
    const m = membershipOf(new FakeWorker('slow', never));
    const controller = new AbortController();
    const run = runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), signal: controller.signal });
    setTimeout(() => controller.abort(new Error('stopping')), 10);
    await expect(run).rejects.toThrow('stopping');
  });

  it('fails the step with BN_SYNC_ABORTED when a slice reports its round abandoned and the step was not, instead of waiting forever', async () => {
    const m = membershipOf(new FakeWorker('a', () => Promise.reject(new BnSyncAbortedError('round 3 refused a slice\'s sums'))), new FakeWorker('b', never));
    const err = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe(BN_SYNC_ABORTED);
    // Nobody is blamed for it.
    expect(m.size).toBe(2);
  });

  it('blames nobody for what an abandoned step\'s tasks report after it was abandoned', async () => {
    let fail: (e: Error) => void = () => {};
    const late = new FakeWorker('late', () => new Promise<ResultMessage>((_, reject) => (fail = reject)));
    const m = membershipOf(late);
    const controller = new AbortController();
    const run = runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), signal: controller.signal });
    await new Promise((r) => setTimeout(r, 5));
    controller.abort(new Error('round abandoned'));
    await expect(run).rejects.toThrow('round abandoned');
    fail(new Error('slot 0 was reassigned while thread 1 computed it'));
    await new Promise((r) => setTimeout(r, 5));
    expect(m.size).toBe(1);
    expect(late.closed).toEqual([]);
  });

  it('rejects at once when its signal is already aborted', async () => {
    const a = new FakeWorker('a');
    const controller = new AbortController();
    controller.abort(new Error('already stopped'));
    await expect(runTasks(tasks(1), weights, membershipOf(a), { stepTimeoutMs: 5000, log: silentLogger(), signal: controller.signal })).rejects.toThrow('already stopped');
    expect(a.received.length).toBe(0);
  });

  it('stops listening to membership changes when it returns', async () => {
    const m = membershipOf(new FakeWorker('a'));
    let listeners = 0;
    const onChange = m.onChange.bind(m);
    m.onChange = (l) => {
      listeners++;
      const off = onChange(l);
      return () => {
        listeners--;
        off();
      };
    };
    await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() });
    expect(listeners).toBe(0);
  });

  it('counts the bytes it sends, weights included only where sent', async () => {
    const a = new FakeWorker('a');
    const { stats } = await runTasks(tasks(2), weights, membershipOf(a), { stepTimeoutMs: 5000, log: silentLogger() });
    // Task 1: 16 weight bytes + 3072 pixels + 1 label + 64 overhead; task 2: the same without weights.
    expect(stats.bytesSent).toBe(16 + 3072 + 1 + 64 + (3072 + 1 + 64));
  });

  it('counts no bytes for a task that reaches its worker through shared memory', async () => {
    const a = new FakeWorker('a');
    const viaMemory = new Set<number>();
    a.inSharedMemory = (t) => viaMemory.has(t.labels[0]);
    viaMemory.add(0);
    const { stats } = await runTasks(tasks(2), weights, membershipOf(a), { stepTimeoutMs: 5000, log: silentLogger() });
    // Task 0 (weights and all) went through shared memory; task 1 was sent, without weights.
    expect(stats.bytesSent).toBe(3072 + 1 + 64);
    expect(stats.perWorker.map((w) => w.bytesOut).sort((x, y) => x - y)).toEqual([0, 3072 + 1 + 64]);
  });

  it('times the round trip of the result the step waited for, with that worker\'s own times', async () => {
    // b answers last, after ~60 ms, reporting 25 ms of its own of which 20 computing.
    const timed = (delayMs: number, computeMs: number, workerMs: number): Behaviour => (t) => answer(t, delayMs).then((r) => ({ ...r, computeMs, workerMs }));
    const m = membershipOf(new FakeWorker('a', timed(5, 2, 3)), new FakeWorker('b', timed(60, 20, 25)));
    const { stats } = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() });
    expect(stats.last).toMatchObject({ computeMs: 20, workerMs: 25 });
    expect(stats.last!.roundTripMs).toBeGreaterThanOrEqual(55);
    const parts = roundTripParts(stats.last)!;
    expect(parts.workerOverheadMs).toBe(5);
    expect(parts.transferMs).toBeCloseTo(stats.last!.roundTripMs - 25, 9);
  });
});

describe('roundTripParts', () => {
  it('splits a round trip into the frames\' time and the worker\'s time outside compute', () => {
    expect(roundTripParts({ roundTripMs: 10, computeMs: 6, workerMs: 7.5 })).toEqual({ transferMs: 2.5, workerOverheadMs: 1.5 });
  });

  it('has nothing to split where the worker reported no time of its own (in-process)', () => {
    expect(roundTripParts({ roundTripMs: 10, computeMs: 6 })).toBeUndefined();
    expect(roundTripParts(undefined)).toBeUndefined();
  });

  it('never gives a negative part, whatever a peer reports', () => {
    // A worker claiming more time than the round trip, or less than its compute.
    expect(roundTripParts({ roundTripMs: 10, computeMs: 6, workerMs: 50 })).toEqual({ transferMs: 0, workerOverheadMs: 4 });
    expect(roundTripParts({ roundTripMs: 10, computeMs: 6, workerMs: 2 })).toEqual({ transferMs: 8, workerOverheadMs: 0 });
  });
});

describe('withTimeout', () => {
  it('rejects with a TimeoutError naming what took too long', async () => {
    vi.useFakeTimers();
    const p = withTimeout(new Promise(() => {}), 1000, 'the thing');
    const assertion = expect(p).rejects.toThrow(new TimeoutError('the thing took longer than 1000 ms'));
    await vi.advanceTimersByTimeAsync(1000);
    await assertion;
    await p.catch((e) => {
      expect(e).toBeInstanceOf(TimeoutError);
      expect(e.code).toBe('DTRAIN_ERR_STEP_TIMEOUT');
    });
  });

  it('does not reject before the time is up', async () => {
    vi.useFakeTimers();
    let rejected = false;
    withTimeout(new Promise(() => {}), 1000, 'x').catch(() => (rejected = true));
    await vi.advanceTimersByTimeAsync(999);
    expect(rejected).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(rejected).toBe(true);
  });

  it('passes the value through and clears its timer when the promise wins', async () => {
    vi.useFakeTimers();
    await expect(withTimeout(Promise.resolve(42), 1000, 'x')).resolves.toBe(42);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('passes a rejection through and clears its timer', async () => {
    vi.useFakeTimers();
    await expect(withTimeout(Promise.reject(new Error('boom')), 1000, 'x')).rejects.toThrow('boom');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('clears its timer after timing out', async () => {
    vi.useFakeTimers();
    const p = withTimeout(new Promise(() => {}), 10, 'x').catch(() => {});
    await vi.advanceTimersByTimeAsync(10);
    await p;
    expect(vi.getTimerCount()).toBe(0);
  });
});

describe('runTasks when failures pile up', () => {
  const failing: Behaviour = () => Promise.reject(new Error('out of memory'));

  it('fails the step with a TaskFailedError once a task has failed on maxAttempts workers', async () => {
    const m = membershipOf(new FakeWorker('a', failing), new FakeWorker('b', failing), new FakeWorker('c', failing), new FakeWorker('d'));
    const err = await runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), maxAttempts: 3 }).catch((e) => e);
    expect(err).toBeInstanceOf(TaskFailedError);
    expect(err.message).toMatch(/failed on 3 worker addresses.*out of memory/);
  });

  it('counts one address once: a bad worker rejoining under new ids cannot use up a task\'s attempts', async () => {
    // The bad origin fails 3 times (more than maxAttempts = 2) before the honest worker frees up.
    const m = membershipOf(new FakeWorker('honest', (t) => answer(t, 30)));
    let rejoins = 0;
    const bad = (): FakeWorker => Object.assign(new FakeWorker(`bad-${++rejoins}`, () => {
      if (rejoins < 3) setTimeout(() => m.join(bad()), 1);
      return Promise.reject(new Error('nonsense'));
    }), { origin: '10.0.0.66' });
    m.join(bad());
    const { results } = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), maxAttempts: 2 });
    expect(rejoins).toBe(3);
    expect(results.map((r) => r.lossSum)).toEqual([0, 1]);
  });

  it('does not count a worker evicted for misbehaving against its task, however often', async () => {
    const m = membershipOf();
    let n = 0;
    const bad = (): FakeWorker => new FakeWorker(`bad-${++n}`, () => {
      if (n < 30) setTimeout(() => m.join(bad()), 1);
      else setTimeout(() => m.join(new FakeWorker('honest')), 1);
      return Promise.reject(Object.assign(new Error('bad frame'), { code: WORKER_EVICTED }));
    });
    m.join(bad());
    const { results, stats } = await runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), maxAttempts: 2 });
    expect(results[0].lossSum).toBe(0);
    expect(stats.retries).toBe(30);
  });

  it('still fails a task that one address fails 4 × maxAttempts times', async () => {
    const m = membershipOf();
    let n = 0;
    const bad = (): FakeWorker => Object.assign(new FakeWorker(`bad-${++n}`, () => {
      setTimeout(() => m.join(bad()), 1);
      return Promise.reject(new Error('nonsense'));
    }), { origin: '10.0.0.66' });
    m.join(bad());
    const err = await runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), maxAttempts: 2 }).catch((e) => e);
    expect(err).toBeInstanceOf(TaskFailedError);
    expect(err.message).toMatch(/failed on 1 worker addresses \(8 attempts\)/);
  });

  it('says so instead of waiting forever when no worker can join and all have failed', async () => {
    const m = membershipOf(new FakeWorker('a', failing), new FakeWorker('b', failing));
    m.canGrow = false;
    const err = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log: silentLogger() }).catch((e) => e);
    expect(err).toBeInstanceOf(NoWorkersError);
  });
});

describe('runTasks with result checks', () => {
  it('evicts the worker of a result its check rejects, logs result_rejected, and recomputes the task elsewhere', async () => {
    const bad = new FakeWorker('bad', (t) => answer(t));
    const good = new FakeWorker('good', (t) => answer(t, 20));
    const m = membershipOf(bad, good);
    const lines: Record<string, unknown>[] = [];
    const log = silentLogger();
    log.warn = ((o: Record<string, unknown>) => lines.push(o)) as typeof log.warn;
    const { results } = await runTasks(tasks(2), weights, m, {
      stepTimeoutMs: 5000, log,
      check: (_i, r) => (r.taskId === bad.received[0]?.taskId ? { reason: 'too big', fields: { norm: 1e21, bound: 50 } } : undefined),
    });
    expect(results.map((r) => r.lossSum)).toEqual([0, 1]);
    expect(bad.closed).toEqual([{ code: CLOSE_CODES.evicted, reason: 'result rejected: too big' }]);
    expect(m.live().map((w) => w.id)).toEqual(['good']);
    const line = lines.find((l) => l.event === 'result_rejected');
    expect(line).toMatchObject({ workerId: 'bad', norm: 1e21, bound: 50 });
  });

  it('sends back what the review of the whole step rejects, and reviews again', async () => {
    const bad = new FakeWorker('bad', (t) => answer(t));
    const good = new FakeWorker('good', (t) => answer(t, 5));
    const m = membershipOf(bad, good);
    let reviews = 0;
    const { results } = await runTasks(tasks(2), weights, m, {
      stepTimeoutMs: 5000, log: silentLogger(),
      review: (rs) => {
        reviews++;
        const i = rs.findIndex((r) => bad.received.some((t) => t.taskId === r.taskId));
        return i >= 0 ? [{ index: i, rejection: { reason: 'outlier', fields: {} } }] : [];
      },
    });
    expect(reviews).toBe(2);
    expect(results.map((r) => r.lossSum)).toEqual([0, 1]);
    expect(good.received).toHaveLength(2);
    expect(bad.closed[0]?.code).toBe(CLOSE_CODES.evicted);
  });
});

describe('runTasks with result checks on compute threads (keepOnRejection)', () => {
  class KeptWorker extends FakeWorker {
    readonly keepOnRejection = true;
  }

  it('recomputes a thread\'s rejected result without evicting the thread', async () => {
    const thread = new KeptWorker('thread-1');
    const m = membershipOf(thread);
    let rejected = 0;
    const { results } = await runTasks(tasks(1), weights, m, {
      stepTimeoutMs: 5000, log: silentLogger(),
      // The first answer is bad (a transient fault), the recomputation good.
      check: () => (rejected++ === 0 ? { reason: 'non-finite', fields: {} } : undefined),
    });
    expect(results).toHaveLength(1);
    expect(thread.received).toHaveLength(2);
    expect(thread.closed).toEqual([]);
    expect(m.live().map((w) => w.id)).toEqual(['thread-1']);
  });

  it('fails with DTRAIN_ERR_RESULT_REJECTED when the same thread\'s recomputation is rejected again', async () => {
    const thread = new KeptWorker('thread-1');
    const m = membershipOf(thread);
    const err = await runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log: silentLogger(), check: () => ({ reason: 'non-finite', fields: {} }) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultRejectedError);
    expect((err as ResultRejectedError).code).toBe('DTRAIN_ERR_RESULT_REJECTED');
    expect((err as Error).message).toMatch(/thread-1 computed a train task of 1 samples twice.*non-finite/);
    expect(thread.received).toHaveLength(2);
    expect(thread.closed).toEqual([]);
  });
});

describe('runTasks with a second opinion on outliers (agree)', () => {
  class KeptWorker extends FakeWorker {
    readonly keepOnRejection = true;
  }
  /** A result whose gradient is [value, value]: honest workers give 1 for most tasks and 100 (an honest outlier) for task 1. */
  const withGradient = (task: TaskMessage, value: number, delayMs = 0): Promise<ResultMessage> =>
    answer(task, delayMs).then((r) => ({ ...r, gradients: new Uint8Array(new Float32Array([value, value]).buffer) }));
  const honest = (delayMs = 0): Behaviour => (t) => withGradient(t, t.labels[0] === 1 ? 100 : 1, delayMs);
  const value = (r: ResultMessage) => new Float32Array(r.gradients!.buffer.slice(r.gradients!.byteOffset, r.gradients!.byteOffset + 4))[0];
  /** The screen in miniature: a gradient value over 10 is an outlier (norm-only). */
  const screen = {
    check: (_i: number, r: ResultMessage) => (value(r) > 10 ? { reason: `norm ${value(r)} over 10`, fields: { norm: value(r), bound: 10 }, outlier: true } : undefined),
    agree: (_i: number, a: ResultMessage, b: ResultMessage, tol: number) => gradientsAgree(a, b, tol),
  };
  const logged = () => {
    const lines: Record<string, unknown>[] = [];
    const log = silentLogger();
    log.warn = ((o: Record<string, unknown>) => lines.push(o)) as typeof log.warn;
    log.info = ((o: Record<string, unknown>) => lines.push(o)) as typeof log.info;
    return { log, lines, events: (e: string) => lines.filter((l) => l.event === e) };
  };

  it('accepts an honest outlier that a different worker confirms, and evicts nobody', async () => {
    const a = new FakeWorker('a', honest());
    const b = new FakeWorker('b', honest(5));
    const m = membershipOf(a, b);
    const { log, events } = logged();
    const confirmed: number[] = [];
    const { results } = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log, ...screen, onConfirmed: (i) => confirmed.push(i) });
    expect(results.map(value)).toEqual([1, 100]);
    expect(confirmed).toEqual([1]);
    expect(events('result_outlier')).toHaveLength(1);
    expect(events('outlier_confirmed')[0]).toMatchObject({ task: 1 });
    expect(events('result_rejected')).toEqual([]);
    expect(m.live().map((w) => w.id)).toEqual(['a', 'b']);
    // Task 1 was computed by two different workers.
    const computedBy = [a, b].filter((w) => w.received.some((t) => t.labels[0] === 1)).map((w) => w.id);
    expect(computedBy).toEqual(['a', 'b']);
  });

  it('waits for a different (busy) worker rather than let the outlier\'s own worker confirm itself', async () => {
    // a answers at once and would be idle first; b is slow but must give the second opinion.
    const a = new FakeWorker('a', honest());
    const b = new FakeWorker('b', honest(30));
    const { log } = logged();
    await runTasks(tasks(2), weights, membershipOf(a, b), { stepTimeoutMs: 5000, log, ...screen });
    expect(a.received.filter((t) => t.labels[0] === 1)).toHaveLength(1);
    expect(b.received.filter((t) => t.labels[0] === 1)).toHaveLength(1);
  });

  it('evicts a worker whose outlier the recomputation contradicts (within the bound, disagreeing), logging result_rejected', async () => {
    const liar = new FakeWorker('liar', (t) => withGradient(t, 1e6));
    const good = new FakeWorker('good', honest(5));
    const m = membershipOf(liar, good);
    const { log, events } = logged();
    const { results } = await runTasks(tasks(1), weights, m, { stepTimeoutMs: 5000, log, ...screen });
    expect(results.map(value)).toEqual([1]);
    expect(events('result_rejected')[0]).toMatchObject({ workerId: 'liar', norm: 1e6, bound: 10 });
    expect(liar.closed[0]?.code).toBe(CLOSE_CODES.evicted);
    expect(m.live().map((w) => w.id)).toEqual(['good']);
  });

  it('asks a third worker when the second opinion is a different outlier: the honest outlier counts, the liar is evicted', async () => {
    // honest-1 computes task 1 first (an honest outlier, 100); the liar's recomputation (1e6) disagrees; honest-2 confirms 100.
    const first = new FakeWorker('honest-1', honest());
    const liar = new FakeWorker('liar', (t) => withGradient(t, 1e6, 10));
    const third = new FakeWorker('honest-2', honest(40));
    const m = membershipOf(first, liar, third);
    const { log, events } = logged();
    const spec = [tasks(2)[1]];
    const { results } = await runTasks(spec, weights, m, { stepTimeoutMs: 5000, log, ...screen });
    expect(results.map(value)).toEqual([100]);
    expect(events('result_rejected').map((l) => l.workerId)).toEqual(['liar']);
    expect(m.live().map((w) => w.id).sort()).toEqual(['honest-1', 'honest-2']);
  });

  it('lets the only worker confirm its outlier with an identical recomputation (a lone thread)', async () => {
    const thread = new KeptWorker('thread-1', honest());
    const { log, events } = logged();
    const { results } = await runTasks([tasks(2)[1]], weights, membershipOf(thread), { stepTimeoutMs: 5000, log, ...screen });
    expect(results.map(value)).toEqual([100]);
    expect(thread.received).toHaveLength(2);
    expect(events('outlier_confirmed')).toHaveLength(1);
    expect(thread.closed).toEqual([]);
  });

  it('stops with DTRAIN_ERR_RESULT_REJECTED when a lone thread\'s two outliers for a task differ (not reproducible)', async () => {
    let n = 0;
    const thread = new KeptWorker('thread-1', (t) => withGradient(t, 100 + n++));
    const { log } = logged();
    const err = await runTasks(tasks(1), weights, membershipOf(thread), { stepTimeoutMs: 5000, log, ...screen }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ResultRejectedError);
    expect((err as Error).message).toMatch(/both results were outliers that disagree/);
  });

  it('without agree, an outlier is rejected at once as before', async () => {
    const a = new FakeWorker('a', honest());
    const b = new FakeWorker('b', honest(5));
    const m = membershipOf(a, b);
    m.canGrow = false;
    const { log, events } = logged();
    // The honest outlier is rejected on each worker in turn, until none is left.
    const err = await runTasks(tasks(2), weights, m, { stepTimeoutMs: 5000, log, check: screen.check }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoWorkersError);
    expect(events('result_rejected')).toHaveLength(2);
    expect(a.closed[0]?.code).toBe(CLOSE_CODES.evicted);
  });
});
