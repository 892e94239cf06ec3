/**
 * One WebSocket peer on the coordinator, as an object with one explicit stage (as ws's `readyState`):
 *
 *   AWAITING_HELLO → WELCOMING → READY → CLOSING → CLOSED
 *
 * The peer has already been authenticated during the HTTP upgrade (see ws-server.ts). It must say
 * hello (protocol version and name) within the handshake timeout; it is then welcomed, and must
 * report ready (its model built) within the ready timeout, when it joins the membership. Every way a
 * connection ends goes through `end()`, once:
 *
 *  - **leave**: the peer went away on its own (its socket closed);
 *  - **evict**: we ended it because it misbehaved (a bad frame, no heartbeat, a stage timeout, a
 *    rejected result), with a close code saying why;
 *  - **close**: we end it politely because the job is over or shutting down.
 *
 * `close()` sends a close frame and waits a moment for the peer's answer; `terminate()` cuts the
 * socket now. Frames that arrive once the connection is closing (a result computed before the peer
 * read our close frame) are dropped quietly: they are not bad frames.
 */
import type { WebSocket, RawData } from 'ws';
import type { Logger } from '../common/logger.ts';
import type { NetLimits } from '../common/config.ts';
import { decodeWorkerMessage, encode, float64ToBytes, FrameError, FRAME_ERRORS, taskForWire, type ResultExpectations } from '../common/codec.ts';
import type { WireDtype } from '../common/wire-dtype.ts';
import { CLOSE_CODES, PROTOCOL_VERSION, type BnSumsMessage, type BnTotalsMessage, type ResultMessage, type TaskMessage, type WelcomeMessage, type WorkerMessage } from '../common/protocol.ts';
import { Heartbeat } from '../common/heartbeat.ts';
import { FrameEncoder } from '../common/frame-encoder.ts';
import { WorkerLostError } from '../worker/compute-thread.ts';
import type { LeaveKind, Membership, WorkerHandle } from './membership.ts';
import { WORKER_EVICTED } from './scheduler.ts';
import { DtrainError } from '../common/errors.ts';
import { bnRounds } from './bn-rounds.ts';
import { BN_SYNC_ABORTED, BnSyncAbortedError } from '../common/bn-sync-errors.ts';

export const Stage = {
  AWAITING_HELLO: 'awaiting_hello',
  WELCOMING: 'welcoming',
  READY: 'ready',
  CLOSING: 'closing',
  CLOSED: 'closed',
} as const;
export type Stage = (typeof Stage)[keyof typeof Stage];

/** A hello is a few hundred bytes; anything larger is refused before it is decoded. */
export const HELLO_MAX_BYTES = 8 * 1024;
/** How long a peer has to answer our close frame before its socket is cut. */
const CLOSE_GRACE_MS = 1000;
/** Task frames, weights included, in buffers reused once sent: one per connection in flight each step. */
const taskFrames = new FrameEncoder(8);

export interface ConnectionContext {
  membership: Membership;
  welcome: Omit<WelcomeMessage, 'workerId'>;
  expect: Omit<ResultExpectations, 'taskCount'>;
  limits: NetLimits;
  /** The largest frame the server accepts once the peer is welcomed, for the error message. */
  maxPayload: number;
  /** Called when the hello is accepted, before the welcome is sent (to raise the frame limit). */
  onHello?(): void;
  /** Called for every refused frame or handshake of this peer, for metrics. */
  onRejected?(event: string, code: string, joined: boolean): void;
  /** Called once, when the connection has ended, with how it ended. */
  onEnded?(conn: Connection, ending: Ending): void;
}

/** How a connection ended: `evicted` endings count against the peer's address (see admission.ts). */
export interface Ending {
  kind: LeaveKind | 'closed';
  code: string;
  closeCode: number;
  reason: string;
}

interface Pending {
  count: number;
  kind: TaskMessage['kind'];
  resolve(r: ResultMessage): void;
  reject(e: Error): void;
}

/** A close reason must be at most 123 bytes of UTF-8: keep it ASCII and short, and never throw. */
export function safeClose(socket: WebSocket, code: number, reason: string): void {
  if (socket.readyState !== socket.OPEN && socket.readyState !== socket.CONNECTING) return;
  try {
    socket.close(code, reason.replace(/[^\x20-\x7e]/g, '?').slice(0, 120));
  } catch {
    socket.terminate();
  }
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  return data;
}

/** A worker's pending tasks fail with this when it is evicted for misbehaving (scheduler.ts WORKER_EVICTED). */
export class EvictedError extends DtrainError {
  constructor(message: string) {
    super(WORKER_EVICTED, message, { expected: false });
  }
}

