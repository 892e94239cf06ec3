/**
 * Evaluation results are checked before they are combined. The codec checks a WebSocket result's
 * types and sizes; a compute thread's result arrives by postMessage with no codec at all. Either way,
 * a result counts only if it could be true of its task:
 *
 *  - it answers for the task's number of samples, and carries one prediction per sample;
 *  - its loss sum is finite and not negative, its correct count an integer from 0 to that number;
 *  - every predicted class is an integer from 0 to 9;
 *  - its correct count is the number of predictions that match the task's labels (the coordinator
 *    holds the labels, so a worker cannot report an accuracy its own predictions do not have).
 *
 * A rejected result is recomputed by another worker (scheduler.ts), like a rejected train result.
 */
import type { ResultMessage } from '../common/protocol.ts';
import { checkTally, type Rejection } from './result-check.ts';

/** Classes in CIFAR-10: a prediction is an index below this. */
export const CLASS_COUNT = 10;

/** Why an evaluation result for a task with these `labels` must not count, or undefined when it may. */
export function checkEvalResult(result: ResultMessage, labels: Uint8Array): Rejection | undefined {
  const count = labels.length;
  if (result.count !== count) return { reason: `an evaluation result for ${result.count} samples answers a task of ${count}`, fields: { count: String(result.count), expected: count } };
  const tally = checkTally(result, count);
  if (tally) return tally;
  const p = result.predictions;
  if (!(p instanceof Uint8Array)) return { reason: 'an evaluation result without predictions', fields: {} };
  if (p.length !== count) return { reason: `${p.length} predictions for a task of ${count} samples`, fields: { predictions: p.length, expected: count } };
  let matching = 0;
  for (let i = 0; i < count; i++) {
    if (p[i] >= CLASS_COUNT) return { reason: `prediction ${i} is class ${p[i]}; expected a class from 0 to ${CLASS_COUNT - 1}`, fields: { index: i, value: p[i] } };
    if (p[i] === labels[i]) matching++;
  }
  if (result.correct !== matching) return { reason: `correct count ${result.correct}, but ${matching} of the predictions match the labels`, fields: { correct: result.correct, matching } };
  return undefined;
}
