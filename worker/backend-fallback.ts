/**
 * A compute thread's backend, and the switch to the next one when the first real step on it fails
 * (e.g. a GPU driver that loads but cannot read back). The thread tells its owner with a
 * `backend_fallback` message, the owner logs it, and training goes on.
 */
import { tf } from '../common/tf.ts';
import { candidateKinds, releaseBackend, selectBackend, type BackendChoice, type BackendSelection } from '../common/backend.ts';

export interface BackendFallbackMessage {
  type: 'backend_fallback';
  from: string;
  /** The backend now in use. */
  selection: BackendSelection;
  /** Why the first one failed (its error's first line). */
  reason: string;
}

export class ThreadBackend {
  constructor(private readonly choice: BackendChoice, public selection: BackendSelection, private readonly announce: (m: BackendFallbackMessage) => void) {}

  get name(): string {
    return this.selection.name;
  }

  /** Releases the failed backend and selects the next in auto's order; false when none loads. */
  readonly fallback = async (error: unknown): Promise<boolean> => {
    const from = this.selection.name;
    const kind = candidateKinds('auto').find((k) => k === from);
    if (!kind) return false;
    releaseBackend(from);
    try {
      this.selection = await selectBackend(this.choice, { after: kind });
    } catch {
      return false;
    }
    const reason = ((error as Error)?.message ?? String(error)).split('\n')[0].slice(0, 200);
    this.announce({ type: 'backend_fallback', from, selection: this.selection, reason });
    return true;
  };

  /** At exit: disposes the backend (and destroys a GPU device, so the process can end). */
  release(): void {
    releaseBackend(this.selection.name);
  }
}

/**
 * Test hook (ThreadInit.failFirstReadBackOn): the first read-back on this backend fails, as
 * webgpu's did in Node before reads were asynchronous everywhere.
 */
export function failFirstReadBack(name: string): void {
  const backend = tf.engine().registry[name] as unknown as { read(dataId: unknown): Promise<unknown> } | undefined;
  if (!backend) return;
  const read = backend.read;
  backend.read = async () => {
    backend.read = read;
    throw new Error(`injected failure of the first read-back on ${name}`);
  };
}