export class Connection implements WorkerHandle {
  stage: Stage = Stage.AWAITING_HELLO;
  name = '';
  backend = 'unknown';
  weightsVersion = -1;
  /** Agreed in the handshake: the worker's request, else the coordinator's --wire-dtype. */
  wireDtype: WireDtype = 'float32';
  /** True when the worker's dataset fingerprint matched ours: it gets sample indices, not pixels. */
  localData = false;
  private expect: Omit<ResultExpectations, 'taskCount'>;
  private readonly pending = new Map<number, Pending>();
  private readonly heartbeat: Heartbeat;
  private stageTimer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private ending: Ending | undefined;

  constructor(
    readonly id: string,
    /** The peer's address: failures and evictions are counted per address. */
    readonly origin: string,
    private readonly socket: WebSocket,
    private readonly log: Logger,
    private readonly ctx: ConnectionContext,
  ) {
    this.expect = ctx.expect;
    this.heartbeat = new Heartbeat(
      { ping: () => socket.ping(), onPong: (cb) => socket.on('pong', cb), terminate: (reason) => this.evict(new FrameError('DTRAIN_ERR_HEARTBEAT', reason, CLOSE_CODES.evicted), 'worker_evicted') },
      ctx.limits.heartbeatIntervalMs,
    );
    this.armStageTimer(ctx.limits.handshakeTimeoutMs, 'DTRAIN_ERR_HANDSHAKE_TIMEOUT', `Expected a hello within ${ctx.limits.handshakeTimeoutMs} ms, but got none.`);
    socket.on('message', (data, isBinary) => this.onFrame(data, isBinary));
    socket.on('error', (err: Error & { code?: string }) => this.onSocketError(err));
    socket.on('close', (code, reason) => this.onSocketClose(code, reason));
  }

  /** True once the connection is ending: no task may be sent, and late frames are ignored. */
  get ended(): boolean {
    return this.stage === Stage.CLOSING || this.stage === Stage.CLOSED;
  }

  // ---- WorkerHandle: what the scheduler and the membership use ------------------------------

  run(task: TaskMessage): Promise<ResultMessage> {
    if (this.ended) return Promise.reject(new WorkerLostError(`${this.id} is ${this.stage}`));
    return new Promise((resolve, reject) => {
      this.pending.set(task.taskId, { count: task.labels.length, kind: task.kind, resolve, reject });
      const wire = { dtype: this.wireDtype, trainableCount: this.ctx.expect.gradientCount };
      const frame = taskFrames.encode(taskForWire(task, wire));
      this.socket.send(frame.bytes, { binary: true }, (err) => {
        frame.release();
        if (err) this.failTask(task.taskId, new WorkerLostError(`send to ${this.id} failed: ${err.message}`));
      });
    });
  }

  /**
   * Polite: a close frame with `code`, then the socket is cut if the peer does not answer. `kind`
   * is how the membership saw it go (an eviction counts against the peer's address).
   */
  close(code: number, reason: string, kind?: LeaveKind): void {
    this.end({ kind: kind ?? 'closed', code: 'DTRAIN_CLOSED', closeCode: code, reason }, 'close');
  }

  /** Now: the socket is destroyed without a closing handshake. */
  terminate(reason: string): void {
    this.end({ kind: 'closed', code: 'DTRAIN_TERMINATED', closeCode: CLOSE_CODES.goingAway, reason }, 'terminate');
  }

  // ---- frames ---------------------------------------------------------------------------------

  private onFrame(data: RawData, isBinary: boolean): void {
    if (this.ended) {
      this.log.debug({ event: 'late_frame_dropped', stage: this.stage }, `${this.id}: frame after close dropped`);
      return;
    }
    try {
      if (!isBinary) throw new FrameError(FRAME_ERRORS.text, 'Expected a binary frame, but got a text frame.');
      const bytes = toBytes(data);
      if (this.stage === Stage.AWAITING_HELLO && bytes.byteLength > HELLO_MAX_BYTES) {
        throw new FrameError(FRAME_ERRORS.tooLarge, `Expected a hello of at most ${HELLO_MAX_BYTES} bytes, but got ${bytes.byteLength}.`, CLOSE_CODES.tooLarge);
      }
      const msg = decodeWorkerMessage(bytes, this.expect);
      if (this.stage === Stage.AWAITING_HELLO) this.onHello(msg);
      else if (this.stage === Stage.WELCOMING) this.onReady(msg);
      else this.onResult(msg);
    } catch (err) {
      if (err instanceof FrameError) this.evict(err, 'frame_rejected');
      else this.evict(new FrameError('DTRAIN_ERR_INTERNAL', (err as Error).message), 'frame_rejected');
    }
  }

