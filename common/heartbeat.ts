/**
 * Notices a dead peer within seconds: every interval, if the peer has not answered the previous
 * ping, it is declared dead; otherwise ping again. Depends only on a three-method interface, so tests
 * need no socket (and use fake timers).
 */
export interface Pingable {
  ping(): void;
  /** Registers the callback for the peer's answer. */
  onPong(cb: () => void): void;
  terminate(reason: string): void;
}

export class Heartbeat {
  private alive = true;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly peer: Pingable, private readonly intervalMs: number) {
    peer.onPong(() => (this.alive = true));
  }

  start(): void {
    this.timer = setInterval(() => {
      if (!this.alive) {
        this.stop();
        this.peer.terminate(`no heartbeat answer within ${this.intervalMs} ms`);
        return;
      }
      this.alive = false;
      this.peer.ping();
    }, this.intervalMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
