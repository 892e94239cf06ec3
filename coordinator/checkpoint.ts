/**
 * Checkpoints: the weights in tfjs LayersModel format (model-<step>.json + a weights file, loadable
 * by tf.loadLayersModel), the Adam moments, and the position in the data. Every file is written
 * atomically and durably (fsynced, and its folder fsynced, see common/atomic-write.ts), each under
 * a name of its own step, and `checkpoint.json` is written last: it is the commit point that names
 * the files of one consistent checkpoint, all already on disk, so a crash or a power loss at any
 * moment leaves the previous checkpoint usable. After the commit point, `model.json` is refreshed as a
 * copy of the new model file (for tf.loadLayersModel users; resuming does not read it) and files no
 * checkpoint names any more are removed.
 */
import { readFile, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { tf, tfc } from '../common/tf.ts';
import { buildModel, type ModelName } from '../common/models.ts';
import { weightLayout, assertLength } from '../common/weights.ts';
import { CheckpointError } from '../common/errors.ts';
import type { AdamState } from '../common/adam.ts';
import { floatsToBytes } from '../common/codec.ts';
import { writeFileAtomic } from '../common/atomic-write.ts';
import type { History } from './run-files.ts';

export const CHECKPOINT_DIR = 'checkpoint';
/** The checkpoint's commit point: written last, it names the files of one consistent checkpoint. */
export const CHECKPOINT_FILE = 'checkpoint.json';
const FORMAT = 'dtrain-checkpoint-1';

/** Where training stands: the next sample of the epoch, plus the epoch's running sums. */
export interface TrainingPosition {
  epoch: number; // 0-based epoch in progress
  sampleOffset: number; // samples of this epoch already trained on
  globalStep: number;
  epochLossSum: number;
  epochCorrect: number;
  epochSamples: number;
  epochSeconds: number;
}

export interface CheckpointState {
  format: string;
  model: ModelName;
  weightCount: number;
  position: TrainingPosition;
  adamStep: number;
  weightsVersion: number;
  files: { model: string; weights: string; optimizer: string };
  history: History;
  /** The config the run was started with; --resume refuses a different model or batch size. */
  config: Record<string, unknown>;
}

export interface Checkpoint {
  state: CheckpointState;
  weights: Float32Array;
  adam: AdamState;
}

/** tfjs's own serializer gives the topology and weight specs; we write the files ourselves. */
async function layersModelArtifacts(model: ModelName, weights: Float32Array) {
  const m = buildModel(model);
  const layout = weightLayout(m);
  assertLength('checkpoint weights', weights.length, layout.totalSize);
  tf.tidy(() => m.setWeights(layout.entries.map((e) => tf.tensor(weights.subarray(e.offset, e.offset + e.size), e.shape))));
  let artifacts: tfc.io.ModelArtifacts | undefined;
  await m.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
  }));
  m.dispose();
  return artifacts!;
}

/** How a checkpoint's files are written; tests substitute one that crashes after N writes. */
export type CheckpointWriter = (path: string, data: string | Uint8Array) => Promise<void>;

const durableWrite: CheckpointWriter = (path, data) => writeFileAtomic(path, data, { durable: true });

export async function saveCheckpoint(runDir: string, ckpt: Checkpoint, write: CheckpointWriter = durableWrite): Promise<string> {
  const dir = join(runDir, CHECKPOINT_DIR);
  const tag = String(ckpt.state.position.globalStep).padStart(8, '0');
  const files = { model: `model-${tag}.json`, weights: `weights-${tag}.bin`, optimizer: `optimizer-${tag}.bin` };
  const artifacts = await layersModelArtifacts(ckpt.state.model, ckpt.weights);
  const weightData = artifacts.weightData as ArrayBuffer;
  await write(join(dir, files.weights), new Uint8Array(weightData));
  const optimizer = new Float32Array(ckpt.adam.m.length * 2);
  optimizer.set(ckpt.adam.m, 0);
  optimizer.set(ckpt.adam.v, ckpt.adam.m.length);
  await write(join(dir, files.optimizer), floatsToBytes(optimizer));
  const modelJson = {
    format: 'layers-model',
    generatedBy: 'dtrain',
    convertedBy: null,
    modelTopology: artifacts.modelTopology,
    weightsManifest: [{ paths: [files.weights], weights: artifacts.weightSpecs }],
  };
  const modelText = JSON.stringify(modelJson);
  await write(join(dir, files.model), modelText);
  const state: CheckpointState = { ...ckpt.state, format: FORMAT, adamStep: ckpt.adam.step, files };
  await write(join(dir, CHECKPOINT_FILE), JSON.stringify(state, null, 2)); // the commit point
  await write(join(dir, 'model.json'), modelText);
  // Older files are no longer named by checkpoint.json.
  const named = new Set(Object.values(files));
  for (const f of await readdir(dir)) {
    if (/^(weights|optimizer|model)-\d+\.(bin|json)$/.test(f) && !named.has(f)) await unlink(join(dir, f)).catch(() => {});
  }
  return dir;
}

async function readBytes(path: string, expectedBytes: number): Promise<Uint8Array> {
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch (err) {
    throw new CheckpointError(`Cannot read checkpoint file ${path}: ${(err as Error).message}`, err);
  }
  if (data.byteLength !== expectedBytes) throw new CheckpointError(`Checkpoint file ${path} should hold ${expectedBytes} bytes, but holds ${data.byteLength}.`);
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

export async function loadCheckpoint(runDir: string, model: ModelName): Promise<Checkpoint | undefined> {
  const dir = join(runDir, CHECKPOINT_DIR);
  let raw: string;
  try {
    raw = await readFile(join(dir, CHECKPOINT_FILE), 'utf8');
  } catch {
    return undefined;
  }
  let state: CheckpointState;
  try {
    state = JSON.parse(raw) as CheckpointState;
  } catch (err) {
    throw new CheckpointError(`${join(dir, CHECKPOINT_FILE)} is not valid JSON: ${(err as Error).message}`, err);
  }
  if (state.format !== FORMAT) throw new CheckpointError(`${join(dir, CHECKPOINT_FILE)} has format "${state.format}", expected "${FORMAT}".`);
  if (state.model !== model) throw new CheckpointError(`The checkpoint in ${dir} is for model ${state.model}, but --model is ${model}. Use another --out folder, or the same model.`);
  const layout = weightLayout(buildModel(model));
  if (state.weightCount !== layout.totalSize) throw new CheckpointError(`The checkpoint holds ${state.weightCount} weights, but ${model} has ${layout.totalSize}.`);
  const weights = new Float32Array((await readBytes(join(dir, state.files.weights), layout.totalSize * 4)).buffer);
  const opt = new Float32Array((await readBytes(join(dir, state.files.optimizer), layout.trainableSize * 8)).buffer);
  return {
    state,
    weights,
    adam: { step: state.adamStep, m: opt.slice(0, layout.trainableSize), v: opt.slice(layout.trainableSize) },
  };
}
