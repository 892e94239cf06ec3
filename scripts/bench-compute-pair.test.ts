import { describe, expect, it } from 'vitest';
import { pairRounds, type Contender } from './bench-compute-pair.ts';

/** Contenders that log when they become ready and when they are told to go, each answering its own rate. */
function fakes(): { make: () => Contender; log: string[] } {
  const log: string[] = [];
  let made = 0;
  const make = (): Contender => {
    const id = made++;
    let becomeReady!: () => void;
    const ready = new Promise<void>((resolve) => (becomeReady = resolve));
    // Each becomes ready later than the one made before it.
    setTimeout(() => {
      log.push(`ready ${id}`);
      becomeReady();
    }, 5 * (id % 2) + 1);
    return {
      ready,
      async go() {
        log.push(`go ${id}`);
        return 100 + id;
      },
      stop: () => log.push(`stop ${id}`),
    };
  };
  return { make, log };
}

describe('pairRounds', () => {
  it('tells two contenders to go only once both are ready, and alternates alone and together round by round', async () => {
    const { make, log } = fakes();
    const r = await pairRounds(2, make, 1);
    // Round 0: alone (contender 0), then together (1, 2). Round 1: together (3, 4), then alone (5).
    expect(r.alone).toEqual([100, 105]);
    expect(r.together).toEqual([[101, 102], [103, 104]]);
    expect(log).toEqual(['ready 0', 'go 0', 'ready 2', 'ready 1', 'go 1', 'go 2', 'ready 4', 'ready 3', 'go 3', 'go 4', 'ready 5', 'go 5']);
  });

  it('stops both processes of a round when one fails to become ready, and fails the round', async () => {
    const stopped: number[] = [];
    let made = 0;
    const make = (): Contender => {
      const id = made++;
      // Contender 0 (alone) is fine; of the pair, contender 2 fails while 1 waits.
      const ready = id === 2 ? Promise.reject(new Error('child exited with 1 before answering')) : Promise.resolve();
      return { ready, go: async () => 1, stop: () => stopped.push(id) };
    };
    await expect(pairRounds(1, make, 1)).rejects.toThrow('child exited with 1 before answering');
    expect(stopped).toEqual([1, 2]);
  });
});
