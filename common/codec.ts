/**
 * The only place where msgpack bytes become typed messages. Everything past `decode*` trusts its
 * output. Each rejection is a FrameError with a stable code and the WebSocket close code to send.
 * Sizes are checked against what the model expects before any float is read.
 */
import { Packr } from 'msgpackr';
import { endianness } from 'node:os';
import { DtrainError } from './errors.ts';
import { MODEL_NAMES } from './models.ts';
import {
  CLOSE_CODES,
  type CoordinatorMessage,
  type ResultMessage,
  type WirePreprocessing,
  type WorkerMessage,
} from './protocol.ts';

if (endianness() !== 'LE') throw new Error('dtrain sends float32 tensors as little-endian bytes and needs a little-endian host.');

export const FRAME_ERRORS = {
  notMsgpack: 'DTRAIN_ERR_FRAME_NOT_MSGPACK',
  shape: 'DTRAIN_ERR_FRAME_SHAPE',
  tensorLength: 'DTRAIN_ERR_TENSOR_LENGTH',
  nonFinite: 'DTRAIN_ERR_NON_FINITE',
  tooLarge: 'DTRAIN_ERR_FRAME_TOO_LARGE',
  unexpected: 'DTRAIN_ERR_UNEXPECTED_MESSAGE',
} as const;

export class FrameError extends DtrainError {
  readonly closeCode: number;
  constructor(code: string, message: string, closeCode: number = CLOSE_CODES.badFrame) {
    super(code, message, { expected: false });
    this.closeCode = closeCode;
  }
}

// Plain msgpack: no records or extensions, so a peer cannot make us build anything but data.
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number' });

export function encode(message: WorkerMessage | CoordinatorMessage): Uint8Array {
  return packr.pack(message);
}

export function floatsToBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Copies when the bytes are not 4-byte aligned (msgpack does not align binary fields). */
export function bytesToFloats(bytes: Uint8Array): Float32Array {
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  // Not `bytes.slice()`: on a Node Buffer (what ws and msgpackr hand us) slice is a view of the whole pool.
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

// ---- small boundary checks -------------------------------------------------------------------

type Obj = Record<string, unknown>;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (v instanceof Uint8Array) return `${v.byteLength} bytes`;
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return `"${v.slice(0, 40)}"`;
  return typeof v;
}

function shapeError(what: string, expected: string, got: unknown): FrameError {
  return new FrameError(FRAME_ERRORS.shape, `Expected ${what} to be ${expected}, but got ${describe(got)}.`);
}

function assertObject(v: unknown, what: string): asserts v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw shapeError(what, 'a map', v);
}

function int(o: Obj, key: string, min = 0): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw shapeError(key, `an integer >= ${min}`, v);
  return v;
}

function finite(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number') throw shapeError(key, 'a number', v);
  if (!Number.isFinite(v)) throw new FrameError(FRAME_ERRORS.nonFinite, `Expected ${key} to be finite, but got ${v}.`);
  return v;
}

function str(o: Obj, key: string, maxLength = 256): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length > maxLength) throw shapeError(key, `a string of at most ${maxLength} characters`, v);
  return v;
}

function bytes(o: Obj, key: string, expectedLength?: number): Uint8Array {
  const v = o[key];
  if (!(v instanceof Uint8Array)) throw shapeError(key, 'binary', v);
  if (expectedLength !== undefined && v.byteLength !== expectedLength) {
    throw new FrameError(FRAME_ERRORS.tensorLength, `Expected ${key} of ${expectedLength} bytes, but got ${v.byteLength}.`);
  }
  return v;
}

function optionalFloats(o: Obj, key: string, expectedCount: number): Uint8Array | undefined {
  if (o[key] === undefined) return undefined;
  const b = bytes(o, key, expectedCount * 4);
  const f = bytesToFloats(b);
  for (let i = 0; i < f.length; i++) {
    if (!Number.isFinite(f[i])) throw new FrameError(FRAME_ERRORS.nonFinite, `Expected finite ${key}, but value ${i} is ${f[i]}.`);
  }
  return b;
}

function unpack(data: Uint8Array): unknown {
  try {
    return packr.unpack(data);
  } catch (err) {
    throw new FrameError(FRAME_ERRORS.notMsgpack, `Expected a msgpack frame, but decoding failed: ${(err as Error).message}`);
  }
}

