/** The codec's part for synchronized BatchNorm (bn_sums, bn_totals) and the sample position of tasks. */
import { describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { bytesToFloat64, decodeCoordinatorMessage, decodeWorkerMessage, encode, float64ToBytes, FRAME_ERRORS, FrameError, type ResultExpectations } from './codec.ts';
import type { BnSumsMessage, TaskMessage } from './protocol.ts';

// Two BatchNorm layers of 2 and 3 channels: forward sums are 5 and 7 values, backward 4 and 6.
const expect2: ResultExpectations = { gradientCount: 1, statsCount: 10, batchNormChannels: [2, 3] };

function sums(values: number[]): Uint8Array {
  return float64ToBytes(Float64Array.from(values));
}

const goodSums: BnSumsMessage = { type: 'bn_sums', round: 4, taskId: 9, firstSample: 8, layer: 0, phase: 'forward', sums: sums([18, 0.5, -1, 2, 3]) };

function rejection(frame: Uint8Array, decode: (f: Uint8Array) => unknown): FrameError {
  try {
    decode(frame);
  } catch (err) {
    expect(err).toBeInstanceOf(FrameError);
    return err as FrameError;
  }
  throw new Error('expected a rejection');
}

describe('bn_sums from a worker', () => {
  it('round-trips, with the float64 values intact even when msgpack leaves them unaligned', () => {
    const decoded = decodeWorkerMessage(Buffer.from(encode(goodSums)), expect2) as BnSumsMessage;
    expect({ ...decoded, sums: Array.from(bytesToFloat64(decoded.sums)) }).toEqual({ ...goodSums, sums: [18, 0.5, -1, 2, 3] });
    const backward = { ...goodSums, layer: 1, phase: 'backward' as const, sums: sums([1, 2, 3, -4, 5, 6]) };
    expect(Array.from(bytesToFloat64((decodeWorkerMessage(encode(backward), expect2) as BnSumsMessage).sums))).toEqual([1, 2, 3, -4, 5, 6]);
  });

  const cases: [string, Record<string, unknown>, string][] = [
    ['a layer the model does not have', { layer: 2 }, FRAME_ERRORS.shape],
    ['an unknown phase', { phase: 'sideways' }, FRAME_ERRORS.shape],
    ['sums of the wrong length for the layer', { sums: sums([18, 0.5, -1, 2]) }, FRAME_ERRORS.tensorLength],
    ['a NaN in the sums', { sums: sums([18, NaN, -1, 2, 3]) }, FRAME_ERRORS.nonFinite],
    ['an Infinity in the sums', { sums: sums([18, 0.5, Infinity, 2, 3]) }, FRAME_ERRORS.nonFinite],
    ['a negative squared deviation', { sums: sums([18, 0.5, -1, -2, 3]) }, FRAME_ERRORS.shape],
    ['a zero count', { sums: sums([0, 0.5, -1, 2, 3]) }, FRAME_ERRORS.shape],
    ['a fractional count', { sums: sums([1.5, 0.5, -1, 2, 3]) }, FRAME_ERRORS.shape],
    ['round 0 (no round)', { round: 0 }, FRAME_ERRORS.shape],
    ['sums that are not binary', { sums: [18, 0.5, -1, 2, 3] }, FRAME_ERRORS.shape],
  ];
  for (const [what, change, code] of cases) {
    it(`rejects ${what} with ${code}`, () => {
      expect(rejection(pack({ ...goodSums, ...change }), (f) => decodeWorkerMessage(f, expect2)).code).toBe(code);
    });
  }

  it('rejects bn_sums when the model has no BatchNorm', () => {
    expect(rejection(encode(goodSums), (f) => decodeWorkerMessage(f, { gradientCount: 1, statsCount: 0 })).code).toBe(FRAME_ERRORS.shape);
  });
});

describe('bn_totals from the coordinator', () => {
  it('round-trips totals and aborts', () => {
    const totals = decodeCoordinatorMessage(encode({ type: 'bn_totals', round: 2, layer: 1, phase: 'backward', totals: sums([1, -2]) }), 10);
    expect(totals.type === 'bn_totals' && Array.from(bytesToFloat64(totals.totals!))).toEqual([1, -2]);
    expect(decodeCoordinatorMessage(encode({ type: 'bn_totals', round: 2, layer: 1, phase: 'forward', aborted: 'worker-3 left' }), 10)).toEqual({ type: 'bn_totals', round: 2, layer: 1, phase: 'forward', aborted: 'worker-3 left' });
  });

  it('rejects non-finite totals and totals of a ragged byte count', () => {
    expect(rejection(pack({ type: 'bn_totals', round: 2, layer: 0, phase: 'forward', totals: sums([NaN]) }), (f) => decodeCoordinatorMessage(f, 10)).code).toBe(FRAME_ERRORS.nonFinite);
    expect(rejection(pack({ type: 'bn_totals', round: 2, layer: 0, phase: 'forward', totals: new Uint8Array(12) }), (f) => decodeCoordinatorMessage(f, 10)).code).toBe(FRAME_ERRORS.tensorLength);
  });
});

describe('the sample position and BatchNorm mode of a task', () => {
  const task: TaskMessage = { type: 'task', taskId: 1, kind: 'train', weightsVersion: 0, images: new Uint8Array(3072), labels: Uint8Array.from([3]) };

  it('round-trips', () => {
    const full: TaskMessage = { ...task, position: { seed: 42, step: 17, firstSample: 5 }, batchNorm: { mode: 'sync', round: 3, timeoutMs: 60_000 } };
    const decoded = decodeCoordinatorMessage(encode(full), 10) as TaskMessage;
    expect(decoded.position).toEqual(full.position);
    expect(decoded.batchNorm).toEqual(full.batchNorm);
    expect((decodeCoordinatorMessage(encode({ ...task, batchNorm: { mode: 'local' } }), 10) as TaskMessage).batchNorm).toEqual({ mode: 'local' });
  });

  const cases: [string, Record<string, unknown>][] = [
    ['a negative step', { position: { seed: 1, step: -1, firstSample: 0 } }],
    ['a seed of 2^32', { position: { seed: 2 ** 32, step: 0, firstSample: 0 } }],
    ['a position that is not a map', { position: [1, 2, 3] }],
    ['an unknown BatchNorm mode', { batchNorm: { mode: 'fast' } }],
    ['a sync timeout of 0', { batchNorm: { mode: 'sync', round: 1, timeoutMs: 0 } }],
  ];
  for (const [what, change] of cases) {
    it(`rejects ${what}`, () => {
      expect(rejection(pack({ ...task, ...change }), (f) => decodeCoordinatorMessage(f, 10)).code).toBe(FRAME_ERRORS.shape);
    });
  }
});
