/**
 * The only place where msgpack bytes become typed messages. Everything past `decode*` trusts its
 * output. Each rejection is a FrameError with a stable code and the WebSocket close code to send.
 * Sizes are checked against what the model expects before any float is read.
 */
import { Packr } from 'msgpackr';
import { endianness } from 'node:os';
import { DtrainError } from './errors.ts';
import { firstNonFinite } from './gradient-passes.ts';
import { MODEL_NAMES } from './models.ts';
import {
  CLOSE_CODES,
  type CoordinatorMessage,
  type LocalDataSpec,
  type BatchNormPhase,
  type BnSumsMessage,
  type BnTotalsMessage,
  type ResultMessage,
  type TaskMessage,
  type WirePreprocessing,
  type WorkerMessage,
} from './protocol.ts';
import { decodeTensor, decodeWeights, encodeTensor, encodeWeights, isWireDtype, weightsByteLength, wireByteLength, WIRE_DTYPES, type WireDtype } from './wire-dtype.ts';

if (endianness() !== 'LE') throw new Error('dtrain sends float32 tensors as little-endian bytes and needs a little-endian host.');

export const FRAME_ERRORS = {
  notMsgpack: 'DTRAIN_ERR_FRAME_NOT_MSGPACK',
  shape: 'DTRAIN_ERR_FRAME_SHAPE',
  tensorLength: 'DTRAIN_ERR_TENSOR_LENGTH',
  nonFinite: 'DTRAIN_ERR_NON_FINITE',
  tooLarge: 'DTRAIN_ERR_FRAME_TOO_LARGE',
  unexpected: 'DTRAIN_ERR_UNEXPECTED_MESSAGE',
  /** A frame that is msgpack but not a map (an array, a number, bare binary). */
  notMap: 'DTRAIN_ERR_FRAME_NOT_MAP',
  /** A map without a known `type`. */
  type: 'DTRAIN_ERR_FRAME_TYPE',
  /** A text frame: the protocol is binary only. */
  text: 'DTRAIN_ERR_FRAME_TEXT',
  /** A result or failure for a task that is not pending on this connection. */
  unknownTask: 'DTRAIN_ERR_UNKNOWN_TASK',
  /** A result without a tensor its task needs (gradients, statistics, predictions). */
  missingTensor: 'DTRAIN_ERR_MISSING_TENSOR',
  /** A result for another number of samples than its task has. */
  countMismatch: 'DTRAIN_ERR_COUNT_MISMATCH',
} as const;

export class FrameError extends DtrainError {
  readonly closeCode: number;
  constructor(code: string, message: string, closeCode: number = CLOSE_CODES.badFrame) {
    super(code, message, { expected: false });
    this.closeCode = closeCode;
  }
}

// Plain msgpack: no records or extensions, so a peer cannot make us build anything but data.
// variableMapSize: a map of up to 15 fields gets msgpack's 1-byte header, not msgpackr's default
// 3-byte one, which tensorFirst's alignment counts on.
const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: 'number', variableMapSize: true });

export function encode(message: WorkerMessage | CoordinatorMessage): Uint8Array {
  return packr.pack(tensorFirst(message));
}

/**
 * `message`'s frame, written from the start of `buffer` when it fits (else into a buffer msgpackr
 * allocates: compare `.buffer`). msgpackr writes every message into one buffer it keeps across
 * calls, so afterwards it is pointed at a fresh one: a later `encode` must not append to bytes the
 * caller will overwrite while they may still be on their way out (common/frame-encoder.ts).
 */
export function encodeInto(message: WorkerMessage | CoordinatorMessage, buffer: Buffer): Uint8Array {
  packr.useBuffer(buffer);
  try {
    return packr.pack(tensorFirst(message));
  } finally {
    packr.useBuffer(Buffer.allocUnsafe(8192));
  }
}

/**
 * A result's gradients as its first field: a map of up to 15 fields (1 byte), the key "gradients"
 * (10 bytes) and a bin32 header (5 bytes) put its bytes 16 bytes into the frame. A frame ws
 * reassembles from several socket reads (any gradient over 64 KiB) starts a buffer of its own, so
 * the coordinator reads the floats where they lie instead of copying them to align them.
 */
function tensorFirst(message: WorkerMessage | CoordinatorMessage): WorkerMessage | CoordinatorMessage {
  if (message.type !== 'result' || !message.gradients) return message;
  const { gradients, ...rest } = message;
  return { gradients, ...rest };
}

export function floatsToBytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

