import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Heartbeat, type Pingable } from './heartbeat.ts';

const INTERVAL = 1000;

/** A peer that counts pings and answers them only while `answering` is set. */
class FakePeer implements Pingable {
  pings = 0;
  answering = true;
  readonly terminations: string[] = [];
  private pong: () => void = () => {};

  ping(): void {
    this.pings++;
    // Answer on a later tick, as a real socket would.
    if (this.answering) queueMicrotask(() => this.pong());
  }

  onPong(cb: () => void): void {
    this.pong = cb;
  }

  terminate(reason: string): void {
    this.terminations.push(reason);
  }

  /** A pong arriving on its own schedule, e.g. late. */
  answer(): void {
    this.pong();
  }
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('Heartbeat', () => {
  it('pings once per interval', async () => {
    const peer = new FakePeer();
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(INTERVAL - 1);
    expect(peer.pings).toBe(0);
    await vi.advanceTimersByTimeAsync(1);
    expect(peer.pings).toBe(1);
    await vi.advanceTimersByTimeAsync(4 * INTERVAL);
    expect(peer.pings).toBe(5);
    hb.stop();
  });

  it('keeps a peer that answers alive across many intervals', async () => {
    const peer = new FakePeer();
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(50 * INTERVAL);
    expect(peer.pings).toBe(50);
    expect(peer.terminations).toEqual([]);
    hb.stop();
  });

  it('terminates a peer that stops answering within two intervals, exactly once', async () => {
    const peer = new FakePeer();
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(3 * INTERVAL);
    expect(peer.terminations).toEqual([]);

    // The peer goes quiet just after answering the ping at t = 3·INTERVAL.
    peer.answering = false;
    await vi.advanceTimersByTimeAsync(2 * INTERVAL);
    expect(peer.terminations).toEqual([`no heartbeat answer within ${INTERVAL} ms`]);

    // Nothing more after that: no second termination, no more pings.
    const pingsAtDeath = peer.pings;
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(peer.terminations.length).toBe(1);
    expect(peer.pings).toBe(pingsAtDeath);
  });

  it('terminates a peer that never answers two intervals after start', async () => {
    const peer = new FakePeer();
    peer.answering = false;
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(2 * INTERVAL - 1);
    expect(peer.terminations).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(peer.terminations.length).toBe(1);
  });

  it('forgives a late answer that arrives before the next check', async () => {
    const peer = new FakePeer();
    peer.answering = false;
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(INTERVAL); // ping 1, unanswered so far
    peer.answering = true;
    peer.answer(); // the answer arrives late, but before the next check
    await vi.advanceTimersByTimeAsync(5 * INTERVAL);
    expect(peer.terminations).toEqual([]);
    hb.stop();
  });

  it('stops pinging after stop()', async () => {
    const peer = new FakePeer();
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(2 * INTERVAL);
    hb.stop();
    const pings = peer.pings;
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(peer.pings).toBe(pings);
    expect(peer.terminations).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never terminates a silent peer once stopped', async () => {
    const peer = new FakePeer();
    peer.answering = false;
    const hb = new Heartbeat(peer, INTERVAL);
    hb.start();
    await vi.advanceTimersByTimeAsync(INTERVAL);
    hb.stop();
    await vi.advanceTimersByTimeAsync(10 * INTERVAL);
    expect(peer.terminations).toEqual([]);
  });
});
