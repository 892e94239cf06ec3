import { describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import {
  bytesToFloats,
  decodeCoordinatorMessage,
  decodeWorkerMessage,
  encode,
  floatsToBytes,
  FRAME_ERRORS,
  FrameError,
  type ResultExpectations,
} from './codec.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type CoordinatorMessage, type ResultMessage, type WorkerMessage } from './protocol.ts';
import { SeededRandom } from './random.ts';

const GRADIENTS = 5;
const STATS = 3;
const WEIGHTS = 7;
const expectations: ResultExpectations = { gradientCount: GRADIENTS, statsCount: STATS };

/** Floats whose bit patterns are easy to get wrong: signed zero, subnormals, extremes. */
const TRICKY = new Float32Array([-0, 1.4e-45, -3.4028234663852886e38, 1.1754943508222875e-38, 0.1]);

function floats(values: number[] | Float32Array): Uint8Array {
  return floatsToBytes(new Float32Array(values));
}

/** What a WebSocket hands over: a Node Buffer, which is what msgpackr then slices binary fields out of. */
function asReceived(frame: Uint8Array): Buffer {
  return Buffer.from(frame);
}

function bytesOf(b: Uint8Array): number[] {
  return Array.from(b);
}

/** Binary fields as plain byte lists, so a decoded Buffer compares equal to the Uint8Array that was sent. */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: Array.from(value) };
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

function result(overrides: Partial<ResultMessage> = {}): ResultMessage {
  return { type: 'result', taskId: 12, count: 4, lossSum: 9.25, correct: 3, computeMs: 17.5, gradients: floats([1, 2, 3, 4, 5]), ...overrides };
}

function expectFrameError(fn: () => unknown, code: string): FrameError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(FrameError);
  const e = caught as FrameError;
  expect(e.code).toBe(code);
  expect(e.closeCode).toBe(CLOSE_CODES.badFrame);
  return e;
}

describe('codec: worker messages round trip', () => {
  const cases: [string, WorkerMessage][] = [
    ['hello', { type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'gpu-box-1' }],
    ['ready', { type: 'ready', backend: 'wasm' }],
    ['task_failed', { type: 'task_failed', taskId: 41, code: 'DTRAIN_ERR_OOM', message: 'out of memory' }],
    ['a train result with gradients', result()],
    ['a train result with gradients and BatchNorm stats', result({ stats: floats([0.5, -0.25, 8]) })],
    ["a result with the worker's own time", result({ workerMs: 19.25 })],
    ['an eval result with predictions', { type: 'result', taskId: 3, count: 4, lossSum: 2.5, correct: 2, computeMs: 1, predictions: new Uint8Array([0, 9, 4, 4]) }],
  ];

  it.each(cases)('decodes %s to what was encoded', (_, message) => {
    expect(plain(decodeWorkerMessage(asReceived(encode(message)), expectations))).toEqual(plain(message));
  });

  it('accepts a result whose count matches the task it answers', () => {
    expect(decodeWorkerMessage(encode(result()), { ...expectations, taskCount: 4 }).type).toBe('result');
  });
});

