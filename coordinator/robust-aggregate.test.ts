import { describe, expect, it } from 'vitest';
import { robustGradient, trimCount } from './robust-aggregate.ts';
import { floatsToBytes } from '../common/codec.ts';
import type { ResultMessage } from '../common/protocol.ts';

function result(count: number, gradientSum: number[]): ResultMessage {
  return { type: 'result', taskId: 1, count, lossSum: 0, correct: 0, computeMs: 0, gradients: floatsToBytes(new Float32Array(gradientSum)) };
}

describe('robustGradient', () => {
  it('median: per coordinate, the middle of the slice means; one wild slice of three changes nothing', () => {
    // Slice means: [1, 2], [2, 4] (sum [4, 8] / 2), [1e21, -1e21]. Medians: [2, 2].
    const g = robustGradient([result(1, [1, 2]), result(2, [4, 8]), result(1, [1e21, -1e21])], 2, 'median');
    expect(Array.from(g)).toEqual([2, 2]);
  });

  it('median of an even count is the mean of the two middle votes', () => {
    // Votes for the one coordinate: 1, 2, 4, 100 -> (2 + 4) / 2 = 3.
    const g = robustGradient([result(1, [1]), result(1, [2]), result(1, [4]), result(1, [100])], 1, 'median');
    expect(Array.from(g)).toEqual([3]);
  });

  it('trimmed-mean: drops the t largest and t smallest votes and averages the rest', () => {
    // K = 4, t = 1: votes 1, 2, 4, 100 -> (2 + 4) / 2 = 3; votes -50, 0, 0, 6 -> 0.
    const g = robustGradient([result(1, [1, -50]), result(1, [2, 0]), result(1, [4, 0]), result(1, [100, 6])], 2, 'trimmed-mean');
    expect(Array.from(g)).toEqual([3, 0]);
  });

  it('trims nothing below 3 slices, at least one from 3, and K/4 from 8', () => {
    expect([1, 2, 3, 4, 7, 8, 12].map(trimCount)).toEqual([0, 0, 1, 1, 1, 2, 3]);
  });
});
