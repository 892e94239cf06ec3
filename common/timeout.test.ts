import { describe, expect, it } from 'vitest';
import { untilAborted } from './timeout.ts';

describe('untilAborted', () => {
  it('settles as the promise does when the signal stays quiet, and leaves no listener behind', async () => {
    const controller = new AbortController();
    const listeners: string[] = [];
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((type: string, l: EventListener, o?: AddEventListenerOptions) => (listeners.push(type), add(type, l, o))) as typeof signal.addEventListener;
    signal.removeEventListener = ((type: string, l: EventListener) => (listeners.splice(listeners.indexOf(type), 1), remove(type, l))) as typeof signal.removeEventListener;
    await expect(untilAborted(Promise.resolve(7), signal)).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error('own')), signal)).rejects.toThrow('own');
    expect(listeners).toEqual([]);
  });

  it('rejects with the signal\'s reason when it aborts first, or at once when it already has', async () => {
    const controller = new AbortController();
    const pending = untilAborted(new Promise(() => {}), controller.signal);
    controller.abort(new Error('SIGTERM'));
    await expect(pending).rejects.toThrow('SIGTERM');
    await expect(untilAborted(Promise.resolve(1), controller.signal)).rejects.toThrow('SIGTERM');
  });

  it('is the promise itself without a signal', () => {
    const p = Promise.resolve(3);
    expect(untilAborted(p, undefined)).toBe(p);
  });
});
