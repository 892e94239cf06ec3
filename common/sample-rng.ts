/**
 * A counter-based random function: the value for (seed, step, sample, element) is a hash of those
 * four integers, not the next draw of a stream. Any worker can compute any sample's numbers without
 * knowing what came before, so dropout masks do not depend on how a batch was sliced over workers,
 * nor on whether the run was resumed (the idea of Philox and Threefry, with a lighter hash).
 *
 * The mixer is lowbias32 (Chris Wellons' hash-prospector, public domain): two multiply-xorshift
 * rounds with a bias of about 0.17, well below what a dropout mask could notice.
 */

/** lowbias32: a bijective 32-bit integer hash. */
export function lowbias32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** The key of one sample of one step: every element of the sample derives from it. */
export function sampleKey(seed: number, step: number, sample: number): number {
  // Chained, not xored together, so that (step, sample) and (sample, step) differ.
  return lowbias32(lowbias32(lowbias32(seed ^ 0x9e3779b9) ^ step) ^ sample);
}

/** A float in [0, 1) with 32 random bits for element `element` of the sample with `key`. */
export function uniformAt(key: number, element: number): number {
  return lowbias32(key ^ lowbias32(element + 0x632be5ab)) / 4294967296;
}
