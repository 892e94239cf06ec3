import { describe, expect, it } from 'vitest';
import { tf } from '../tf.ts';
import { use } from './testing.ts';

describe('Identity on wasm shares the buffer', () => {
  it('keeps a clone readable after the original is disposed, and the reverse', async () => {
    await use('wasm');
    const before = tf.memory().numDataBuffers;
    const a = tf.tensor1d([1, 2, 3]);
    const b = a.clone();
    expect(tf.memory().numDataBuffers).toBe(before + 1);
    a.dispose();
    expect(Array.from(b.dataSync())).toEqual([1, 2, 3]);
    const c = b.clone();
    b.dispose();
    expect(Array.from(c.dataSync())).toEqual([1, 2, 3]);
    c.dispose();
    expect(tf.memory().numDataBuffers).toBe(before);
  });

  it('keeps variables independent of the values they were assigned from', async () => {
    await use('wasm');
    const v = tf.variable(tf.tensor1d([1, 2]));
    const snapshot = v.clone();
    v.assign(tf.tensor1d([5, 6]));
    expect(Array.from(snapshot.dataSync())).toEqual([1, 2]);
    expect(Array.from(v.dataSync())).toEqual([5, 6]);
    tf.dispose([v, snapshot]);
  });
});

describe('Cast on wasm', () => {
  it('shares the buffer for a same-dtype cast and converts otherwise', async () => {
    await use('wasm');
    const before = tf.memory().numDataBuffers;
    const a = tf.tensor1d([1.5, -2.5, 0]);
    const same = tf.cast(a, 'float32');
    expect(tf.memory().numDataBuffers).toBe(before + 1);
    a.dispose();
    expect(Array.from(same.dataSync())).toEqual([1.5, -2.5, 0]);
    const asInt = tf.cast(same, 'int32');
    const asBool = tf.cast(same, 'bool');
    expect(asInt.dtype).toBe('int32');
    expect(Array.from(asInt.dataSync())).toEqual([1, -2, 0]);
    expect(Array.from(asBool.dataSync())).toEqual([1, 1, 0]);
    tf.dispose([same, asInt, asBool]);
    expect(tf.memory().numDataBuffers).toBe(before);
  });
});
