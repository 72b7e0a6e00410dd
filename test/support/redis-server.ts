// Starts a real, throw-away redis-server (Debian's) on a free port of 127.0.0.1 for tests, and
// stops it. No persistence; its working directory is a fresh temporary one, removed on stop.
import type { ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

import { freePort, startServerProcess } from './server-process.js';

export interface RedisServer {
  readonly port: number;
  /** `redis://127.0.0.1:<port>` (`rediss://` with TLS; without the password). */
  readonly url: string;
  /** Stops the server (SIGTERM, then waits for it to exit) and removes its directory. */
  stop(): Promise<void>;
}

export interface RedisServerOptions {
  /** Start with `--requirepass`. */
  password?: string;
  /**
   * Serve TLS only (no plain port), with this certificate; clients may present a certificate
   * signed by `caFile` (`--tls-auth-clients optional`).
   */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

/** Finds redis-server on PATH or in /usr/bin, or fails naming the package that provides it. */
export function findRedisServer(): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, 'redis-server');
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new Error(
    "redis-server not found: install the Debian package 'redis-server' " +
      '(apt-get install redis-server, or run scripts/setup.sh); the Redis bus tests need a real server',
  );
}

/** Starts a server; retries on another port if the one picked was taken meanwhile. */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const bin = findRedisServer();
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return await startOn(bin, port, options);
    } catch (err) {
      lastError = err as Error;
      if (!/already in use/i.test(lastError.message)) throw lastError;
    }
  }
  throw lastError!;
}

async function startOn(
  bin: string,
  port: number,
  options: RedisServerOptions,
): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'spinmesh-redis-'));
  const args = [
    ...(options.tls
      ? [
          '--port',
          '0',
          '--tls-port',
          String(port),
          '--tls-cert-file',
          options.tls.certFile,
          '--tls-key-file',
          options.tls.keyFile,
          '--tls-ca-cert-file',
          options.tls.caFile,
          '--tls-auth-clients',
          'optional',
        ]
      : ['--port', String(port)]),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--loglevel',
    'warning',
  ];
  if (options.password !== undefined) args.push('--requirepass', options.password);
  const server = startServerProcess(bin, args, dir);
  const { child, stop } = server;

  try {
    await waitForPing(port, options.tls !== undefined, child, server.output);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`, stop };
}

/** Polls with a raw PING until the server answers (+PONG, or -NOAUTH when it wants a password). */
async function waitForPing(
  port: number,
  tls: boolean,
  child: ChildProcess,
  output: () => string,
): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`redis-server exited during start-up (port ${port}): ${output().trim()}`);
    }
    if (await pingOnce(port, tls)) return;
    if (Date.now() > deadline) {
      throw new Error(`redis-server did not answer PING on port ${port} within 10 s: ${output()}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function pingOnce(port: number, tls: boolean): Promise<boolean> {
  return new Promise((resolve) => {
    // The certificate is not what this checks; the test's clients do verify it.
    const socket: Socket = tls
      ? tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false })
      : createConnection({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.once('error', () => done(false));
    socket.once(tls ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG') || reply.startsWith('-NOAUTH'));
    });
  });
}