describe('codec: coordinator messages round trip', () => {
  const mean = new Float32Array(3072).map((_, i) => i / 3072);
  const std = new Float32Array(3072).map((_, i) => 1 + i / 1000);
  const cases: [string, CoordinatorMessage, number | undefined][] = [
    ['a welcome with scale preprocessing', { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w-1', model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: WEIGHTS }, undefined],
    [
      'a welcome with standardize preprocessing',
      { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w-2', model: 'mlp', preprocessing: { kind: 'standardize', mean: floatsToBytes(mean), std: floatsToBytes(std) }, weightCount: WEIGHTS },
      undefined,
    ],
    [
      'a task with weights',
      { type: 'task', taskId: 5, kind: 'train', weightsVersion: 2, weights: floats([1, 2, 3, 4, 5, 6, 7]), images: new Uint8Array(2 * 3072).fill(200), labels: new Uint8Array([3, 7]) },
      WEIGHTS,
    ],
    ['a task without weights', { type: 'task', taskId: 6, kind: 'eval', weightsVersion: 2, images: new Uint8Array(3072).fill(1), labels: new Uint8Array([9]) }, WEIGHTS],
    ['shutdown', { type: 'shutdown', reason: 'training finished' }, undefined],
  ];

  it.each(cases)('decodes %s to what was encoded', (_, message, weightCount) => {
    expect(plain(decodeCoordinatorMessage(asReceived(encode(message)), weightCount))).toEqual(plain(message));
  });

  it('leaves weights out of a decoded task that carried none', () => {
    const task: CoordinatorMessage = { type: 'task', taskId: 6, kind: 'eval', weightsVersion: 2, images: new Uint8Array(3072), labels: new Uint8Array([1]) };
    const decoded = decodeCoordinatorMessage(encode(task), WEIGHTS);
    expect('weights' in decoded).toBe(false);
  });
});

describe('codec: float32 tensors survive bit for bit', () => {
  it('keeps signed zero, subnormals and extremes in gradients exactly', () => {
    const decoded = decodeWorkerMessage(asReceived(encode(result({ gradients: floatsToBytes(TRICKY) }))), expectations) as ResultMessage;
    expect(bytesOf(decoded.gradients!)).toEqual(bytesOf(floatsToBytes(TRICKY)));
    const back = bytesToFloats(decoded.gradients!);
    expect(Object.is(back[0], -0)).toBe(true);
    expect(Array.from(back)).toEqual(Array.from(TRICKY));
  });

  it('reads the right floats whatever offset msgpack gave the binary field, aligned or not', () => {
    const rng = new SeededRandom(7);
    const seenOffsets = new Set<number>();
    // Different taskId and lossSum encodings (fixint, uint8, uint16, uint32; float64) shift where the gradient bytes start.
    for (const taskId of [1, 200, 60_000, 4_000_000_000]) {
      for (const lossSum of [0, 0.5, 123456.789]) {
        const values = new Float32Array(GRADIENTS).map(() => (rng.next() - 0.5) * 1e6);
        const frame = asReceived(encode(result({ taskId, lossSum, gradients: floatsToBytes(values) })));
        const decoded = decodeWorkerMessage(frame, expectations) as ResultMessage;
        // Where the gradient bytes start in the frame's memory.
        const start = Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength).indexOf(Buffer.from(values.buffer, 0, 16));
        expect(start).toBeGreaterThan(0);
        seenOffsets.add((frame.byteOffset + start) % 4);
        // Decoded, they are 4-byte aligned either way (one copy where the frame's were not), so nothing downstream copies them again.
        expect(decoded.gradients!.byteOffset % 4).toBe(0);
        const back = bytesToFloats(decoded.gradients!);
        expect(back.length).toBe(GRADIENTS);
        expect(Array.from(back)).toEqual(Array.from(values));
      }
    }
    // The test only means something if some of those fields really were unaligned.
    expect([...seenOffsets].some((o) => o !== 0)).toBe(true);
  });

  it('copies unaligned bytes, including from a Node Buffer that shares a larger pool', () => {
    const values = new Float32Array([1.5, -2.25, 1e-30]);
    for (const offset of [1, 2, 3, 5]) {
      const pool = Buffer.alloc(64, 0xff);
      pool.set(floatsToBytes(values), offset);
      const view = pool.subarray(offset, offset + values.byteLength);
      const back = bytesToFloats(view);
      expect(back.length).toBe(3);
      expect(Array.from(back)).toEqual(Array.from(values));
      // A copy: changing the source afterwards does not change what was read.
      pool.fill(0);
      expect(back[0]).toBe(1.5);
    }
  });

  it('views aligned bytes without changing them', () => {
    const values = new Float32Array([3, 4, 5, 6]);
    const back = bytesToFloats(floatsToBytes(values).subarray(4, 12));
    expect(Array.from(back)).toEqual([4, 5]);
  });
});

describe('codec: malformed frames are rejected with a stable code', () => {
  const validTask = { type: 'task', taskId: 1, kind: 'train', weightsVersion: 1, images: new Uint8Array(2 * 3072), labels: new Uint8Array(2) };
  const validWelcome = { type: 'welcome', protocolVersion: 1, workerId: 'w', model: 'mlp', preprocessing: { kind: 'scale' }, weightCount: WEIGHTS };
  const withGradients = (values: number[]) => pack({ ...result(), gradients: floats(values) });
  const without = <T extends object>(o: T, key: keyof T): Partial<T> => {
    const copy = { ...o };
    delete copy[key];
    return copy;
  };

  const workerCases: [string, Uint8Array, string][] = [
    ['an empty buffer', new Uint8Array(0), FRAME_ERRORS.notMsgpack],
    ['a truncated map', pack({ type: 'hello', token: 'abc' }).subarray(0, 5), FRAME_ERRORS.notMsgpack],
    ['a string header promising more bytes than sent', new Uint8Array([0xd9, 0x10, 0x41]), FRAME_ERRORS.notMsgpack],
    ['NaN', pack(NaN), FRAME_ERRORS.notMap],
    ['an empty map', pack({}), FRAME_ERRORS.type],
    ['an empty array', pack([]), FRAME_ERRORS.notMap],
    ['null', pack(null), FRAME_ERRORS.notMap],
    ['a string', pack('hello'), FRAME_ERRORS.notMap],
    ['a number', pack(42), FRAME_ERRORS.notMap],
    ['bare binary', pack(new Uint8Array([1, 2, 3])), FRAME_ERRORS.notMap],
    ['an unknown type', pack({ type: 'nope' }), FRAME_ERRORS.type],
    ['a hello without a workerName', pack({ type: 'hello', protocolVersion: 1 }), FRAME_ERRORS.shape],
    ['a hello whose protocolVersion is a string', pack({ type: 'hello', protocolVersion: '1', token: 't', workerName: 'x' }), FRAME_ERRORS.shape],
    ['a hello with a negative protocolVersion', pack({ type: 'hello', protocolVersion: -1, token: 't', workerName: 'x' }), FRAME_ERRORS.shape],
    ['a hello whose workerName is too long', pack({ type: 'hello', protocolVersion: 1, token: 't', workerName: 'x'.repeat(257) }), FRAME_ERRORS.shape],
    ['a ready whose backend is a number', pack({ type: 'ready', backend: 3 }), FRAME_ERRORS.shape],
    ['a task_failed without a taskId', pack({ type: 'task_failed', code: 'X', message: 'm' }), FRAME_ERRORS.shape],
    ['a result without a count', pack(without(result(), 'count')), FRAME_ERRORS.shape],
    ['a result without a lossSum', pack(without(result(), 'lossSum')), FRAME_ERRORS.shape],
    ['a result whose taskId is fractional', pack({ ...result(), taskId: 1.5 }), FRAME_ERRORS.shape],
    ['a result whose lossSum is a string', pack({ ...result(), lossSum: '9.25' }), FRAME_ERRORS.shape],
    ['a result whose gradients are an array of numbers', pack({ ...result(), gradients: [1, 2, 3, 4, 5] }), FRAME_ERRORS.shape],
    ['a result with more correct than count', pack({ ...result(), count: 4, correct: 5 }), FRAME_ERRORS.shape],
    ['gradients one float short', withGradients([1, 2, 3, 4]), FRAME_ERRORS.tensorLength],
    ['gradients one float long', withGradients([1, 2, 3, 4, 5, 6]), FRAME_ERRORS.tensorLength],
    ['gradients of a length that is not whole floats', pack({ ...result(), gradients: new Uint8Array(GRADIENTS * 4 + 1) }), FRAME_ERRORS.tensorLength],
    ['stats of the wrong length', pack({ ...result(), stats: floats([1, 2]) }), FRAME_ERRORS.tensorLength],
    ['NaN inside gradients', withGradients([1, 2, NaN, 4, 5]), FRAME_ERRORS.nonFinite],
    ['Infinity inside gradients', withGradients([1, 2, 3, 4, Infinity]), FRAME_ERRORS.nonFinite],
    ['-Infinity inside stats', pack({ ...result(), stats: floats([-Infinity, 0, 0]) }), FRAME_ERRORS.nonFinite],
    ['a NaN lossSum', pack({ ...result(), lossSum: NaN }), FRAME_ERRORS.nonFinite],
    ['an infinite computeMs', pack({ ...result(), computeMs: Infinity }), FRAME_ERRORS.nonFinite],
    ['a negative computeMs', pack({ ...result(), computeMs: -1 }), FRAME_ERRORS.shape],
    ['a computeMs over a day', pack({ ...result(), computeMs: 86_400_001 }), FRAME_ERRORS.shape],
    ['a NaN workerMs', pack({ ...result(), workerMs: NaN }), FRAME_ERRORS.nonFinite],
    ['a negative workerMs', pack({ ...result(), workerMs: -0.5 }), FRAME_ERRORS.shape],
    ['a workerMs that is a string', pack({ ...result(), workerMs: '3' }), FRAME_ERRORS.shape],
    ['predictions with a class above 9', pack({ ...without(result(), 'gradients'), predictions: new Uint8Array([0, 1, 10, 2]) }), FRAME_ERRORS.shape],
    ['predictions of the wrong count', pack({ ...without(result(), 'gradients'), predictions: new Uint8Array([0, 1, 2]) }), FRAME_ERRORS.tensorLength],
  ];

  it.each(workerCases)('rejects %s from a worker', (_, frame, code) => {
    expectFrameError(() => decodeWorkerMessage(frame, expectations), code);
  });

  it('rejects random bytes from a worker as not msgpack or the wrong shape', () => {
    const rng = new SeededRandom(2024);
    for (let trial = 0; trial < 200; trial++) {
      const frame = new Uint8Array(1 + rng.nextInt(64)).map(() => rng.nextInt(256));
      let caught: unknown;
      try {
        decodeWorkerMessage(frame, expectations);
      } catch (err) {
        caught = err;
      }
      // Whatever the bytes decode to, the only way out is a FrameError (random bytes are never a valid message).
      expect(caught).toBeInstanceOf(FrameError);
      expect(Object.values(FRAME_ERRORS)).toContain((caught as FrameError).code);
    }
  });

  it('rejects a result for another number of samples than its task', () => {
    const e = expectFrameError(() => decodeWorkerMessage(encode(result({ count: 4, correct: 1 })), { ...expectations, taskCount: 8 }), FRAME_ERRORS.countMismatch);
    expect(e.message).toBe('Expected a result for 8 samples, but got 4.');
  });

  it('names the expected and actual size of a gradient of the wrong length', () => {
    const e = expectFrameError(() => decodeWorkerMessage(withGradients([1, 2, 3]), expectations), FRAME_ERRORS.tensorLength);
    expect(e.message).toBe(`Expected gradients of ${GRADIENTS * 4} bytes, but got 12.`);
  });

  it('names the position of a non-finite gradient', () => {
    const e = expectFrameError(() => decodeWorkerMessage(withGradients([1, 2, NaN, 4, 5]), expectations), FRAME_ERRORS.nonFinite);
    expect(e.message).toBe('Expected finite gradients, but value 2 is NaN.');
  });

  const coordinatorCases: [string, Uint8Array, number | undefined, string][] = [
    ['an empty buffer', new Uint8Array(0), WEIGHTS, FRAME_ERRORS.notMsgpack],
    ['NaN', pack(NaN), WEIGHTS, FRAME_ERRORS.notMap],
    ['an empty map', pack({}), WEIGHTS, FRAME_ERRORS.type],
    ['an empty array', pack([]), WEIGHTS, FRAME_ERRORS.notMap],
    ['null', pack(null), WEIGHTS, FRAME_ERRORS.notMap],
    ['a string', pack('task'), WEIGHTS, FRAME_ERRORS.notMap],
    ['an unknown type', pack({ type: 'nope' }), WEIGHTS, FRAME_ERRORS.type],
    ['a worker message type', pack({ type: 'hello', protocolVersion: 1, token: 't', workerName: 'x' }), WEIGHTS, FRAME_ERRORS.type],
    ['a task before the welcome', pack(validTask), undefined, FRAME_ERRORS.unexpected],
    ['a task of an unknown kind', pack({ ...validTask, kind: 'predict' }), WEIGHTS, FRAME_ERRORS.shape],
    ['a task without labels', pack(without(validTask, 'labels')), WEIGHTS, FRAME_ERRORS.shape],
    ['a task whose labels are an array', pack({ ...validTask, labels: [1, 2] }), WEIGHTS, FRAME_ERRORS.shape],
    ['a task without a weightsVersion', pack(without(validTask, 'weightsVersion')), WEIGHTS, FRAME_ERRORS.shape],
    ['a task with one image too few', pack({ ...validTask, images: new Uint8Array(3072) }), WEIGHTS, FRAME_ERRORS.tensorLength],
    ['a task with one pixel too many', pack({ ...validTask, images: new Uint8Array(2 * 3072 + 1) }), WEIGHTS, FRAME_ERRORS.tensorLength],
    ['a task with weights of the wrong length', pack({ ...validTask, weights: floats([1, 2, 3]) }), WEIGHTS, FRAME_ERRORS.tensorLength],
    ['a welcome for an unknown model', pack({ ...validWelcome, model: 'resnet' }), undefined, FRAME_ERRORS.shape],
    ['a welcome without preprocessing', pack(without(validWelcome, 'preprocessing')), undefined, FRAME_ERRORS.shape],
    ['a welcome with an unknown preprocessing kind', pack({ ...validWelcome, preprocessing: { kind: 'whiten' } }), undefined, FRAME_ERRORS.shape],
    ['a welcome with a short standardize mean', pack({ ...validWelcome, preprocessing: { kind: 'standardize', mean: new Uint8Array(4), std: new Uint8Array(3072 * 4) } }), undefined, FRAME_ERRORS.tensorLength],
    ['a welcome with a zero weightCount', pack({ ...validWelcome, weightCount: 0 }), undefined, FRAME_ERRORS.shape],
    ['a shutdown without a reason', pack({ type: 'shutdown' }), undefined, FRAME_ERRORS.shape],
  ];

  it.each(coordinatorCases)('rejects %s from the coordinator', (_, frame, weightCount, code) => {
    expectFrameError(() => decodeCoordinatorMessage(frame, weightCount), code);
  });

  it('names both sizes when a task has the wrong number of pixels', () => {
    const e = expectFrameError(() => decodeCoordinatorMessage(pack({ ...validTask, images: new Uint8Array(3072) }), WEIGHTS), FRAME_ERRORS.tensorLength);
    expect(e.message).toBe(`Expected images of ${2 * 3072} bytes, but got 3072.`);
  });

  it('says what arrived when the shape is wrong', () => {
    const e = expectFrameError(() => decodeWorkerMessage(pack({ type: 'nope' }), expectations), FRAME_ERRORS.type);
    expect(e.message).toBe('Expected type to be one of hello, ready, result, task_failed, bn_sums, but got "nope".');
  });
});

describe('codec: a result frame puts its gradients where they can be read in place', () => {
  it('encodes the gradients first, 16 bytes in, so a frame in a buffer of its own decodes them as a view', () => {
    const gradients = new Float32Array(70_000).map((_, i) => i * 0.5 - 7);
    const msg: ResultMessage = { type: 'result', taskId: 123_456, count: 32, lossSum: 1.25, correct: 7, computeMs: 3.5, gradients: floatsToBytes(gradients) };
    // As ws hands over a frame reassembled from several socket reads: a buffer of its own.
    const frame = Buffer.from(encode(msg));
    const decoded = decodeWorkerMessage(frame, { gradientCount: gradients.length, statsCount: 0 }) as ResultMessage;
    expect(decoded.gradients!.buffer).toBe(frame.buffer);
    expect(decoded.gradients!.byteOffset - frame.byteOffset).toBe(16);
    expect(Buffer.from(decoded.gradients!).equals(Buffer.from(floatsToBytes(gradients)))).toBe(true);
    expect({ ...decoded, gradients: undefined }).toEqual({ ...msg, gradients: undefined });
  });
});