export function float64ToBytes(values: Float64Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** float64 LE bytes as a Float64Array, copied when not 8-byte aligned. */
export function bytesToFloat64(bytes: Uint8Array): Float64Array {
  if (bytes.byteOffset % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 8);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float64Array(copy.buffer);
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

/** The top level of every message is a map; anything else has its own code. */
function assertMessageMap(v: unknown): asserts v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw new FrameError(FRAME_ERRORS.notMap, `Expected a message to be a map, but got ${describe(v)}.`);
}

function unknownType(expected: string, got: unknown): FrameError {
  return new FrameError(FRAME_ERRORS.type, `Expected type to be ${expected}, but got ${describe(got)}.`);
}

function assertObject(v: unknown, what: string): asserts v is Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) throw shapeError(what, 'a map', v);
}

function int(o: Obj, key: string, min = 0): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw shapeError(key, `an integer >= ${min}`, v);
  return v;
}

/** The longest duration a peer may report (one day): a timing beyond it is a bug or a lie. */
const MAX_REPORTED_MS = 86_400_000;

function finite(o: Obj, key: string): number {
  const v = o[key];
  if (typeof v !== 'number') throw shapeError(key, 'a number', v);
  if (!Number.isFinite(v)) throw new FrameError(FRAME_ERRORS.nonFinite, `Expected ${key} to be finite, but got ${v}.`);
  return v;
}

/** A duration a peer reports, in ms: finite, not negative, at most a day. */
function duration(o: Obj, key: string): number {
  const v = finite(o, key);
  if (v < 0 || v > MAX_REPORTED_MS) throw shapeError(key, `a duration from 0 to ${MAX_REPORTED_MS} ms`, v);
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

function assertFinite(f: Float32Array, key: string): void {
  const i = firstNonFinite(f);
  if (i >= 0) throw new FrameError(FRAME_ERRORS.nonFinite, `Expected finite ${key}, but value ${i} is ${f[i]}.`);
}

/** Float32 bytes, 4-byte aligned: a view of the frame where it is aligned, else the one copy the finite check made (downstream views it as floats without copying again). */
function optionalFloats(o: Obj, key: string, expectedCount: number): Uint8Array | undefined {
  if (o[key] === undefined) return undefined;
  const b = bytes(o, key, expectedCount * 4);
  const f = bytesToFloats(b);
  assertFinite(f, key);
  return floatsToBytes(f);
}

/**
 * A tensor in `dtype` (see wire-dtype.ts), decoded to float32 bytes for everything downstream. The
 * length is checked against the dtype before any value is read; NaN and Infinity are refused.
 */
function optionalWireFloats(o: Obj, key: string, expectedCount: number, dtype: WireDtype): Uint8Array | undefined {
  if (dtype === 'float32') return optionalFloats(o, key, expectedCount);
  if (o[key] === undefined) return undefined;
  const f = decodeTensor(bytes(o, key, wireByteLength(dtype, expectedCount)), dtype, expectedCount);
  assertFinite(f, key);
  return floatsToBytes(f);
}

function optionalWireDtype(o: Obj, key: string): WireDtype | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (!isWireDtype(v)) throw shapeError(key, WIRE_DTYPES.join(' | '), v);
  return v;
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
  /** Channels of each BatchNorm layer, in model order (bn_sums sizes follow from them). Default: none. */
  batchNormChannels?: readonly number[];
  /** The dtype agreed in the handshake for gradients (statistics are always float32). Default float32. */
  wireDtype?: WireDtype;
}

export function decodeWorkerMessage(data: Uint8Array, expect: ResultExpectations): WorkerMessage {
  const o = unpack(data);
  assertMessageMap(o);
  switch (o.type) {
    case 'hello': {
      const hello: WorkerMessage = { type: 'hello', protocolVersion: int(o, 'protocolVersion'), workerName: str(o, 'workerName') };
      const wireDtype = o.wireDtype === 'auto' ? 'auto' : optionalWireDtype(o, 'wireDtype');
      if (wireDtype) hello.wireDtype = wireDtype;
      if (o.dataset !== undefined) hello.dataset = str(o, 'dataset', 128);
      return hello;
    }
    case 'ready':
      return { type: 'ready', backend: str(o, 'backend', 64) };
    case 'bn_sums':
      return decodeBnSums(o, expect.batchNormChannels ?? []);
    case 'task_failed':
      return { type: 'task_failed', taskId: int(o, 'taskId'), code: str(o, 'code', 64), message: str(o, 'message', 2000) };
    case 'result':
      return decodeResult(o, expect);
    default:
      throw unknownType('one of hello, ready, result, task_failed, bn_sums', o.type);
  }
}

