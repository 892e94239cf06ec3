/**
 * A compute thread's side of a run of steps (common/step-run.ts): the thread drives up to
 * MAX_RUN_STEPS consecutive steps itself, with the run's other threads and no owning thread in
 * between. Per step it writes its own command fields (slot, count, weight copy, sample position,
 * stripe), gathers its slice of the epoch's order from the shared training set, and then:
 *   - alone (one slot): trains, reduces and applies Adam over the whole span in one pass, as a
 *     one-slot trainApply command does (from the backend where it can);
 *   - with others: trains, meets them at the barrier, reduces and applies Adam to its stripe, and
 *     meets them again, so the next step reads a whole next copy.
 * Each thread then judges the step from every slot's record (coordinator/step-judge.ts, on its own
 * copy of the screen, seeded from the owner's); all reach the same verdict from the same numbers.
 * An accepted step is committed (RUN_THREAD.committed), and the slot-0 thread moves Adam's bias
 * corrections to the next step. A rejected step, an abort, a barrier that waited too long or a
 * failure end the run: the next copies of an uncommitted step are never made current.
 */
import { CTL, F64, ROUND_PHASE, absoluteNow, publish, stripes, writeAdamScalars, writePosition, type StepMemory } from '../common/step-memory.ts';
import { RUN, type RunBoard } from '../common/step-run.ts';
import { gatherInto } from '../common/data/split.ts';
import { IMAGE_BYTES, type ImageSet } from '../common/data/types.ts';
import { judgeStep, screenWithHistory, slotSummaries } from '../coordinator/step-judge.ts';

/** What the run needs of the thread's shared-step server (worker/shared-step-server.ts). */
export interface RunHost {
  readonly mem: StepMemory;
  readonly board: RunBoard;
  readonly index: number;
  readonly trainSet: ImageSet;
  /** How long to spin at a barrier before sleeping (µs). */
  readonly spinMicros: number;
  /** A step of one slot: train, then reduce and apply Adam over the whole span (the command fields say which). */
  trainApply(): Promise<void>;
  /** Train the command's slot, taking its Σ g². */
  train(): Promise<void>;
  /** Reduce and apply Adam to the command's stripe. */
  stripe(): void;
}

/** Runs the steps the board's header describes; returns how many this thread committed. */
export async function runSteps(host: RunHost): Promise<number> {
  const { mem, board, index } = host;
  const w = board.words;
  const { ctl, f64 } = mem;
  const b = mem.threadBase(index);
  const fb = mem.f64Base(index);
  const id = ctl[b + CTL.runId];
  // A command that reaches this thread after its run ended (it was evicted, and a later run opened) runs nothing.
  if (Atomics.load(w, RUN.id) !== id || board.aborted(id)) return 0;
  const slots = w[RUN.slots];
  const slot = w[board.threadWord(index, 'slot')];
  if (Atomics.load(ctl, mem.slotOwner(slot)) !== index) return 0;
  const counts = Array.from({ length: slots }, (_, k) => ctl[CTL.slotCounts + k]);
  const first = counts.slice(0, slot).reduce((a, c) => a + c, 0);
  const count = counts[slot];
  const stripe = stripes(mem.adamSpan, slots)[slot];
  const screen = screenWithHistory(board.readHistory());
  const committedWord = board.threadWord(index, 'committed');
  const images = mem.images[slot].subarray(0, count * IMAGE_BYTES);
  const labels = mem.labels[slot].subarray(0, count);
  const adam = { learningRate: board.learningRate, beta1: f64[F64.beta1], beta2: f64[F64.beta2] };
  ctl[b + CTL.slot] = slot;
  ctl[b + CTL.count] = count;
  ctl[b + CTL.from] = stripe.from;
  ctl[b + CTL.to] = stripe.to;
  ctl[b + CTL.doStats] = slot === slots - 1 ? 1 : 0;
  ctl[b + CTL.ahead] = 0;
  ctl[b + CTL.fuseRound] = 0;
  ctl[b + CTL.bnMode] = 0;
  ctl[b + CTL.taskId] = 0;
  let committed = 0;
  for (let i = 0; i < w[RUN.steps]; i++) {
    if (board.aborted(id)) break;
    const at = w[RUN.offset] + i * w[RUN.batch] + first;
    gatherInto(host.trainSet, board.order.subarray(at, at + count), images, labels);
    ctl[b + CTL.parity] = (w[RUN.parity] + i) & 1;
    ctl[b + CTL.fromBackend] = 0;
    writePosition(ctl, b, 'command', w[RUN.position] === 1 ? { seed: w[RUN.seed] >>> 0, step: w[RUN.firstStep] + i, firstSample: first } : undefined);
    if (slots === 1) await host.trainApply();
    else if (!(await stepInRound(host, id, slots, i))) break;
    board.writeRecord(i, slot, { lossSum: f64[fb + F64.lossSum], correct: ctl[b + CTL.correct], squares: f64[fb + F64.gradSquares], computeMs: f64[fb + F64.computeMs], optimizerMs: f64[fb + F64.optimizerMs], fromBackend: ctl[b + CTL.fromBackend] === 1, endedAt: absoluteNow() });
    // With others, every slot's record is written before the second barrier: the step is judged after it.
    if (slots > 1 && !(await board.arrive(id, slots, 2 * i + 2, host.spinMicros, w[RUN.waitMs]))) break;
    if (judgeStep(screen, slotSummaries(counts.map((_c, k) => board.readRecord(i, k)), counts)) !== undefined) break;
    committed = i + 1;
    Atomics.store(w, committedWord, committed);
    // The next step's stripes read these only after its first barrier, which this thread reaches after writing them.
    if (slot === 0) writeAdamScalars(f64, adam, w[RUN.adamStep] + i + 1);
  }
  return committed;
}

/** One step with the run's other threads: train, barrier, stripe. False when the run ended at the barrier. */
async function stepInRound(host: RunHost, id: number, slots: number, i: number): Promise<boolean> {
  const { mem, board, index } = host;
  const fb = mem.f64Base(index);
  const phase = mem.threadBase(index) + CTL.roundPhase;
  await host.train();
  // Said before arriving, so an owner that evicts this thread waits until it has left or written its stripe (SharedStep.quiesce).
  Atomics.store(mem.ctl, phase, ROUND_PHASE.mayWrite);
  try {
    if (!(await board.arrive(id, slots, 2 * i + 1, host.spinMicros, board.words[RUN.waitMs]))) return false;
    const started = performance.now();
    host.stripe();
    mem.f64[fb + F64.optimizerMs] = performance.now() - started;
    return true;
  } finally {
    publish(mem.ctl, phase, ROUND_PHASE.clear);
  }
}
