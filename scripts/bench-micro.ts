/**
 * In-process timings of the coordinator's own work and of one step's messages: Adam, averaging,
 * msgpack encode and decode, a loopback WebSocket round trip, the hand-off to a compute thread,
 * and gathering a batch. Each call is
 * timed on its own after warm-up, and reported as median and p10–p90.
 */
import { MessageChannel } from 'node:worker_threads';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { Adam } from '../common/adam.ts';
import { aggregateResults, sliceSizes, StepAccumulator } from '../coordinator/aggregate.ts';
import { sliceNorm } from '../coordinator/result-check.ts';
import { installGradientPasses } from '../common/kernels/native/install-native.ts';
import { decodeCoordinatorMessage, decodeWorkerMessage, encode, floatsToBytes } from '../common/codec.ts';
import { FrameEncoder } from '../common/frame-encoder.ts';
import { hasBatchNorm } from '../worker/inline-compute.ts';
import { gatherImages } from '../common/data/split.ts';
import { IMAGE_BYTES } from '../common/data/types.ts';
import type { ResultMessage, TaskMessage } from '../common/protocol.ts';
import type { CoordinatorSection, MessageCosts, Quantiles } from './bench-report.ts';
import { quantiles } from './bench-stats.ts';

export interface MicroSettings {
  warmup: number;
  iterations: number;
}

/** Deterministic values in [-1, 1) (xorshift), so runs time the same arithmetic. */
function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2 ** 31 - 1;
  }
  return out;
}

function randomBytes(n: number, seed: number): Uint8Array {
  const f = randomFloats(n, seed);
  return Uint8Array.from(f, (x) => Math.floor((x + 1) * 128) & 255);
}

/** Microseconds per call of `fn`: `warmup` untimed calls, then `iterations` calls timed one by one. */
export function timeCalls(fn: () => void, s: MicroSettings): Quantiles {
  for (let i = 0; i < s.warmup; i++) fn();
  const us: number[] = [];
  for (let i = 0; i < s.iterations; i++) {
    const t0 = performance.now();
    fn();
    us.push((performance.now() - t0) * 1000);
  }
  return quantiles(us);
}

async function timeAsyncCalls(fn: () => Promise<void>, s: MicroSettings): Promise<Quantiles> {
  for (let i = 0; i < s.warmup; i++) await fn();
  const us: number[] = [];
  for (let i = 0; i < s.iterations; i++) {
    const t0 = performance.now();
    await fn();
    us.push((performance.now() - t0) * 1000);
  }
  return quantiles(us);
}

function resultMessage(count: number, gradient: Float32Array): ResultMessage {
  return { type: 'result', taskId: 1, count, lossSum: 1.5 * count, correct: 0, computeMs: 10, gradients: floatsToBytes(gradient) };
}

/** Adam over `parameters` weights, and averaging K results of that size for each K. */
export function coordinatorCosts(parameters: number, workerCounts: readonly number[], s: MicroSettings): CoordinatorSection {
  // As a coordinator runs them (runJob): native where the addon loads.
  installGradientPasses();
  const weights = randomFloats(parameters, 1);
  const gradient = randomFloats(parameters, 2).map((g) => g * 1e-2);
  const adam = new Adam(parameters);
  const adamUs = timeCalls(() => adam.apply(weights, gradient), s);
  const implementation = adam.runsNative ? 'native' : adam.kind;
  const messagePathUs = messagePathGradientWork(parameters, s);
  const m = new Float32Array(parameters);
  const v = new Float32Array(parameters);
  const memoryFloorUs = timeCalls(() => {
    for (let i = 0; i < parameters; i++) {
      const g = gradient[i];
      m[i] += g;
      v[i] += g;
      weights[i] -= g;
    }
  }, s);
  const averaging = workerCounts.map((k) => {
    const results = Array.from({ length: k }, (_, i) => resultMessage(32, randomFloats(parameters, 10 + i)));
    const us = timeCalls(() => void aggregateResults(results, parameters, 0), s);
    return { workers: k, parameters, us, perWorkerUs: us.median / k };
  });
  return { adam: { parameters, warmup: s.warmup, us: adamUs, memoryFloorUs, implementation }, averaging, messagePathUs };
}

/**
 * Everything the coordinator does over one result's gradient on the message path, one worker:
 * decoding the frame (the finiteness check), the result screen's Σ g², folding it into the sum,
 * the mean with Adam's guard, and Adam (coordinator/trainer.ts, resultChecks and applyResults).
 */