function decodeResult(o: Obj, expect: ResultExpectations): ResultMessage {
  const count = int(o, 'count');
  if (expect.taskCount !== undefined && count !== expect.taskCount) {
    throw new FrameError(FRAME_ERRORS.countMismatch, `Expected a result for ${expect.taskCount} samples, but got ${count}.`);
  }
  const correct = int(o, 'correct');
  if (correct > count) throw shapeError('correct', `at most count (${count})`, correct);
  const result: ResultMessage = { type: 'result', taskId: int(o, 'taskId'), count, lossSum: finite(o, 'lossSum'), correct, computeMs: duration(o, 'computeMs') };
  if (o.workerMs !== undefined) result.workerMs = duration(o, 'workerMs');
  const gradients = optionalWireFloats(o, 'gradients', expect.gradientCount, expect.wireDtype ?? 'float32');
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

function decodeLocalData(v: unknown): LocalDataSpec {
  assertObject(v, 'localData');
  const spec: LocalDataSpec = { fingerprint: str(v, 'fingerprint', 128), seed: int(v, 'seed') };
  if (v.limitTrain !== undefined) spec.limitTrain = int(v, 'limitTrain', 1);
  if (v.limitTest !== undefined) spec.limitTest = int(v, 'limitTest', 1);
  return spec;
}

/** How the weights of tasks are encoded on this connection, from the welcome. */
export interface TaskWire {
  dtype: WireDtype;
  /** Weights past this many are BatchNorm statistics, always float32. */
  trainableCount: number;
}

/**
 * `weightCount` is known once the welcome has arrived; tasks before that are rejected. Weights in
 * `wire.dtype` are decoded to float32 bytes here.
 */
export function decodeCoordinatorMessage(data: Uint8Array, weightCount?: number, wire?: TaskWire): CoordinatorMessage {
  const o = unpack(data);
  assertMessageMap(o);
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
        ...decodeWelcomeWire(o),
      };
    }
    case 'task': {
      if (weightCount === undefined) throw new FrameError(FRAME_ERRORS.unexpected, 'Expected a welcome before the first task, but got a task.');
      const kind = o.kind;
      if (kind !== 'train' && kind !== 'eval') throw shapeError('kind', '"train" or "eval"', kind);
      const labels = bytes(o, 'labels');
      // Pixels, or (for a worker with local data) indices instead and no pixels.
      const indices = o.indices === undefined ? undefined : bytes(o, 'indices', labels.byteLength * 4);
      const images = bytes(o, 'images', indices ? 0 : labels.byteLength * 3072);
      const task: TaskMessage = { type: 'task', taskId: int(o, 'taskId'), kind, weightsVersion: int(o, 'weightsVersion'), images, labels };
      if (indices) {
        const split = o.split;
        if (split !== 'train' && split !== 'val' && split !== 'test') throw shapeError('split', '"train", "val" or "test"', split);
        task.indices = indices;
        task.split = split;
      }
      decodeTaskSampling(o, task);
      if (o.weights !== undefined) {
        const dtype = wire?.dtype ?? 'float32';
        if (dtype === 'float32') task.weights = bytes(o, 'weights', weightCount * 4);
        else {
          const trainable = wire!.trainableCount;
          const raw = bytes(o, 'weights', weightsByteLength(dtype, weightCount, trainable));
          task.weights = floatsToBytes(decodeWeights(raw, dtype, weightCount, trainable));
        }
      }
      return task;
    }
    case 'shutdown':
      return { type: 'shutdown', reason: str(o, 'reason', 2000) };
    case 'bn_totals':
      return decodeBnTotals(o);
    default:
      throw unknownType('one of welcome, task, shutdown, bn_totals', o.type);
  }
}

function decodeWelcomeWire(o: Obj): { wireDtype?: WireDtype; trainableCount?: number; localData?: LocalDataSpec } {
  const out: { wireDtype?: WireDtype; trainableCount?: number; localData?: LocalDataSpec } = {};
  const wireDtype = optionalWireDtype(o, 'wireDtype');
  if (wireDtype) out.wireDtype = wireDtype;
  if (o.trainableCount !== undefined) {
    out.trainableCount = int(o, 'trainableCount', 1);
    if (out.trainableCount > int(o, 'weightCount', 1)) throw shapeError('trainableCount', `at most weightCount (${String(o.weightCount)})`, o.trainableCount);
  }
  if (wireDtype && wireDtype !== 'float32' && out.trainableCount === undefined) throw shapeError('trainableCount', `an integer (needed with wireDtype ${wireDtype})`, undefined);
  if (o.localData !== undefined) out.localData = decodeLocalData(o.localData);
  return out;
}

// ---- encoding in the agreed dtype ----------------------------------------------------------------

