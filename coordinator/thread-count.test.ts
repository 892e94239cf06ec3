import { describe, expect, it } from 'vitest';
import { defaultThreadCount, MIN_FLOPS_PER_PARAMETER_IN_RUNS, MIN_FLOPS_PER_THREAD, modelArithmetic, parameterCount, trainingFlopsPerImage } from './thread-count.ts';

describe('trainingFlopsPerImage', () => {
  it('counts three passes over each Dense layer but no input gradient for the first (mlp)', () => {
    // multiply-adds: 3072·128 = 393,216; 128·64 = 8,192; 64·10 = 640; total 402,048
    // 2 · (3 · 402,048 − 393,216) = 1,625,856
    expect(trainingFlopsPerImage('mlp')).toBe(1_625_856);
  });

  it('counts a convolution by its output positions times its kernel (lenet)', () => {
    // conv 6@5x5 on 32x32x3, valid: 28·28·(5·5·3·6) = 352,800; conv 16@5x5 on 14x14x6: 10·10·(5·5·6·16) = 240,000
    // dense 400·120 = 48,000; 120·84 = 10,080; 84·10 = 840; total 651,720
    // 2 · (3 · 651,720 − 352,800) = 3,204,720
    expect(trainingFlopsPerImage('lenet')).toBe(3_204_720);
  });
});

describe('defaultThreadCount', () => {
  it('keeps mlp and lenet on one thread at batch 32, where sharing a step was measured slower, and gives lenet two at batch 64', () => {
    expect(defaultThreadCount('mlp', 32, undefined, 2).threads).toBe(1);
    expect(defaultThreadCount('lenet', 32, undefined, 2).threads).toBe(1);
    // The reason names what two threads would each get, not only the whole step's 103 MFLOP.
    expect(defaultThreadCount('lenet', 32, undefined, 2).reason).toMatch(/is 103 MFLOP, 51 per thread on 2, and a thread needs at least 64 MFLOP/);
    expect(defaultThreadCount('lenet', 64, undefined, 2).threads).toBe(2);
    expect(defaultThreadCount('lenet', 16, undefined, 2).threads).toBe(1);
  });

  it('uses every core for the CNNs at batch 32 on two cores', () => {
    expect(defaultThreadCount('cnn-dropout', 32, undefined, 2).threads).toBe(2);
    expect(defaultThreadCount('cnn-bn', 32, undefined, 2).threads).toBe(2);
  });

  it('never starts more threads than cores, nor more than the arithmetic can keep busy', () => {
    const many = defaultThreadCount('cnn-dropout', 32, undefined, 64);
    expect(many.threads).toBe(Math.floor((trainingFlopsPerImage('cnn-dropout') * 32) / MIN_FLOPS_PER_THREAD));
    expect(many.threads).toBeLessThan(64);
    expect(defaultThreadCount('lenet', 4096, undefined, 4).threads).toBe(4);
  });

  it('uses every core when each thread has its own batch (--batch-per-worker)', () => {
    const c = defaultThreadCount('mlp', 32, 32, 2);
    expect(c.threads).toBe(2);
    expect(c.reason).toMatch(/batch-per-worker/);
  });

  it('says why in one line, naming the override', () => {
    expect(defaultThreadCount('mlp', 32, undefined, 2).reason).toMatch(/1 of 2 cores.*MFLOP.*--workers/);
  });
});

describe('defaultThreadCount where the threads drive runs of steps', () => {
  it('counts every parameter a thread reads', () => {
    expect(parameterCount('mlp')).toBe(402_250);
    expect(parameterCount('lenet')).toBe(62_006);
  });

  it('gives both numbers from one build of the model', () => {
    expect(modelArithmetic('lenet')).toEqual({ parameters: parameterCount('lenet'), flopsPerImage: trainingFlopsPerImage('lenet') });
  });

  it('gives lenet two threads from batch 16 up, where two were measured faster in runs', () => {
    expect(defaultThreadCount('lenet', 32, undefined, 2, true).threads).toBe(2);
    // 3,204,720 · 16 / 2 / 62,006 = 413 FLOP per parameter per thread
    expect(defaultThreadCount('lenet', 16, undefined, 2, true).threads).toBe(2);
    expect(defaultThreadCount('lenet', 8, undefined, 2, true).threads).toBe(1);
  });

  it('keeps the mlp on one thread up to batch 128, where two were slower or tied', () => {
    for (const batch of [32, 64, 128]) expect(defaultThreadCount('mlp', batch, undefined, 2, true).threads).toBe(1);
    // 1,625,856 · 256 / 2 / 402,250 = 517 FLOP per parameter per thread
    expect(defaultThreadCount('mlp', 256, undefined, 2, true).threads).toBe(2);
  });

  it('caps threads by arithmetic per parameter on many cores', () => {
    const t = defaultThreadCount('lenet', 32, undefined, 64, true).threads;
    expect(t).toBe(Math.floor((trainingFlopsPerImage('lenet') * 32) / (MIN_FLOPS_PER_PARAMETER_IN_RUNS * parameterCount('lenet'))));
    expect(t).toBeGreaterThan(2);
    expect(t).toBeLessThan(64);
  });

  it('says the cut-off per parameter in its reason', () => {
    // 1,625,856 · 32 / 2 / 402,250 = 65
    expect(defaultThreadCount('mlp', 32, undefined, 2, true).reason).toMatch(/1 of 2 cores: a mlp step of 32 images is 52 MFLOP, 65 FLOP per parameter per thread on 2, and a thread of a run of steps needs at least 300 to gain more than it costs \(--workers overrides\)/);
  });
});