  private onHello(msg: WorkerMessage): void {
    if (msg.type !== 'hello') throw new FrameError(FRAME_ERRORS.unexpected, `Expected a hello first, but got ${msg.type}.`);
    if (msg.protocolVersion !== PROTOCOL_VERSION) {
      this.evict(new FrameError('DTRAIN_ERR_VERSION', `Expected protocol version ${PROTOCOL_VERSION}, but the worker speaks ${msg.protocolVersion}.`, CLOSE_CODES.version), 'auth_failed');
      return;
    }
    const { localData, ...common } = this.ctx.welcome;
    if (msg.dataset !== undefined && msg.dataset !== localData?.fingerprint) {
      const ours = localData?.fingerprint ?? 'none';
      this.evict(new FrameError('DTRAIN_ERR_DATASET_MISMATCH', `Expected the dataset ${ours}, but the worker's --data-dir holds ${msg.dataset}: use the same files, or no --data-dir.`, CLOSE_CODES.dataset), 'dataset_mismatch');
      return;
    }
    this.name = msg.workerName;
    // Only a worker that says it speaks wire dtypes gets a narrow one; others (the browser worker) get float32.
    this.wireDtype = msg.wireDtype === undefined ? 'float32' : msg.wireDtype === 'auto' ? (this.ctx.welcome.wireDtype ?? 'float32') : msg.wireDtype;
    this.localData = msg.dataset !== undefined;
    this.expect = { ...this.ctx.expect, wireDtype: this.wireDtype };
    this.stage = Stage.WELCOMING;
    this.ctx.onHello?.();
    this.armStageTimer(this.ctx.limits.readyTimeoutMs, 'DTRAIN_ERR_READY_TIMEOUT', `Expected ready within ${this.ctx.limits.readyTimeoutMs} ms of the welcome, but got none.`);
    const welcome: WelcomeMessage = { ...common, workerId: this.id, wireDtype: this.wireDtype, trainableCount: this.ctx.expect.gradientCount };
    if (this.localData && localData) welcome.localData = localData;
    this.socket.send(encode(welcome), { binary: true });
    this.heartbeat.start();
  }

  private onReady(msg: WorkerMessage): void {
    if (msg.type !== 'ready') throw new FrameError(FRAME_ERRORS.unexpected, `Expected ready after welcome, but got ${msg.type}.`);
    this.clearStageTimer();
    this.backend = msg.backend;
    this.stage = Stage.READY;
    this.ctx.membership.join(this);
  }

  /** Routes a result to its task; a result for no pending task, or of the wrong size, is a bad frame. */
  private onResult(msg: WorkerMessage): void {
    if (msg.type === 'bn_sums') return this.onBnSums(msg);
    if (msg.type !== 'result' && msg.type !== 'task_failed') throw new FrameError(FRAME_ERRORS.unexpected, `Expected a result, but got ${msg.type}.`);
    const p = this.pending.get(msg.taskId);
    if (!p) throw new FrameError(FRAME_ERRORS.unknownTask, `Expected a result for a pending task, but got one for task ${msg.taskId}.`);
    if (msg.type === 'task_failed' && msg.code === BN_SYNC_ABORTED) {
      // The step's BatchNorm round was abandoned: not this worker's fault (see step-sync.ts).
      this.failTask(msg.taskId, new BnSyncAbortedError(`task ${msg.taskId} on ${this.id}: ${msg.message}`));
      return;
    }
    if (msg.type === 'task_failed') {
      this.failTask(msg.taskId, new WorkerLostError(`task ${msg.taskId} failed on ${this.id}: ${msg.code}: ${msg.message}`));
      return;
    }
    if (msg.count !== p.count) throw new FrameError(FRAME_ERRORS.countMismatch, `Expected a result for ${p.count} samples, but got ${msg.count}.`);
    // The codec checked the sizes of what is there; what must be there depends on the task.
    if (p.kind === 'train' && !msg.gradients) throw new FrameError(FRAME_ERRORS.missingTensor, `Expected gradients in the result of train task ${msg.taskId}, but got none.`);
    if (p.kind === 'train' && this.ctx.expect.statsCount > 0 && !msg.stats) throw new FrameError(FRAME_ERRORS.missingTensor, `Expected BatchNorm statistics in the result of train task ${msg.taskId}, but got none.`);
    if (p.kind === 'eval' && !msg.predictions) throw new FrameError(FRAME_ERRORS.missingTensor, `Expected predictions in the result of eval task ${msg.taskId}, but got none.`);
    this.pending.delete(msg.taskId);
    p.resolve(msg);
  }