/** A result with its gradients in `dtype` (statistics stay float32). float32 returns it unchanged. */
export function resultForWire(msg: ResultMessage, dtype: WireDtype): ResultMessage {
  if (dtype === 'float32' || !msg.gradients) return msg;
  return { ...msg, gradients: encodeTensor(bytesToFloats(msg.gradients), dtype) };
}

// One encoding per weights version and dtype, shared by every connection that sends it.
const encodedWeights = new WeakMap<Uint8Array, { version: number; byDtype: Map<WireDtype, Uint8Array> }>();

/** A task with its weights in `wire.dtype`; the encoding is cached per weights buffer and version. */
export function taskForWire(task: TaskMessage, wire: TaskWire): TaskMessage {
  if (wire.dtype === 'float32' || !task.weights) return task;
  let entry = encodedWeights.get(task.weights);
  if (!entry || entry.version !== task.weightsVersion) {
    entry = { version: task.weightsVersion, byDtype: new Map() };
    encodedWeights.set(task.weights, entry);
  }
  let enc = entry.byDtype.get(wire.dtype);
  if (!enc) {
    enc = encodeWeights(bytesToFloats(task.weights), wire.trainableCount, wire.dtype);
    entry.byDtype.set(wire.dtype, enc);
  }
  return { ...task, weights: enc };
}

// ---- synchronized BatchNorm and sample positions -------------------------------------------------

/** The largest channel count a bn_totals may describe: far above any model here, far below a memory risk. */
const MAX_BN_CHANNELS = 4096;

function phase(o: Obj): BatchNormPhase {
  if (o.phase !== 'forward' && o.phase !== 'backward') throw shapeError('phase', '"forward" or "backward"', o.phase);
  return o.phase;
}

/** float64 values, every one finite, of exactly `count` values (or any count up to `max` when count is undefined). */
function float64s(o: Obj, key: string, count: number | undefined, max = Infinity): Uint8Array {
  const b = bytes(o, key, count === undefined ? undefined : count * 8);
  if (b.byteLength % 8 !== 0 || b.byteLength / 8 > max) throw new FrameError(FRAME_ERRORS.tensorLength, `Expected ${key} of whole float64 values (at most ${max}), but got ${b.byteLength} bytes.`);
  const f = bytesToFloat64(b);
  for (let i = 0; i < f.length; i++) {
    if (!Number.isFinite(f[i])) throw new FrameError(FRAME_ERRORS.nonFinite, `Expected finite ${key}, but value ${i} is ${f[i]}.`);
  }
  return b;
}

function decodeBnSums(o: Obj, channels: readonly number[]): BnSumsMessage {
  const layer = int(o, 'layer');
  if (layer >= channels.length) throw shapeError('layer', `a BatchNorm layer index below ${channels.length}`, layer);
  const p = phase(o);
  const c = channels[layer];
  const sums = float64s(o, 'sums', p === 'forward' ? 1 + 2 * c : 2 * c);
  const f = bytesToFloat64(sums);
  // Forward: a count >= 1 and M2 >= 0 (a sum of squares); nothing to check on the backward sums' signs.
  if (p === 'forward' && (f[0] < 1 || !Number.isInteger(f[0]) || f.subarray(1 + c).some((v) => v < 0))) {
    throw shapeError('sums', 'a positive integer count and non-negative squared deviations', o.sums);
  }
  return { type: 'bn_sums', round: int(o, 'round', 1), taskId: int(o, 'taskId'), firstSample: int(o, 'firstSample'), layer, phase: p, sums };
}

function decodeBnTotals(o: Obj): BnTotalsMessage {
  const msg: BnTotalsMessage = { type: 'bn_totals', round: int(o, 'round', 1), layer: int(o, 'layer'), phase: phase(o) };
  if (o.aborted !== undefined) msg.aborted = str(o, 'aborted', 2000);
  else msg.totals = float64s(o, 'totals', undefined, 1 + 2 * MAX_BN_CHANNELS);
  return msg;
}

function decodeTaskSampling(o: Obj, task: TaskMessage): void {
  if (o.position !== undefined) {
    const p = o.position;
    assertObject(p, 'position');
    const seed = int(p, 'seed');
    if (seed > 0xffffffff) throw shapeError('position.seed', 'an integer below 2^32', seed);
    task.position = { seed, step: int(p, 'step'), firstSample: int(p, 'firstSample') };
  }
  if (o.batchNorm !== undefined) {
    const b = o.batchNorm;
    assertObject(b, 'batchNorm');
    if (b.mode === 'local') task.batchNorm = { mode: 'local' };
    else if (b.mode === 'sync') task.batchNorm = { mode: 'sync', round: int(b, 'round'), timeoutMs: int(b, 'timeoutMs', 1) };
    else throw shapeError('batchNorm.mode', '"sync" or "local"', b.mode);
  }
}
