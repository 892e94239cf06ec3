/**
 * Binds a server to the `--host` and `--port` a user gave. The operating system's refusals (a port
 * in use, a host that does not resolve or is not this machine's, a port that needs privileges)
 * become ConfigErrors naming the flags, so the CLI prints one line instead of a stack trace.
 */
import type { AddressInfo, Server } from 'node:net';
import { ConfigError } from '../common/errors.ts';

/** Listens on `port` (0: any free one) at `host`; resolves with the port bound. */
export function listenOn(server: Server, port: number, host: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const refused = (err: NodeJS.ErrnoException) => reject(listenError(err, port, host ?? '0.0.0.0'));
    server.once('error', refused);
    server.listen(port, host, () => {
      server.off('error', refused);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** The user-facing error for a failed listen; errors the flags cannot explain are passed on as they are. */
export function listenError(err: NodeJS.ErrnoException, port: number, host: string): Error {
  switch (err.code) {
    case 'EADDRINUSE':
      return new ConfigError(`--port ${port} is already in use on ${host}: stop what listens there, or choose another port (0 takes any free one).`);
    case 'EACCES':
      return new ConfigError(`--port ${port} on ${host} needs privileges this process lacks (ports below 1024 usually do): choose a port from 1024 up.`);
    case 'EADDRNOTAVAIL':
      return new ConfigError(`--host ${host} is not an address of this machine: give one of its own addresses, or 0.0.0.0 for all of them.`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError(`--host ${host} does not resolve to an address (${err.code}): give an IP address or a resolvable name of this machine.`);
    default:
      return err;
  }
}
