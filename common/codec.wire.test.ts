/** The codec with a narrower wire dtype and with index tasks (see wire-dtype.ts and worker/local-data.ts). */
import { describe, expect, it } from 'vitest';
import { pack } from 'msgpackr';
import { bytesToFloats, decodeCoordinatorMessage, decodeWorkerMessage, encode, floatsToBytes, resultForWire, taskForWire, FrameError } from './codec.ts';
import { PROTOCOL_VERSION, type ResultMessage, type TaskMessage } from './protocol.ts';
import { encodeTensor } from './wire-dtype.ts';

const N = 1000;
const values = Float32Array.from({ length: N }, (_, i) => Math.sin(i + 1) * 10 ** ((i % 5) - 2));

function result(gradients: Float32Array): ResultMessage {
  return { type: 'result', taskId: 1, count: 8, lossSum: 1, correct: 2, computeMs: 3, gradients: floatsToBytes(gradients) };
}

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as FrameError).code;
  }
  return undefined;
}

function maxRelative(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.abs(a[i]));
  return m;
}

describe('results in the agreed wire dtype', () => {
  it.each([
    ['float16', 2 ** -11],
    ['bfloat16', 2 ** -8],
  ] as const)('%s gradients arrive as float32 within the dtype\'s error bound', (dtype, bound) => {
    const frame = encode(resultForWire(result(values), dtype));
    const msg = decodeWorkerMessage(frame, { gradientCount: N, statsCount: 0, wireDtype: dtype }) as ResultMessage;
    expect(maxRelative(values, bytesToFloats(msg.gradients!))).toBeLessThanOrEqual(bound);
    expect(frame.byteLength).toBeLessThan(N * 4);
  });

  it('refuses gradients sized for another dtype before reading them', () => {
    const frame = encode(result(values)); // float32 bytes where float16 was agreed
    expect(code(() => decodeWorkerMessage(frame, { gradientCount: N, statsCount: 0, wireDtype: 'float16' }))).toBe('DTRAIN_ERR_TENSOR_LENGTH');
  });

  it('refuses NaN and Infinity in narrow gradients', () => {
    const bad = values.slice();
    bad[10] = NaN;
    const frame = encode({ ...result(values), gradients: encodeTensor(bad, 'bfloat16') });
    expect(code(() => decodeWorkerMessage(frame, { gradientCount: N, statsCount: 0, wireDtype: 'bfloat16' }))).toBe('DTRAIN_ERR_NON_FINITE');
  });

  it('accepts a hello that leaves the dtype to the coordinator', () => {
    const frame = pack({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'w', wireDtype: 'auto' });
    expect(decodeWorkerMessage(frame, { gradientCount: N, statsCount: 0 })).toMatchObject({ type: 'hello', wireDtype: 'auto' });
  });

  it('refuses a hello asking for an unknown dtype', () => {
    const frame = pack({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'w', wireDtype: 'float8' });
    expect(code(() => decodeWorkerMessage(frame, { gradientCount: N, statsCount: 0 }))).toBe('DTRAIN_ERR_FRAME_SHAPE');
  });
});

describe('tasks in the agreed wire dtype', () => {
  const total = N + 20; // 20 BatchNorm statistics after the trainable weights
  const weights = Float32Array.from({ length: total }, (_, i) => (i < N ? values[i] : 100 + i / 3));
  const task: TaskMessage = { type: 'task', taskId: 5, kind: 'train', weightsVersion: 3, weights: floatsToBytes(weights), images: new Uint8Array(3072), labels: new Uint8Array(1) };
  const wire = { dtype: 'float16' as const, trainableCount: N };

  it('sends the trainable weights in float16 and the statistics exactly', () => {
    const msg = decodeCoordinatorMessage(encode(taskForWire(task, wire)), total, wire) as TaskMessage;
    const back = bytesToFloats(msg.weights!);
    expect(maxRelative(weights.subarray(0, N), back.subarray(0, N))).toBeLessThanOrEqual(2 ** -11);
    expect(back.subarray(N)).toEqual(weights.subarray(N));
  });

  it('encodes one weights version once for every connection, and again when the version changes', () => {
    const a = taskForWire(task, wire);
    expect(taskForWire({ ...task, taskId: 6 }, wire).weights).toBe(a.weights);
    expect(taskForWire({ ...task, weightsVersion: 4 }, wire).weights).not.toBe(a.weights);
  });

  it('refuses weights of the float32 size when float16 was agreed', () => {
    expect(code(() => decodeCoordinatorMessage(encode(task), total, wire))).toBe('DTRAIN_ERR_TENSOR_LENGTH');
  });

  it('refuses a float16 welcome that does not say how many weights are trainable', () => {
    const welcome = pack({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 'w1', model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: total, wireDtype: 'float16' });
    expect(code(() => decodeCoordinatorMessage(welcome))).toBe('DTRAIN_ERR_FRAME_SHAPE');
  });
});

describe('index tasks', () => {
  const labels = Uint8Array.from([1, 2, 3]);
  const indices = new Uint8Array(Uint32Array.from([7, 8, 9]).buffer);

  it('carry 4 bytes a sample and no pixels', () => {
    const msg = decodeCoordinatorMessage(encode({ type: 'task', taskId: 1, kind: 'train', weightsVersion: 0, images: new Uint8Array(0), labels, indices, split: 'train' }), 10) as TaskMessage;
    expect(new Uint32Array(Uint8Array.from(msg.indices!).buffer)).toEqual(Uint32Array.from([7, 8, 9]));
    expect(msg.split).toBe('train');
  });

  it.each([
    ['indices of the wrong length', { images: new Uint8Array(0), indices: indices.subarray(4), split: 'train' }, 'DTRAIN_ERR_TENSOR_LENGTH'],
    ['pixels as well as indices', { images: new Uint8Array(3 * 3072), indices, split: 'train' }, 'DTRAIN_ERR_TENSOR_LENGTH'],
    ['an unknown split', { images: new Uint8Array(0), indices, split: 'dev' }, 'DTRAIN_ERR_FRAME_SHAPE'],
  ])('refuse %s', (_what, fields, expected) => {
    const frame = pack({ type: 'task', taskId: 1, kind: 'train', weightsVersion: 0, labels, ...fields });
    expect(code(() => decodeCoordinatorMessage(frame, 10))).toBe(expected);
  });
});
