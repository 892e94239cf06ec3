import { describe, expect, it } from 'vitest';
import { checkEvalResult } from './eval-check.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import { silentLogger } from '../common/logger.ts';
import { syntheticData, tempDir, testConfig } from '../test/helpers.ts';
import { Membership, type WorkerHandle } from './membership.ts';
import { Trainer } from './trainer.ts';

// A task of four samples with labels 3, 1, 4, 1; an honest answer predicts 3, 1, 5, 1: three match.
const labels = Uint8Array.from([3, 1, 4, 1]);
function honest(overrides: Partial<ResultMessage> = {}): ResultMessage {
  return { type: 'result', taskId: 1, count: 4, lossSum: 2.5, correct: 3, computeMs: 1, predictions: Uint8Array.from([3, 1, 5, 1]), ...overrides };
}

describe('checkEvalResult', () => {
  it('accepts an honest result: 3 of the predictions 3, 1, 5, 1 match the labels 3, 1, 4, 1', () => {
    expect(checkEvalResult(honest(), labels)).toBeUndefined();
    expect(checkEvalResult(honest({ lossSum: 0, correct: 0, predictions: Uint8Array.from([0, 0, 0, 0]) }), labels)).toBeUndefined();
  });

  // Each bad case, and the reason it must be rejected with.
  const cases: [string, Partial<ResultMessage>, RegExp][] = [
    ['another sample count', { count: 5 }, /an evaluation result for 5 samples answers a task of 4/],
    ['a negative loss sum', { lossSum: -0.5 }, /loss sum -0.5; expected a finite number >= 0/],
    ['a NaN loss sum (a thread has no codec)', { lossSum: NaN }, /loss sum NaN; expected a finite number >= 0/],
    ['an infinite loss sum', { lossSum: Infinity }, /loss sum Infinity/],
    ['a correct count above the sample count', { correct: 5 }, /correct count 5; expected an integer from 0 to 4/],
    ['a negative correct count', { correct: -1 }, /correct count -1; expected an integer from 0 to 4/],
    ['a fractional correct count', { correct: 2.5 }, /correct count 2.5; expected an integer from 0 to 4/],
    ['no predictions', { predictions: undefined }, /an evaluation result without predictions/],
    ['predictions that are not bytes', { predictions: [3, 1, 5, 1] as unknown as Uint8Array }, /an evaluation result without predictions/],
    ['too few predictions', { predictions: Uint8Array.from([3, 1, 5]) }, /3 predictions for a task of 4 samples/],
    ['a class index of 10 or more', { predictions: Uint8Array.from([3, 1, 10, 1]) }, /prediction 2 is class 10; expected a class from 0 to 9/],
    ['a correct count its predictions do not have', { correct: 4 }, /correct count 4, but 3 of the predictions match the labels/],
  ];
  for (const [what, overrides, reason] of cases) {
    it(`rejects ${what}, saying why`, () => {
      const rejection = checkEvalResult(honest(overrides), labels);
      expect(rejection?.reason).toMatch(reason);
    });
  }
});

describe('Trainer.evaluate checks each evaluation result before combining it', () => {
  /** Answers evaluation tasks: predicts class 0 everywhere, honestly, or with `lie` applied to the result. */
  class EvalWorker implements WorkerHandle {
    readonly backend = 'fake';
    weightsVersion = -1;
    readonly closed: string[] = [];
    answered = 0;
    constructor(readonly id: string, private readonly lie?: (r: ResultMessage) => ResultMessage) {}
    get name(): string {
      return this.id;
    }
    run(task: TaskMessage): Promise<ResultMessage> {
      this.answered++;
      const count = task.labels.length;
      const honest: ResultMessage = { type: 'result', taskId: task.taskId, count, lossSum: count * 2.3, correct: task.labels.filter((l) => l === 0).length, computeMs: 0, predictions: new Uint8Array(count) };
      return new Promise((resolve) => setTimeout(() => resolve(this.lie ? this.lie(honest) : honest), this.lie ? 0 : 5));
    }
    close(_code: number, reason: string): void {
      this.closed.push(reason);
    }
  }

  it('rejects a worker that claims every sample correct, logs result_rejected with the reason, and has another worker recompute', async () => {
    const lines: Record<string, unknown>[] = [];
    const log = silentLogger();
    log.warn = ((o: Record<string, unknown>) => lines.push(o)) as typeof log.warn;
    const data = await syntheticData(64, 40);
    const config = testConfig({ model: 'mlp', evalBatchSize: 20, out: await tempDir('eval-') });
    const honestRun = new Membership(silentLogger());
    honestRun.join(new EvalWorker('good'));
    const expected = await new Trainer(config, data, honestRun, silentLogger()).evaluate(data.test);

    const membership = new Membership(silentLogger());
    const liar = new EvalWorker('liar', (r) => ({ ...r, correct: r.count }));
    const good = new EvalWorker('good');
    membership.join(liar);
    membership.join(good);
    const got = await new Trainer(config, data, membership, log).evaluate(data.test);
    expect(got).toEqual(expected);
    const rejected = lines.filter((l) => l.event === 'result_rejected');
    expect(rejected.length).toBeGreaterThanOrEqual(1);
    expect(rejected[0]).toMatchObject({ workerId: 'liar' });
    expect(rejected[0].reason).toMatch(/correct count 20, but \d+ of the predictions match the labels/);
    expect(liar.closed[0]).toMatch(/result rejected/);
  });
});
