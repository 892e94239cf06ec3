/**
 * The page's settings from its URL. The token may come in the fragment (`/worker#token=...`), which
 * browsers never send to the server, so it stays out of the coordinator's logs and of any proxy's;
 * the page removes it from the address bar once read. The backend may be forced in the query
 * (`?backend=wasm`), which holds nothing secret.
 */
export interface PageSettings {
  token?: string;
  backend: string | null;
}

export function settingsFromUrl(url: { hash: string; search: string }): PageSettings {
  const fragment = new URLSearchParams(url.hash.replace(/^#/, ''));
  const token = fragment.get('token')?.trim();
  return { token: token ? token : undefined, backend: new URLSearchParams(url.search).get('backend') };
}

/** The WebSocket URL of the coordinator that served the page: same host and port, ws or wss. */
export function coordinatorUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
}

/** A short name for the coordinator's logs: the browser and its major version, and a random tag. */
export function browserWorkerName(userAgent: string, tag: string): string {
  const m = /(Firefox|Edg|OPR|Chrome|Version)\/(\d+)/.exec(userAgent);
  const browser = m ? `${m[1] === 'Version' ? 'Safari' : m[1]}${m[2]}` : 'unknown';
  return `browser-${browser}-${tag}`;
}
