import { describe, expect, it } from 'vitest';
import { browserWorkerName, coordinatorUrl, settingsFromUrl } from './fragment.ts';

describe('the browser worker page settings', () => {
  it('reads the token from the fragment and the backend from the query', () => {
    expect(settingsFromUrl({ hash: '#token=abc%2Bdef%20xyz', search: '?backend=wasm' })).toEqual({ token: 'abc+def xyz', backend: 'wasm' });
  });

  it('has no token when the fragment has none or an empty one', () => {
    expect(settingsFromUrl({ hash: '', search: '' })).toEqual({ token: undefined, backend: null });
    expect(settingsFromUrl({ hash: '#token=', search: '' }).token).toBeUndefined();
    expect(settingsFromUrl({ hash: '#other=1', search: '' }).token).toBeUndefined();
  });

  it('connects back to the host that served the page, over wss when the page came over https', () => {
    expect(coordinatorUrl({ protocol: 'http:', host: '10.0.0.5:8787' })).toBe('ws://10.0.0.5:8787/');
    expect(coordinatorUrl({ protocol: 'https:', host: 'train.example' })).toBe('wss://train.example/');
  });

  it('names the worker after the browser', () => {
    const chrome = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.8078.108 Safari/537.36';
    expect(browserWorkerName(chrome, 'a1b2')).toBe('browser-Chrome156-a1b2');
    expect(browserWorkerName('Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0', 'x')).toBe('browser-Firefox128-x');
    expect(browserWorkerName('curl/8', 'x')).toBe('browser-unknown-x');
  });
});