  /** Synchronized BatchNorm: hands a pending task's sums to its round and sends the totals back. */
  private onBnSums(msg: BnSumsMessage): void {
    if (!this.pending.has(msg.taskId)) throw new FrameError(FRAME_ERRORS.unknownTask, `Expected BatchNorm sums for a pending task, but got some for task ${msg.taskId}.`);
    const reply = (m: BnTotalsMessage) => {
      if (!this.ended) this.socket.send(encode(m), { binary: true });
    };
    const head = { type: 'bn_totals', round: msg.round, layer: msg.layer, phase: msg.phase } as const;
    bnRounds.contribute(msg).then(
      (totals) => reply({ ...head, totals: float64ToBytes(totals) }),
      (err: Error) => reply({ ...head, aborted: err.message }),
    );
  }

  private failTask(taskId: number, err: Error): void {
    const p = this.pending.get(taskId);
    this.pending.delete(taskId);
    p?.reject(err);
  }

  // ---- ending ---------------------------------------------------------------------------------

  /** Ends a misbehaving peer: logged with `event` (a member's eviction is logged by the membership). */
  private evict(err: FrameError, event: string): void {
    if (this.ended) return;
    const member = this.stage === Stage.READY;
    if (event !== 'worker_evicted') this.ctx.onRejected?.(event, err.code, member);
    if (!(member && event === 'worker_evicted')) {
      this.log.warn({ event, code: err.code, closeCode: err.closeCode, reason: err.message }, `${this.id}: ${err.message}`);
    }
    this.end({ kind: 'evicted', code: err.code, closeCode: err.closeCode, reason: `${err.code}: ${err.message}` }, 'close');
  }

  private onSocketError(err: Error & { code?: string }): void {
    const tooLarge = err.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
    const reason = `${err.message}${tooLarge ? ` (limit ${this.stage === Stage.AWAITING_HELLO ? HELLO_MAX_BYTES : this.ctx.maxPayload} bytes)` : ''}`;
    // ws has already failed the connection; the error is ours to report, once.
    this.evict(new FrameError(tooLarge ? FRAME_ERRORS.tooLarge : 'DTRAIN_ERR_SOCKET', reason, tooLarge ? CLOSE_CODES.tooLarge : CLOSE_CODES.badFrame), 'frame_rejected');
  }

  private onSocketClose(code: number, reason: Buffer): void {
    if (!this.ended) {
      this.end({ kind: 'left', code: 'DTRAIN_LEFT', closeCode: code, reason: `connection closed with code ${code}${reason.length ? `: ${reason.toString()}` : ''}` }, 'none');
    }
    this.stage = Stage.CLOSED;
    if (this.graceTimer) clearTimeout(this.graceTimer);
  }

  /** The one teardown path: every timer stops, every pending task fails, the membership is told. */
  private end(ending: Ending, how: 'close' | 'terminate' | 'none'): void {
    if (this.ended) return;
    const wasMember = this.stage === Stage.READY;
    this.stage = Stage.CLOSING;
    this.ending = ending;
    this.clearStageTimer();
    this.heartbeat.stop();
    // Evicted for misbehaving: the task was not at fault, and the scheduler does not count it against it.
    for (const p of this.pending.values()) p.reject(ending.kind === 'evicted' && ending.code.startsWith('DTRAIN_ERR') && ending.code !== 'DTRAIN_ERR_HEARTBEAT' ? new EvictedError(`${this.id}: ${ending.reason}`) : new WorkerLostError(`${this.id}: ${ending.reason}`));
    this.pending.clear();
    // The membership logs worker_left / worker_evicted; it is idempotent, so an eviction that
    // came from it (membership.leave → close) is not counted twice.
    if (wasMember) this.ctx.membership.leave(this.id, ending.kind === 'closed' ? 'left' : ending.kind, ending.reason, undefined, ending.kind === 'closed');
    if (how === 'terminate') this.socket.terminate();
    else if (how === 'close') {
      safeClose(this.socket, ending.closeCode, ending.code.startsWith('DTRAIN_ERR') ? ending.code : ending.reason);
      this.graceTimer = setTimeout(() => this.socket.terminate(), CLOSE_GRACE_MS);
      this.graceTimer.unref();
    }
    this.ctx.onEnded?.(this, ending);
  }

  /** How the connection ended, once it has. */
  get endedWith(): Ending | undefined {
    return this.ending;
  }

  private armStageTimer(ms: number, code: string, message: string): void {
    this.clearStageTimer();
    this.stageTimer = setTimeout(() => {
      const closeCode = code === 'DTRAIN_ERR_HANDSHAKE_TIMEOUT' ? CLOSE_CODES.handshakeTimeout : CLOSE_CODES.evicted;
      this.evict(new FrameError(code, message, closeCode), code === 'DTRAIN_ERR_HANDSHAKE_TIMEOUT' ? 'frame_rejected' : 'worker_evicted');
    }, ms);
    this.stageTimer.unref();
  }

  private clearStageTimer(): void {
    if (this.stageTimer) clearTimeout(this.stageTimer);
    this.stageTimer = undefined;
  }
}