function messagePathGradientWork(parameters: number, s: MicroSettings): Quantiles {
  const frame = Buffer.from(encode(resultMessage(32, randomFloats(parameters, 9).map((g) => g * 1e-2))));
  const acc = new StepAccumulator(parameters, 0);
  const adam = new Adam(parameters);
  const weights = randomFloats(parameters, 1);
  return timeCalls(() => {
    const r = decodeWorkerMessage(frame, { gradientCount: parameters, statsCount: 0 }) as ResultMessage;
    sliceNorm(r);
    acc.reset(1);
    acc.add(0, r);
    const agg = acc.finish();
    if (agg.unsafeIndex < 0) adam.apply(weights, agg.gradient);
  }, s);
}

/** Round trips of `out` answered by `back` over a WebSocket on 127.0.0.1, raw bytes, no codec. */
async function wireRoundTrip(out: Uint8Array, back: Uint8Array, s: MicroSettings): Promise<Quantiles> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  await once(server, 'listening');
  server.on('connection', (socket) => socket.on('message', () => socket.send(back, { binary: true })));
  const client = new WebSocket(`ws://127.0.0.1:${(server.address() as AddressInfo).port}`, { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  try {
    await once(client, 'open');
    return await timeAsyncCalls(
      () =>
        new Promise<void>((resolve) => {
          client.once('message', () => resolve());
          client.send(out, { binary: true });
        }),
      s,
    );
  } finally {
    client.terminate();
    await new Promise((resolve) => server.close(resolve));
  }
}

/**
 * The message work of one step with K workers and `samplesPerStep` images, for a model with
 * `weightCount` weights of which `gradientCount` are trained. Sizes only; the values are random.
 */
export async function messageCosts(
  model: string,
  workers: number,
  samplesPerStep: number,
  weightCount: number,
  gradientCount: number,
  s: MicroSettings,
): Promise<MessageCosts> {
  const slice = sliceSizes(samplesPerStep, workers)[0];
  const weights = floatsToBytes(randomFloats(weightCount, 3));
  const task: TaskMessage = { type: 'task', taskId: 7, kind: 'train', weightsVersion: 3, weights, images: randomBytes(slice * IMAGE_BYTES, 4), labels: randomBytes(slice, 5).map((l) => l % 10) };
  const taskFrame = encode(task);
  const gradient = randomFloats(gradientCount, 6);
  const result = resultMessage(slice, gradient);
  const resultFrame = encode(result);
  const expect = { gradientCount, statsCount: 0, taskCount: slice };
  // Frames are encoded as the coordinator and the worker encode them: into buffers kept from frame
  // to frame (common/frame-encoder.ts), each released once sent. A fresh buffer per frame (plain
  // `encode`) costs ~1 ms every few frames here, a cost neither side pays.
  const taskFrames = new FrameEncoder();
  const resultFrames = new FrameEncoder();

  // The trainer gathers a step's images from the training set by shuffled index.
  const poolCount = Math.max(1000, 4 * samplesPerStep);
  const pool = { images: randomBytes(poolCount * IMAGE_BYTES, 7), labels: randomBytes(poolCount, 8), count: poolCount };
  const indices = Uint32Array.from({ length: samplesPerStep }, (_, i) => (i * 7919) % poolCount);

  // A worker's main thread posts the task to its compute thread (cloned) and gets the result
  // back (its gradient buffer transferred). A MessageChannel in one thread has the same copies.
  const { port1, port2 } = new MessageChannel();
  port2.on('message', () => {
    const r = resultMessage(slice, gradient.slice());
    port2.postMessage(r, [r.gradients!.buffer as ArrayBuffer]);
  });
  const handOff = () =>
    new Promise<void>((resolve) => {
      port1.once('message', () => resolve());
      port1.postMessage(task);
    });
  try {
    return {
      model,
      workers,
      samplesPerStep,
      encodeTaskUs: timeCalls(() => taskFrames.encode(task).release(), s),
      decodeTaskUs: timeCalls(() => void decodeCoordinatorMessage(taskFrame, weightCount), s),
      encodeResultUs: timeCalls(() => resultFrames.encode(result).release(), s),
      // A worker computes on its socket's thread unless the model has BatchNorm (worker/inline-compute.ts).
      computeThread: hasBatchNorm({ weightCount, trainableCount: gradientCount }),
      decodeResultUs: timeCalls(() => void decodeWorkerMessage(resultFrame, expect), s),
      handOffUs: await timeAsyncCalls(handOff, s),
      wireUs: await wireRoundTrip(taskFrame, resultFrame, s),
      gatherUs: timeCalls(() => void gatherImages(pool, indices), s),
    };
  } finally {
    port1.close();
    port2.close();
  }
}