// ---- worker -> coordinator -------------------------------------------------------------------

/** What the coordinator expects of results, derived from the model being trained. */
export interface ResultExpectations {
  gradientCount: number;
  statsCount: number;
  /** The sample count of the task this result answers, when known. */
  taskCount?: number;
}

export function decodeWorkerMessage(data: Uint8Array, expect: ResultExpectations): WorkerMessage {
  const o = unpack(data);
  assertObject(o, 'message');
  switch (o.type) {
    case 'hello':
      return { type: 'hello', protocolVersion: int(o, 'protocolVersion'), workerName: str(o, 'workerName') };
    case 'ready':
      return { type: 'ready', backend: str(o, 'backend', 64) };
    case 'task_failed':
      return { type: 'task_failed', taskId: int(o, 'taskId'), code: str(o, 'code', 64), message: str(o, 'message', 2000) };
    case 'result':
      return decodeResult(o, expect);
    default:
      throw shapeError('type', 'one of hello, ready, result, task_failed', o.type);
  }
}

function decodeResult(o: Obj, expect: ResultExpectations): ResultMessage {
  const count = int(o, 'count');
  if (expect.taskCount !== undefined && count !== expect.taskCount) {
    throw new FrameError(FRAME_ERRORS.tensorLength, `Expected a result for ${expect.taskCount} samples, but got ${count}.`);
  }
  const correct = int(o, 'correct');
  if (correct > count) throw shapeError('correct', `at most count (${count})`, correct);
  const result: ResultMessage = { type: 'result', taskId: int(o, 'taskId'), count, lossSum: finite(o, 'lossSum'), correct, computeMs: finite(o, 'computeMs') };
  const gradients = optionalFloats(o, 'gradients', expect.gradientCount);
  if (gradients) result.gradients = gradients;
  const stats = optionalFloats(o, 'stats', expect.statsCount);
  if (stats) result.stats = stats;
  if (o.predictions !== undefined) {
    const p = bytes(o, 'predictions', count);
    if (p.some((c) => c > 9)) throw shapeError('predictions', 'class indices 0-9', o.predictions);
    result.predictions = p;
  }
  return result;
}

// ---- coordinator -> worker -------------------------------------------------------------------

function decodePreprocessing(v: unknown): WirePreprocessing {
  assertObject(v, 'preprocessing');
  if (v.kind === 'scale') return { kind: 'scale' };
  if (v.kind === 'standardize') return { kind: 'standardize', mean: bytes(v, 'mean', 3072 * 4), std: bytes(v, 'std', 3072 * 4) };
  throw shapeError('preprocessing.kind', '"scale" or "standardize"', v.kind);
}

/** `weightCount` is known once the welcome has arrived; tasks before that are rejected. */
export function decodeCoordinatorMessage(data: Uint8Array, weightCount?: number): CoordinatorMessage {
  const o = unpack(data);
  assertObject(o, 'message');
  switch (o.type) {
    case 'welcome': {
      const model = str(o, 'model', 32);
      if (!(MODEL_NAMES as readonly string[]).includes(model)) throw shapeError('model', MODEL_NAMES.join(' | '), model);
      return {
        type: 'welcome',
        protocolVersion: int(o, 'protocolVersion'),
        workerId: str(o, 'workerId', 64),
        model: model as (typeof MODEL_NAMES)[number],
        preprocessing: decodePreprocessing(o.preprocessing),
        weightCount: int(o, 'weightCount', 1),
      };
    }
    case 'task': {
      if (weightCount === undefined) throw new FrameError(FRAME_ERRORS.unexpected, 'Expected a welcome before the first task, but got a task.');
      const kind = o.kind;
      if (kind !== 'train' && kind !== 'eval') throw shapeError('kind', '"train" or "eval"', kind);
      const labels = bytes(o, 'labels');
      const images = bytes(o, 'images', labels.byteLength * 3072);
      const task: CoordinatorMessage = { type: 'task', taskId: int(o, 'taskId'), kind, weightsVersion: int(o, 'weightsVersion'), images, labels };
      if (o.weights !== undefined) task.weights = bytes(o, 'weights', weightCount * 4);
      return task;
    }
    case 'shutdown':
      return { type: 'shutdown', reason: str(o, 'reason', 2000) };
    default:
      throw shapeError('type', 'one of welcome, task, shutdown', o.type);
  }
}
