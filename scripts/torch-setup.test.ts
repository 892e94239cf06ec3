import { describe, expect, it } from 'vitest';
import { describeTorchSetup, parseTorchSetup, TorchSetupError } from './torch-setup.ts';

// As `/usr/bin/python3 scripts/bench-torch.py --quick --models lenet` printed it on 2026-11-30, before
// --openblas-core (the environment's OPENBLAS_CORETYPE=Haswell in force).
const printed = () => ({
  torch: '1.13.0a0',
  device: 'cpu',
  threads: 1,
  interopThreads: 1,
  threadEnv: { OMP_NUM_THREADS: '1', OPENBLAS_NUM_THREADS: '1', MKL_NUM_THREADS: '1' },
  blas: {
    buildInfo: 'generic',
    loaded: ['/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3', '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so'],
    openblas: true,
    openblasThreads: 1,
    openblasCore: 'Haswell',
    openblasCoretypeEnv: 'Haswell',
  },
  mkldnn: { available: true, enabled: true, convBackend: 'Mkldnn' },
  cpuCapability: 'AVX2',
  memoryFormat: 'channels-last',
  mallocKeepsFreedMemory: true,
  optimizer: 'Adam(lr=0.001), torch defaults',
  data: 'uint8 pool of 2048 images, converted every step',
});

// As `/usr/bin/python3 scripts/bench-torch.py --quick --models mlp` printed its blas on 2026-11-30 (12:38 UTC),
// --openblas-core auto: the check passed, and OpenBLAS picked Cooperlake without the variables.
const unsetChoice = () => ({
  mode: 'auto',
  envFound: { OPENBLAS_CORETYPE: 'Haswell', OPENBLAS_L2_SIZE: '512' },
  envUnset: true,
  checkedCore: 'Cooperlake',
  keptCore: 'Haswell',
  gemmMaxRelError: 3.2573707684342754e-7,
  forwardBackwardMaxRelDiff: 6.950781016758533e-7,
  fallback: null,
});
const withChoice = (coreChoice: unknown, openblasCore: string, openblasCoretypeEnv: string | null) => ({
  ...printed(),
  blas: { ...printed().blas, openblasCore, openblasCoretypeEnv, coreChoice },
});

describe('parseTorchSetup', () => {
  it('reads the setup bench-torch.py prints, field for field', () => {
    expect(parseTorchSetup(printed())).toEqual(printed());
  });

  it('reads the OpenBLAS kernel choice (--openblas-core), field for field', () => {
    expect(parseTorchSetup(withChoice(unsetChoice(), 'Cooperlake', null))).toEqual(withChoice(unsetChoice(), 'Cooperlake', null));
  });

  it.each([
    ['an unknown mode', { ...unsetChoice(), mode: 'fast' }, 'setup.blas.coreChoice.mode to be "auto" or "env", but got "fast"'],
    ['a GEMM error as a string', { ...unsetChoice(), gemmMaxRelError: '3e-7' }, 'setup.blas.coreChoice.gemmMaxRelError to be a number or null, but got "3e-7"'],
    ['a missing fallback', { ...unsetChoice(), fallback: undefined }, 'setup.blas.coreChoice.fallback to be a string or null, but got undefined'],
    ['a variable set to a number', { ...unsetChoice(), envFound: { OPENBLAS_L2_SIZE: 512 } }, 'setup.blas.coreChoice.envFound.OPENBLAS_L2_SIZE to be a string or null, but got 512'],
    ['a choice that is not an object', 'auto', 'setup.blas.coreChoice to be an object, but got "auto"'],
  ])('rejects a kernel choice with %s', (_name, choice, message) => {
    expect(() => parseTorchSetup(withChoice(choice, 'Cooperlake', null))).toThrow(message);
  });

  it('accepts a setup without OpenBLAS details (no OpenBLAS loaded) and unset thread variables', () => {
    const s = { ...printed(), threadEnv: { OMP_NUM_THREADS: null }, blas: { buildInfo: 'generic', loaded: [], openblas: false } };
    const parsed = parseTorchSetup(s);
    expect(parsed.blas).toEqual({ buildInfo: 'generic', loaded: [], openblas: false });
    expect(parsed.threadEnv).toEqual({ OMP_NUM_THREADS: null });
  });

  it.each([
    ['a missing field', { ...printed(), memoryFormat: undefined }, 'setup.memoryFormat to be a string, but got undefined'],
    ['a thread count as a string', { ...printed(), threads: '1' }, 'setup.threads to be a number, but got "1"'],
    ['a BLAS thread count as a string', { ...printed(), blas: { ...printed().blas, openblasThreads: 'two' } }, 'setup.blas.openblasThreads to be a number, but got "two"'],
    ['a library list that is not a list', { ...printed(), blas: { ...printed().blas, loaded: 'libblas.so.3' } }, 'setup.blas.loaded to be an array of paths'],
    ['no mkldnn object', { ...printed(), mkldnn: null }, 'setup.mkldnn to be an object, but got null'],
  ])('rejects %s, naming what it expected and what arrived', (_name, value, message) => {
    expect(() => parseTorchSetup(value)).toThrow(TorchSetupError);
    expect(() => parseTorchSetup(value)).toThrow(message);
  });

  it('rejects a non-object with the stable code', () => {
    try {
      parseTorchSetup([], 'peers setup');
      expect.unreachable();
    } catch (e) {
      expect((e as TorchSetupError).code).toBe('DTRAIN_ERR_BENCH_TORCH_SETUP');
      expect((e as Error).message).toBe('Expected peers setup to be an object, but got [].');
    }
  });
});

