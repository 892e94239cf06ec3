/**
 * The coordinator's side of synchronized BatchNorm: one round per step that needs an exchange.
 * Every slice of the step sends its sums for each (layer, phase); once all `slices` have, the
 * totals (combined in the order of the slices' first samples, so the same whatever the arrival
 * order) go back to each. A round that loses a worker is aborted: every waiting slice, and every
 * later one, is answered "aborted", so no compute thread ever waits on a slice that will not come.
 *
 * Rounds are numbered process-wide (like task ids), so both transports reach the open rounds
 * through `bnRounds` without being told about the trainer. In-process, the compute threads
 * exchange on a board in shared memory instead (common/bn-board.ts): a round given one opens and
 * ends there too, and its slices never call `contribute`.
 */
import { combineSlices, momentsLength } from '../common/batch-moments.ts';
import { BnSyncAbortedError } from '../common/bn-sync-errors.ts';
import type { BnSumsMessage } from '../common/protocol.ts';
import { bytesToFloat64 } from '../common/codec.ts';
import type { BnBoardHost } from '../common/bn-board.ts';

interface Gate {
  parts: Map<number, Float64Array>;
  waiters: { resolve(t: Float64Array): void; reject(e: Error): void }[];
}

export class ExchangeRound {
  private readonly gates = new Map<string, Gate>();
  private abortReason: string | undefined;

  /**
   * `board`: the slices are compute threads of this process that exchange through shared memory
   * (common/bn-board.ts); the round opens and ends there too, and `contribute` is not used.
   */
  constructor(readonly id: number, readonly slices: number, private readonly channels: readonly number[], private readonly onEnd: (r: ExchangeRound) => void, private readonly board?: BnBoardHost) {
    board?.open(id, slices);
  }

  get aborted(): boolean {
    return this.abortReason !== undefined;
  }

  contribute(msg: BnSumsMessage): Promise<Float64Array> {
    if (this.abortReason !== undefined) return Promise.reject(new BnSyncAbortedError(this.abortReason));
    const c = this.channels[msg.layer];
    const sums = bytesToFloat64(msg.sums);
    const expected = c === undefined ? -1 : msg.phase === 'forward' ? momentsLength(c) : 2 * c;
    if (sums.length !== expected) {
      this.abort(`slice at ${msg.firstSample} sent ${sums.length} values for BatchNorm layer ${msg.layer} (${msg.phase}), expected ${expected}`);
      return Promise.reject(new BnSyncAbortedError(this.abortReason!));
    }
    const key = `${msg.layer}:${msg.phase}`;
    let gate = this.gates.get(key);
    if (!gate) this.gates.set(key, (gate = { parts: new Map(), waiters: [] }));
    if (gate.parts.has(msg.firstSample)) {
      this.abort(`slice at ${msg.firstSample} sent BatchNorm layer ${msg.layer} (${msg.phase}) twice`);
      return Promise.reject(new BnSyncAbortedError(this.abortReason!));
    }
    gate.parts.set(msg.firstSample, sums.slice());
    const answer = new Promise<Float64Array>((resolve, reject) => gate.waiters.push({ resolve, reject }));
    if (gate.parts.size === this.slices) {
      const totals = combineSlices(msg.phase, [...gate.parts.entries()].map(([firstSample, sums]) => ({ firstSample, sums })), c);
      for (const w of gate.waiters) w.resolve(totals);
      this.gates.delete(key);
    }
    return answer;
  }

  /** Answers every waiting and later contribution with "aborted". */
  abort(reason: string): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.board?.end(this.id);
    // Made only for slices still waiting: a round closed at the end of every step has none, and an
    // error's stack trace was a measurable part of the owning thread's work per step.
    let err: BnSyncAbortedError | undefined;
    for (const g of this.gates.values()) for (const w of g.waiters) w.reject((err ??= new BnSyncAbortedError(`BatchNorm round ${this.id} abandoned: ${reason}`)));
    this.gates.clear();
    this.onEnd(this);
  }

  /** The step is over: forgets the round (late contributions are answered "aborted"). */
  close(): void {
    this.abort('the step is over');
  }
}

export class ExchangeRounds {
  private next = 1;
  private readonly open = new Map<number, ExchangeRound>();

  start(slices: number, channels: readonly number[], board?: BnBoardHost): ExchangeRound {
    const round = new ExchangeRound(this.next++, slices, channels, (r) => this.open.delete(r.id), board);
    this.open.set(round.id, round);
    return round;
  }

  /** Where both transports hand in a slice's sums; resolves with the totals, or rejects BN_SYNC_ABORTED. */
  contribute(msg: BnSumsMessage): Promise<Float64Array> {
    const round = this.open.get(msg.round);
    if (!round) return Promise.reject(new BnSyncAbortedError(`BatchNorm round ${msg.round} is not open (it ended or was abandoned).`));
    return round.contribute(msg);
  }

  get openCount(): number {
    return this.open.size;
  }
}

/** This process's rounds. */
export const bnRounds = new ExchangeRounds();
