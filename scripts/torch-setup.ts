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
    /** --openblas-core: whether OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE were unset, and the check behind it. */
    coreChoice?: OpenblasCoreChoice;
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

/** What scripts/bench-torch-openblas.py's choose() decided before torch loaded. */
export interface OpenblasCoreChoice {
  /** "auto": unset once checked, else keep; "env": keep. */
  mode: string;
  /** OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE as the environment set them (null: unset). */
  envFound: Record<string, string | null>;
  envUnset: boolean;
  /** The kernels OpenBLAS named in the check's children, without and with the variables. */
  checkedCore: string | null;
  keptCore: string | null;
  /** Float32 GEMMs' largest normwise relative error against float64, without the variables. */
  gemmMaxRelError: number | null;
  /** lenet's and the mlp's logits, loss and gradients: largest relative difference, unset against kept. */
  forwardBackwardMaxRelDiff: number | null;
  /** Why the variables were kept although mode was "auto"; null when they were not. */
  fallback: string | null;
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
  const coreChoice = blas.coreChoice === undefined ? undefined : parseCoreChoice(blas.coreChoice, `${what}.blas.coreChoice`);
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
      ...(coreChoice === undefined ? {} : { coreChoice }),
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

function parseCoreChoice(v: unknown, what: string): OpenblasCoreChoice {
  const o = record(v, what);
  const env = record(o.envFound, `${what}.envFound`);
  const envFound: Record<string, string | null> = {};
  for (const key of Object.keys(env)) envFound[key] = field(env, key, orNull(isString), 'a string or null', `${what}.envFound`);
  return {
    mode: field(o, 'mode', (x): x is string => x === 'auto' || x === 'env', '"auto" or "env"', what),
    envFound,
    envUnset: field(o, 'envUnset', isBoolean, 'a boolean', what),
    checkedCore: field(o, 'checkedCore', orNull(isString), 'a string or null', what),
    keptCore: field(o, 'keptCore', orNull(isString), 'a string or null', what),
    gemmMaxRelError: field(o, 'gemmMaxRelError', orNull(isNumber), 'a number or null', what),
    forwardBackwardMaxRelDiff: field(o, 'forwardBackwardMaxRelDiff', orNull(isNumber), 'a number or null', what),
    fallback: field(o, 'fallback', orNull(isString), 'a string or null', what),
  };
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

const exp = (x: number | null) => (x === null ? 'unknown' : x.toExponential(1));

/** The kernels OpenBLAS ran, and whether the peer unset the environment's choice (and what it checked). */
function describeKernels(blas: TorchSetup['blas']): string {
  const c = blas.coreChoice;
  const set = c
    ? Object.entries(c.envFound)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => `${k}=${v}`)
        .join(' and ')
    : '';
  const kernels = `${blas.openblasCore} kernels`;
  if (c?.envUnset) {
    return (
      `${kernels}: ${set} unset for the peer after a check in child processes, float32 GEMMs within ${exp(c.gemmMaxRelError)} of float64 ` +
      `and lenet's and the mlp's forward/backward within ${exp(c.forwardBackwardMaxRelDiff)} of ${c.keptCore ?? 'the kept kernels'}'s`
    );
  }
  if (c?.fallback) return `${kernels}, ${set} kept: ${c.fallback}`;
  if (c?.mode === 'env' && set) return `${kernels}, ${set} kept (--openblas-core env)`;
  return `${kernels}${blas.openblasCoretypeEnv ? `, OPENBLAS_CORETYPE=${blas.openblasCoretypeEnv}` : ''}`;
}

/** One sentence for the benchmark document: threads, BLAS, oneDNN, memory format, malloc. */
export function describeTorchSetup(s: TorchSetup): string {
  const env = Object.entries(s.threadEnv)
    .map(([k, v]) => `${k}=${v ?? 'unset'}`)
    .join(', ');
  const blas = s.blas.openblas
    ? `OpenBLAS${s.blas.openblasThreads === undefined ? '' : ` on ${plural(s.blas.openblasThreads, 'thread')}`}${s.blas.openblasCore ? ` (${describeKernels(s.blas)})` : ''}`
    : `**not OpenBLAS** (BLAS_INFO=${s.blas.buildInfo}; install libopenblas0-pthread for a fair peer)`;
  const onednn = !s.mkldnn.available ? 'no oneDNN' : !s.mkldnn.enabled ? 'oneDNN disabled' : `oneDNN convolutions (backend ${s.mkldnn.convBackend ?? 'unknown'})`;
  return (
    `Setup: torch ${s.torch} on ${s.device}, ${plural(s.threads, 'intra-op thread')} (${env}), ${blas}, ${onednn}, ` +
    `${s.memoryFormat} activations for the convolutional models, malloc ${s.mallocKeepsFreedMemory ? 'keeping freed memory (mallopt)' : 'at its defaults'}` +
    `${s.cpuCapability ? `, ATen kernels for ${s.cpuCapability}` : ''}; ${s.optimizer}; ${s.data}.`
  );
}