describe('describeTorchSetup', () => {
  it('states threads, the BLAS and its threads, oneDNN, the memory format and malloc', () => {
    expect(describeTorchSetup(parseTorchSetup(printed()))).toBe(
      'Setup: torch 1.13.0a0 on cpu, 1 intra-op thread (OMP_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1, MKL_NUM_THREADS=1), ' +
        'OpenBLAS on 1 thread (Haswell kernels, OPENBLAS_CORETYPE=Haswell), oneDNN convolutions (backend Mkldnn), ' +
        'channels-last activations for the convolutional models, malloc keeping freed memory (mallopt), ATen kernels for AVX2; ' +
        'Adam(lr=0.001), torch defaults; uint8 pool of 2048 images, converted every step.',
    );
  });

  it('states the kernels OpenBLAS ran once the variables were unset, and the check behind it', () => {
    expect(describeTorchSetup(parseTorchSetup(withChoice(unsetChoice(), 'Cooperlake', null)))).toContain(
      'OpenBLAS on 1 thread (Cooperlake kernels: OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE=512 unset for the peer after a check in child processes, ' +
        "float32 GEMMs within 3.3e-7 of float64 and lenet's and the mlp's forward/backward within 7.0e-7 of Haswell's), oneDNN",
    );
  });

  it('says why the variables were kept when the check failed', () => {
    const failed = { ...unsetChoice(), envUnset: false, checkedCore: null, gemmMaxRelError: null, forwardBackwardMaxRelDiff: null, fallback: 'with the variables unset, the check process was killed by signal 11' };
    expect(describeTorchSetup(parseTorchSetup(withChoice(failed, 'Haswell', 'Haswell')))).toContain(
      'OpenBLAS on 1 thread (Haswell kernels, OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE=512 kept: with the variables unset, the check process was killed by signal 11), oneDNN',
    );
  });

  it('says when --openblas-core env kept the variables', () => {
    const kept = { ...unsetChoice(), mode: 'env', envUnset: false, checkedCore: null, keptCore: null, gemmMaxRelError: null, forwardBackwardMaxRelDiff: null };
    expect(describeTorchSetup(parseTorchSetup(withChoice(kept, 'Haswell', 'Haswell')))).toContain(
      'OpenBLAS on 1 thread (Haswell kernels, OPENBLAS_CORETYPE=Haswell and OPENBLAS_L2_SIZE=512 kept (--openblas-core env)), oneDNN',
    );
  });

  it('flags a peer without OpenBLAS, with oneDNN off and malloc at its defaults', () => {
    const s = parseTorchSetup({ ...printed(), threads: 2, blas: { buildInfo: 'generic', loaded: [], openblas: false }, mkldnn: { available: true, enabled: false, convBackend: null }, mallocKeepsFreedMemory: false });
    const text = describeTorchSetup(s);
    expect(text).toContain('2 intra-op threads');
    expect(text).toContain('**not OpenBLAS** (BLAS_INFO=generic; install libopenblas0-pthread for a fair peer)');
    expect(text).toContain('oneDNN disabled');
    expect(text).toContain('malloc at its defaults');
  });
});
