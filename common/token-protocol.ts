/**
 * How a browser sends the auth token. A Node worker puts it in the upgrade's `Authorization:
 * Bearer` header, but a browser's WebSocket cannot set headers; the one thing it can choose is the
 * list of subprotocols (`Sec-WebSocket-Protocol`). So a browser worker offers two: `dtrain`, which
 * the coordinator selects and echoes, and `dtrain.bearer.<token as base64url>`, which it reads and
 * never echoes. (Kubernetes' API server takes tokens from browsers the same way.) base64url keeps
 * any token within the characters a subprotocol may hold. Browser-safe: no Node imports.
 */

/** The subprotocol the coordinator selects for a browser worker. */
export const WORKER_PROTOCOL = 'dtrain';
const TOKEN_PREFIX = 'dtrain.bearer.';

function toBase64Url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array | undefined {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return undefined;
  try {
    const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0));
  } catch {
    return undefined;
  }
}

/** The subprotocols a browser offers: `new WebSocket(url, tokenProtocols(token))`. */
export function tokenProtocols(token: string): string[] {
  return [WORKER_PROTOCOL, TOKEN_PREFIX + toBase64Url(new TextEncoder().encode(token))];
}

/**
 * The token in a `Sec-WebSocket-Protocol` header (a comma-separated list); empty when there is
 * none or it is not valid base64url of UTF-8 text.
 */
export function tokenFromProtocols(header: string | undefined): string {
  if (!header) return '';
  const entry = header.split(',').map((p) => p.trim()).find((p) => p.startsWith(TOKEN_PREFIX));
  const bytes = entry === undefined ? undefined : fromBase64Url(entry.slice(TOKEN_PREFIX.length));
  if (!bytes) return '';
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return '';
  }
}
