import { describe, expect, it } from 'vitest';
import { checkEvalResult } from './eval-check.ts';
import type { ResultMessage } from '../common/protocol.ts';

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
