/**
 * The /worker page's script (bundled by coordinator/browser-worker.ts): reads the token from the
 * form or the URL fragment, picks a backend, and runs a BrowserWorker against the coordinator that
 * served the page, showing what it does. Nothing here is sent to the server but the protocol.
 */
import { BrowserWorker, type BrowserWorkerStatus, type SocketLike } from './client.ts';
import { parseBrowserBackend, selectBrowserBackend } from './backend.ts';
import { browserWorkerName, coordinatorUrl, settingsFromUrl } from './fragment.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const MAX_EVENTS = 200;
let worker: BrowserWorker | undefined;
let backendName: string | undefined;

function event(text: string): void {
  const li = document.createElement('li');
  li.textContent = `${new Date().toISOString().slice(11, 19)} ${text}`;
  const list = $('events');
  list.prepend(li);
  while (list.childElementCount > MAX_EVENTS) list.lastElementChild!.remove();
}

function setState(state: string, message?: string): void {
  document.body.dataset.state = state;
  // "joined as w1, ..." says its state already.
  $('state').textContent = !message ? state : message.startsWith(state) ? message : `${state}: ${message}`;
}

function kib(bytes: number): string {
  return bytes < 1 << 20 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

// The DOM's handler types are narrower than SocketLike's (which `ws` also satisfies in tests).
const openSocket = (url: string, protocols: string[]) => new WebSocket(url, protocols) as unknown as SocketLike;

let lastMessage = '';
function show(s: BrowserWorkerStatus): void {
  setState(s.state, s.message);
  if (s.message !== lastMessage) event(s.message);
  lastMessage = s.message;
  $('worker-id').textContent = s.workerId ?? '–';
  $('model').textContent = s.model ?? '–';
  $('train-tasks').textContent = String(s.trainTasks);
  $('train-samples').textContent = String(s.trainSamples);
  $('eval-samples').textContent = String(s.evalSamples);
  $('compute-ms').textContent = s.lastComputeMs === undefined ? '–' : `${s.lastComputeMs.toFixed(1)} ms`;
  $('bytes').textContent = `${kib(s.bytesIn)} / ${kib(s.bytesOut)}`;
  // Flat unless a step leaks tensors: the first train slice's count, then the latest one's.
  if (s.tensorsAfterFirstTrain !== undefined) $('tensors').textContent = `${s.tensorsAfterFirstTrain} → ${s.tensorsAfterLastTrain}`;
}

function formEnabled(enabled: boolean): void {
  for (const id of ['token', 'backend', 'start']) ($(id) as HTMLInputElement).disabled = !enabled;
  ($('stop') as HTMLButtonElement).disabled = enabled;
}

async function join(token: string, backendChoice: string | null): Promise<void> {
  formEnabled(false);
  try {
    if (!backendName) {
      setState('loading', 'choosing a compute backend');
      const selection = await selectBrowserBackend(new URL('/worker/', location.href).href, parseBrowserBackend(backendChoice));
      for (const s of selection.skipped) event(`skipped ${s.backend}: ${s.reason}`);
      backendName = selection.name;
      event(`backend: ${backendName}`);
      $('backend-name').textContent = backendName;
    }
    const tag = Math.random().toString(16).slice(2, 6);
    worker = new BrowserWorker({ url: coordinatorUrl(location), token, workerName: browserWorkerName(navigator.userAgent, tag), backend: backendName, connect: openSocket, onUpdate: show });
    await worker.start();
  } catch (err) {
    setState('failed', (err as Error).message);
    event((err as Error).message);
  }
  worker = undefined;
  formEnabled(true);
}

function init(): void {
  const settings = settingsFromUrl(location);
  if (settings.backend) ($('backend') as HTMLSelectElement).value = settings.backend;
  $('join').addEventListener('submit', (ev) => {
    ev.preventDefault();
    void join(($('token') as HTMLInputElement).value.trim(), ($('backend') as HTMLSelectElement).value);
  });
  $('stop').addEventListener('click', () => worker?.stop('left by the user'));
  if (settings.token) {
    // Out of the address bar and the history, so it is not shared with a copied link.
    history.replaceState(null, '', location.pathname + location.search);
    void join(settings.token, settings.backend);
  }
}

init();
