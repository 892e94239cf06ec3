/**
 * What a PyTorch number was measured with: the `setup` object that scripts/bench-torch.py and
 * scripts/bench-torch-peers.py print (bench-torch.py's setup_info), checked where bench reads it and
 * put into one sentence for docs/BENCHMARKS.md. A PyTorch figure means little without it: on this
 * machine the thread pools, the BLAS, malloc's handling of freed memory and the activations' memory
 * format each moved PyTorch's lenet by 1.3-1.7x (docs/torch-peer.md).
 */
import { DtrainError } from '../common/errors.ts';

export interface TorchSetup {
  torch: string;
  device: string;
  /** torch.get_num_threads() and get_num_interop_threads(). */
  threads: number;
  interopThreads: number;
  /** OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS as the process saw them (null: unset). */
  threadEnv: Record<string, string | null>;
  blas: {
    buildInfo: string;
    loaded: string[];
    openblas: boolean;
    /** Where OpenBLAS is loaded: its thread count, the kernels it picked, and OPENBLAS_CORETYPE. */
    openblasThreads?: number;
    openblasCore?: string;
    openblasCoretypeEnv?: string | null;
  };
  /** oneDNN: compiled in, enabled, and the backend torch picks for a batch-32 convolution ("Mkldnn"). */
  mkldnn: { available: boolean; enabled: boolean; convBackend: string | null };
  cpuCapability: string | null;
  /** "channels-last" or "contiguous": the convolutional models' activations and weights. */
  memoryFormat: string;
  /** glibc told (mallopt) to keep freed memory rather than hand it back and fault it in again. */
  mallocKeepsFreedMemory: boolean;
  optimizer: string;
  data: string;
}

export class TorchSetupError extends DtrainError {
  constructor(message: string) {
    super('DTRAIN_ERR_BENCH_TORCH_SETUP', message, { expected: false });
  }
}

type Check<T> = (v: unknown) => v is T;
const isString: Check<string> = (v): v is string => typeof v === 'string';
const isNumber: Check<number> = (v): v is number => typeof v === 'number' && Number.isFinite(v);
const isBoolean: Check<boolean> = (v): v is boolean => typeof v === 'boolean';
const orNull =
  <T>(check: Check<T>): Check<T | null> =>
  (v): v is T | null =>
    v === null || check(v);
const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function field<T>(o: Record<string, unknown>, key: string, check: Check<T>, expected: string, what: string): T {
  const v = o[key];
  if (!check(v)) throw new TorchSetupError(`Expected ${what}.${key} to be ${expected}, but got ${JSON.stringify(v)}.`);
  return v;
}

function optional<T>(o: Record<string, unknown>, key: string, check: Check<T>, expected: string, what: string): T | undefined {
  return o[key] === undefined ? undefined : field(o, key, check, expected, what);
}

function record(v: unknown, what: string): Record<string, unknown> {
  if (!isRecord(v)) throw new TorchSetupError(`Expected ${what} to be an object, but got ${JSON.stringify(v)}.`);
  return v;
}

/** The `setup` of a bench-torch script's JSON; `what` names it in errors ("peers setup"). */
export function parseTorchSetup(v: unknown, what = 'setup'): TorchSetup {
  const o = record(v, what);
  const env = record(o.threadEnv, `${what}.threadEnv`);
  const blas = record(o.blas, `${what}.blas`);
  const mkldnn = record(o.mkldnn, `${what}.mkldnn`);
  const threadEnv: Record<string, string | null> = {};
  for (const key of Object.keys(env)) threadEnv[key] = field(env, key, orNull(isString), 'a string or null', `${what}.threadEnv`);
  const loaded = field(blas, 'loaded', (x): x is string[] => Array.isArray(x) && x.every(isString), 'an array of paths', `${what}.blas`);
  const openblasThreads = optional(blas, 'openblasThreads', isNumber, 'a number', `${what}.blas`);
  const openblasCore = optional(blas, 'openblasCore', isString, 'a string', `${what}.blas`);
  const openblasCoretypeEnv = optional(blas, 'openblasCoretypeEnv', orNull(isString), 'a string or null', `${what}.blas`);
  return {
    torch: field(o, 'torch', isString, 'a version string', what),
    device: field(o, 'device', isString, 'a string', what),
    threads: field(o, 'threads', isNumber, 'a number', what),
    interopThreads: field(o, 'interopThreads', isNumber, 'a number', what),
    threadEnv,
    blas: {
      buildInfo: field(blas, 'buildInfo', isString, 'a string', `${what}.blas`),
      loaded,
      openblas: field(blas, 'openblas', isBoolean, 'a boolean', `${what}.blas`),
      ...(openblasThreads === undefined ? {} : { openblasThreads }),
      ...(openblasCore === undefined ? {} : { openblasCore }),
      ...(openblasCoretypeEnv === undefined ? {} : { openblasCoretypeEnv }),
    },
    mkldnn: {
      available: field(mkldnn, 'available', isBoolean, 'a boolean', `${what}.mkldnn`),
      enabled: field(mkldnn, 'enabled', isBoolean, 'a boolean', `${what}.mkldnn`),
      convBackend: field(mkldnn, 'convBackend', orNull(isString), 'a string or null', `${what}.mkldnn`),
    },
    cpuCapability: field(o, 'cpuCapability', orNull(isString), 'a string or null', what),
    memoryFormat: field(o, 'memoryFormat', isString, 'a string', what),
    mallocKeepsFreedMemory: field(o, 'mallocKeepsFreedMemory', isBoolean, 'a boolean', what),
    optimizer: field(o, 'optimizer', isString, 'a string', what),
    data: field(o, 'data', isString, 'a string', what),
  };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/** One sentence for the benchmark document: threads, BLAS, oneDNN, memory format, malloc. */
export function describeTorchSetup(s: TorchSetup): string {
  const env = Object.entries(s.threadEnv)
    .map(([k, v]) => `${k}=${v ?? 'unset'}`)
    .join(', ');
  const blas = s.blas.openblas
    ? `OpenBLAS${s.blas.openblasThreads === undefined ? '' : ` on ${plural(s.blas.openblasThreads, 'thread')}`}${s.blas.openblasCore ? ` (${s.blas.openblasCore} kernels${s.blas.openblasCoretypeEnv ? `, OPENBLAS_CORETYPE=${s.blas.openblasCoretypeEnv}` : ''})` : ''}`
    : `**not OpenBLAS** (BLAS_INFO=${s.blas.buildInfo}; install libopenblas0-pthread for a fair peer)`;
  const onednn = !s.mkldnn.available ? 'no oneDNN' : !s.mkldnn.enabled ? 'oneDNN disabled' : `oneDNN convolutions (backend ${s.mkldnn.convBackend ?? 'unknown'})`;
  return (
    `Setup: torch ${s.torch} on ${s.device}, ${plural(s.threads, 'intra-op thread')} (${env}), ${blas}, ${onednn}, ` +
    `${s.memoryFormat} activations for the convolutional models, malloc ${s.mallocKeepsFreedMemory ? 'keeping freed memory (mallopt)' : 'at its defaults'}` +
    `${s.cpuCapability ? `, ATen kernels for ${s.cpuCapability}` : ''}; ${s.optimizer}; ${s.data}.`
  );
}
