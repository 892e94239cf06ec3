/**
 * A worker that holds the token and answers every train task with finite but absurd gradients
 * (every value `value`, 1e21 by default) and every eval task honestly-shaped (class 0). It speaks the
 * protocol directly over ws, and reconnects after each eviction, as a malicious worker would.
 */
import WebSocket from 'ws';
import { unpack } from 'msgpackr';
import { encode } from '../common/codec.ts';
import { PROTOCOL_VERSION, type TaskMessage, type WelcomeMessage } from '../common/protocol.ts';

export interface Poisoner {
  /** Poisoned train results sent. */
  readonly sent: number;
  /** Upgrades refused (401, 429 cool-down, 503 full). */
  readonly refused: number;
  stop(): void;
}

export function startPoisoner(url: string, token: string, value = 1e21): Poisoner {
  let stopped = false;
  const state = { sent: 0, refused: 0 };
  let socket: WebSocket | undefined;
  const connect = () => {
    if (stopped) return;
    socket = new WebSocket(url, { headers: { authorization: `Bearer ${token}` } });
    let welcome: WelcomeMessage | undefined;
    socket.on('open', () => socket!.send(encode({ type: 'hello', protocolVersion: PROTOCOL_VERSION, workerName: 'poisoner' })));
    socket.on('message', (data: Buffer) => {
      const m = unpack(data) as WelcomeMessage | TaskMessage;
      if (m.type === 'welcome') {
        welcome = m;
        socket!.send(encode({ type: 'ready', backend: 'poison' }));
      } else if (m.type === 'task' && welcome) {
        const count = m.labels.length;
        if (m.kind === 'eval') {
          socket!.send(encode({ type: 'result', taskId: m.taskId, count, lossSum: 0, correct: 0, computeMs: 1, predictions: new Uint8Array(count) }));
          return;
        }
        const gradients = new Float32Array(welcome.trainableCount ?? welcome.weightCount).fill(value);
        const result: Record<string, unknown> = { type: 'result', taskId: m.taskId, count, lossSum: count, correct: 0, computeMs: 1, gradients: new Uint8Array(gradients.buffer) };
        const statsCount = welcome.weightCount - (welcome.trainableCount ?? welcome.weightCount);
        if (statsCount > 0) result.stats = new Uint8Array(new Float32Array(statsCount).fill(1).buffer);
        state.sent++;
        socket!.send(encode(result as never));
      }
    });
    socket.on('error', (err) => {
      if (/Unexpected server response/.test(err.message)) state.refused++;
    });
    socket.on('close', () => setTimeout(connect, 200));
  };
  connect();
  return {
    get sent() {
      return state.sent;
    },
    get refused() {
      return state.refused;
    },
    stop() {
      stopped = true;
      socket?.terminate();
    },
  };
}
