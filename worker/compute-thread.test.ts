import { afterEach, describe, expect, it } from 'vitest';
import { ComputeThread } from './compute-thread.ts';
import { PROTOCOL_VERSION, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel } from '../common/models.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';

const model = buildModel('lenet');
const layout = weightLayout(model);
model.dispose();
const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 't', model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: layout.totalSize };
/** A train task of 32 synthetic images (`seed` picks them) with weights from `weightSeed`. */
function task(taskId: number, seed: number, weightSeed: number): TaskMessage {
  const { images, labels } = generateSynthetic(Uint32Array.from({ length: 32 }, (_, i) => i + seed * 32), 'dev', 3);
  return { type: 'task', taskId, kind: 'train', weightsVersion: taskId, weights: floatsToBytes(initialWeights(layout, weightSeed)), images, labels };
}

describe('ComputeThread with its task arena (wasm)', { timeout: 60_000 }, () => {
  let thread: ComputeThread | undefined;
  afterEach(async () => {
    await thread?.terminate();
    thread = undefined;
  });

  async function started(): Promise<{ thread: ComputeThread; posted: TaskMessage[] }> {
    thread = new ComputeThread('wasm');
    await thread.started();
    await thread.welcome(welcome);
    const posted: TaskMessage[] = [];
    const worker = (thread as unknown as { thread: { postMessage(m: unknown): void } }).thread;
    const post = worker.postMessage.bind(worker);
    worker.postMessage = (m: unknown) => {
      posted.push(m as TaskMessage);
      post(m);
    };
    return { thread, posted };
  }

  it('gives the same gradient, bit for bit, for a task run again after another reused its arena', async () => {
    const { thread, posted } = await started();
    const a1 = await thread.run(task(1, 0, 1));
    const b = await thread.run(task(2, 1, 2));
    const a2 = await thread.run(task(3, 0, 1));
    expect(posted.every((m) => m.weights!.buffer instanceof SharedArrayBuffer)).toBe(true);
    expect(posted[2].images.buffer).toBe(posted[0].images.buffer);
    expect(Buffer.from(a2.gradients!).equals(Buffer.from(a1.gradients!))).toBe(true);
    expect(Buffer.from(b.gradients!).equals(Buffer.from(a1.gradients!))).toBe(false);
    expect(a2.lossSum).toBe(a1.lossSum);
  });

  it('clones a task posted while another is in flight, and both come back as when run alone', async () => {
    const { thread, posted } = await started();
    const alone = [await thread.run(task(1, 0, 1)), await thread.run(task(2, 1, 2))];
    posted.length = 0;
    const [first, second] = await Promise.all([thread.run(task(3, 0, 1)), thread.run(task(4, 1, 2))]);
    expect(posted[0].images.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(posted[1].images.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(Buffer.from(first.gradients!).equals(Buffer.from(alone[0].gradients!))).toBe(true);
    expect(Buffer.from(second.gradients!).equals(Buffer.from(alone[1].gradients!))).toBe(true);
  });

  it('with resultsReadAtOnce, gives a lone train task its gradients in shared memory, bit for bit those of a result of its own', async () => {
    const { thread } = await started();
    const own = await thread.run(task(1, 0, 1));
    thread.resultsReadAtOnce = true;
    const shared = await thread.run(task(2, 0, 1));
    expect(own.gradients!.buffer).toBeInstanceOf(ArrayBuffer);
    expect(shared.gradients!.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Buffer.from(shared.gradients!).equals(Buffer.from(own.gradients!))).toBe(true);
    // Two in flight: the second is not alone, and gets a result of its own.
    const [first, second] = await Promise.all([thread.run(task(3, 0, 1)), thread.run(task(4, 1, 2))]);
    expect(first.gradients!.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(second.gradients!.buffer).toBeInstanceOf(ArrayBuffer);
  });

  it('refuses a second task under the id of one in flight, and the first still comes back whole', async () => {
    const { thread, posted } = await started();
    const alone = await thread.run(task(1, 0, 1));
    posted.length = 0;
    const first = thread.run(task(7, 0, 1));
    await expect(thread.run(task(7, 1, 2))).rejects.toMatchObject({ code: 'DTRAIN_ERR_DUPLICATE_TASK' });
    expect(posted).toHaveLength(1);
    expect(Buffer.from((await first).gradients!).equals(Buffer.from(alone.gradients!))).toBe(true);
  });

  it('drops the late answer of an abandoned task: a new task under its id gets its own', async () => {
    const { thread } = await started();
    const expected = await thread.run(task(1, 1, 2));
    const old = thread.run(task(5, 0, 1));
    thread.abandon('connection closed');
    await expect(old).rejects.toMatchObject({ code: 'DTRAIN_ERR_WORKER_LOST' });
    // A restarted coordinator numbers its tasks from the start again.
    const fresh = await thread.run(task(5, 1, 2));
    expect(Buffer.from(fresh.gradients!).equals(Buffer.from(expected.gradients!))).toBe(true);
    expect(fresh.lossSum).toBe(expected.lossSum);
  });

  it('counts a task it abandoned while the thread still computes it: the next one does not take the arena from under it', async () => {
    const { thread, posted } = await started();
    thread.resultsReadAtOnce = true;
    const alone = await thread.run(task(1, 0, 1));
    const aloneBytes = Buffer.from(alone.gradients!);
    posted.length = 0;
    const abandoned = thread.run(task(2, 0, 1));
    thread.abandon('connection closed');
    await expect(abandoned).rejects.toMatchObject({ code: 'DTRAIN_ERR_WORKER_LOST' });
    const next = await thread.run(task(3, 1, 2));
    // Task 2 was still in the thread: task 3 was cloned, with a result of its own.
    expect(posted[0].images.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(posted[1].images.buffer).not.toBeInstanceOf(SharedArrayBuffer);
    expect(next.gradients!.buffer).toBeInstanceOf(ArrayBuffer);
    expect(Buffer.from(next.gradients!).equals(aloneBytes)).toBe(false);
    // Once the thread has answered everything, a lone task takes the arena again.
    const again = await thread.run(task(4, 0, 1));
    expect(posted[2].images.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(Buffer.from(again.gradients!).equals(aloneBytes)).toBe(true);
  });
});
