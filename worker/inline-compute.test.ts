import { afterEach, describe, expect, it } from 'vitest';
import { InlineCompute, hasBatchNorm } from './inline-compute.ts';
import { ComputeThread } from './compute-thread.ts';
import { PROTOCOL_VERSION, type ResultMessage, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';
import { floatsToBytes } from '../common/codec.ts';
import { weightLayout, initialWeights } from '../common/weights.ts';
import { buildModel, type ModelName } from '../common/models.ts';
import { generateSynthetic } from '../common/data/synthetic.ts';

function layoutOf(name: ModelName) {
  const model = buildModel(name);
  const layout = weightLayout(model);
  model.dispose();
  return layout;
}
const lenet = layoutOf('lenet');
const welcome: WelcomeMessage = { type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: 't', model: 'lenet', preprocessing: { kind: 'scale' }, weightCount: lenet.totalSize, trainableCount: lenet.trainableSize };

/** `count` synthetic images (`seed` picks them); weights from `weightSeed` unless `withWeights` is false. */
function task(taskId: number, seed: number, weightSeed: number, kind: 'train' | 'eval' = 'train', count = 32, withWeights = true): TaskMessage {
  const { images, labels } = generateSynthetic(Uint32Array.from({ length: count }, (_, i) => i + seed * count), 'dev', 3);
  const t: TaskMessage = { type: 'task', taskId, kind, weightsVersion: weightSeed, images, labels };
  if (withWeights) t.weights = floatsToBytes(initialWeights(lenet, weightSeed));
  return t;
}

const same = (a: ResultMessage, b: ResultMessage) => {
  expect(a.lossSum).toBe(b.lossSum);
  expect(a.correct).toBe(b.correct);
  expect(Buffer.from(a.gradients!).equals(Buffer.from(b.gradients!))).toBe(true);
};

describe('InlineCompute (wasm)', { timeout: 60_000 }, () => {
  const open: { terminate(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const c of open.splice(0)) await c.terminate();
  });

  async function inline(options: ConstructorParameters<typeof InlineCompute>[1] = {}, msg = welcome): Promise<InlineCompute> {
    const c = new InlineCompute('wasm', options);
    open.push(c);
    await c.started();
    await c.welcome(msg);
    return c;
  }

  async function reference(tasks: TaskMessage[]): Promise<ResultMessage[]> {
    const thread = new ComputeThread('wasm');
    open.push(thread);
    await thread.started();
    await thread.welcome(welcome);
    const out: ResultMessage[] = [];
    for (const t of tasks) out.push(await thread.run(t));
    return out;
  }

  it('computes on this thread what a compute thread computes, bit for bit, results read at once in reused memory', async () => {
    const tasks = [task(1, 0, 1), task(2, 1, 2), task(3, 2, 2, 'train', 32, false)];
    const expected = await reference(tasks);
    const c = await inline();
    expect(c.runsOn).toBe('inline');
    c.resultsReadAtOnce = true;
    for (let i = 0; i < tasks.length; i++) {
      const r = await c.run(tasks[i]);
      expect(r.gradients!.buffer).toBeInstanceOf(SharedArrayBuffer);
      same(r, expected[i]);
    }
  });

  it('evaluates in chunks, with event-loop turns between them, to the result of one pass', async () => {
    const evalTask = task(5, 3, 1, 'eval', 600);
    const [expected] = await reference([evalTask]);
    const c = await inline({ evalChunk: 100 });
    let turns = 0;
    const ticker = setInterval(() => turns++, 0);
    const r = await c.run(evalTask);
    clearInterval(ticker);
    expect(r.count).toBe(600);
    expect(r.correct).toBe(expected.correct);
    expect(Buffer.from(r.predictions!).equals(Buffer.from(expected.predictions!))).toBe(true);
    expect(r.lossSum).toBeCloseTo(expected.lossSum, 2);
    // Six chunks, five turns between them: the timer ran in at least some of them.
    expect(turns).toBeGreaterThanOrEqual(2);
  });

  it('moves a model with BatchNorm statistics to a compute thread at its welcome', async () => {
    const cnnBn = layoutOf('cnn-bn');
    const bnWelcome: WelcomeMessage = { ...welcome, model: 'cnn-bn', weightCount: cnnBn.totalSize, trainableCount: cnnBn.trainableSize };
    expect(hasBatchNorm(bnWelcome)).toBe(true);
    expect(hasBatchNorm(welcome)).toBe(false);
    const moved: string[] = [];
    const c = new InlineCompute('wasm');
    open.push(c);
    c.onMoved = (reason) => moved.push(reason);
    await c.started();
    expect(await c.welcome(bnWelcome)).toBe('wasm');
    expect(c.runsOn).toBe('thread');
    expect(moved).toEqual(['cnn-bn synchronizes BatchNorm mid-step']);
    // Back to a model without: on this thread again.
    await c.welcome(welcome);
    expect(c.runsOn).toBe('inline');
  });

  it('moves to a compute thread after a long step, which takes over with the weights the coordinator sent once', async () => {
    const tasks = [task(1, 0, 1), task(2, 1, 1, 'train', 32, false), task(3, 2, 2)];
    const expected = await reference(tasks);
    const moved: string[] = [];
    const c = await inline({ longStepMs: 0 });
    c.onMoved = (reason) => moved.push(reason);
    same(await c.run(tasks[0]), expected[0]);
    // Same weights version, no weights in the task: the thread gets the ones task 1 brought.
    same(await c.run(tasks[1]), expected[1]);
    expect(c.runsOn).toBe('thread');
    expect(moved).toHaveLength(1);
    expect(moved[0]).toMatch(/^a step computed for \d+ ms, over 0 ms/);
    same(await c.run(tasks[2]), expected[2]);
  });

  it('keeps a model whose steps were long in the thread for later welcomes, and a move counts only for its own welcome', async () => {
    const mlp = layoutOf('mlp');
    const mlpWelcome: WelcomeMessage = { ...welcome, model: 'mlp', preprocessing: { kind: 'scale' }, weightCount: mlp.totalSize, trainableCount: mlp.trainableSize };
    const moved: string[] = [];
    const c = await inline({ longStepMs: 0 });
    c.onMoved = (reason) => moved.push(reason);
    await c.run(task(1, 0, 1));
    // A welcome for another model while lenet moves to the thread: the move must not take its tasks.
    expect(await c.welcome(mlpWelcome)).toBe('wasm');
    expect(c.runsOn).toBe('inline');
    expect(moved).toEqual([]);
    const mlpTask: TaskMessage = { ...task(2, 0, 1), weights: floatsToBytes(initialWeights(mlp, 1)) };
    expect((await c.run(mlpTask)).gradients!.byteLength).toBe(mlp.trainableSize * 4);
    // lenet's steps proved long here: its next welcome goes to the thread at once.
    await c.welcome(welcome);
    expect(c.runsOn).toBe('thread');
    expect(moved).toHaveLength(1);
    expect(moved[0]).toMatch(/^lenet's steps are long: a step computed for/);
  });

  it('never answers a new task with the result of an abandoned one of the same id', async () => {
    const [expected] = await reference([task(1, 1, 2)]);
    const c = await inline({ evalChunk: 100 });
    // Abandoned while it runs (between two chunks), not before it starts.
    const session = (c as unknown as { session: { run(t: TaskMessage): Promise<ResultMessage> } }).session;
    const run = session.run.bind(session);
    let chunkStarted!: () => void;
    const started = new Promise<void>((resolve) => (chunkStarted = resolve));
    session.run = (t) => {
      chunkStarted();
      return run(t);
    };
    const old = c.run(task(5, 0, 1, 'eval', 600));
    await started;
    c.abandon('connection closed');
    await expect(old).rejects.toMatchObject({ code: 'DTRAIN_ERR_WORKER_LOST' });
    // A new connection's coordinator numbers its tasks from the start again.
    same(await c.run(task(5, 1, 2)), expected);
  });

  it('refuses a second task under the id of one in flight, and fails pending tasks when abandoned', async () => {
    const c = await inline();
    const [expected] = await reference([task(9, 0, 1)]);
    const first = c.run(task(7, 0, 1));
    await expect(c.run(task(7, 1, 2))).rejects.toMatchObject({ code: 'DTRAIN_ERR_DUPLICATE_TASK' });
    same(await first, expected);
    const queued = [c.run(task(10, 0, 1)), c.run(task(11, 1, 1, 'train', 32, false))];
    c.abandon('connection closed');
    for (const q of queued) await expect(q).rejects.toMatchObject({ code: 'DTRAIN_ERR_WORKER_LOST' });
    same(await c.run(task(12, 0, 1)), expected);
  });
});
