// Starts a real, throw-away Redis for tests, and stops it: a Redis container when a local Docker
// engine answers (testcontainers), else Debian's redis-server on a free port of 127.0.0.1. No
// persistence; the server's working directory is a fresh temporary one, removed on stop.
// SPINMESH_TEST_REDIS=server or =container picks one (container: fails when there is no engine).
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

/** The image of the container: the Redis of docker-compose.yml. */
export const REDIS_IMAGE = 'redis:7.2.5-bookworm';

/** Which Redis the tests get here, and why. */
export interface RedisBackend {
  kind: 'container' | 'server';
  why: string;
}

/**
 * A container when SPINMESH_TEST_REDIS=container, or by default when testcontainers finds a
 * container runtime on this machine (a local one: the tests reach Redis at 127.0.0.1); else
 * redis-server. @throws Error when SPINMESH_TEST_REDIS is another value
 */
export async function chooseRedisBackend(
  env: Readonly<Record<string, string | undefined>>,
): Promise<RedisBackend> {
  const want = env['SPINMESH_TEST_REDIS'] ?? 'auto';
  if (want === 'server') return { kind: 'server', why: 'SPINMESH_TEST_REDIS=server' };
  if (want !== 'auto' && want !== 'container')
    throw new Error(`SPINMESH_TEST_REDIS must be 'server' or 'container', got '${want}'`);
  if (want === 'container') return { kind: 'container', why: 'SPINMESH_TEST_REDIS=container' };
  const { getContainerRuntimeClient } = await import('testcontainers');
  try {
    const client = await getContainerRuntimeClient();
    const host = client.info.containerRuntime.host;
    if (host !== 'localhost' && host !== '127.0.0.1')
      return { kind: 'server', why: `the container runtime is not local (${host})` };
    return { kind: 'container', why: `container runtime at ${host}` };
  } catch (err) {
    return { kind: 'server', why: `no container runtime: ${(err as Error).message}` };
  }
}

let backend: Promise<RedisBackend> | undefined;

/** Starts Redis for a test: a container or a redis-server process (chooseRedisBackend). */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  backend ??= chooseRedisBackend(process.env);
  const { kind } = await backend;
  return kind === 'container' ? startRedisContainer(options) : startProcess(options);
}

/** A Redis container with the options; its port mapped to a free port of this machine. */
export async function startRedisContainer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const args = ['redis-server', '--save', '', '--appendonly', 'no', '--loglevel', 'notice'];
  let container = new GenericContainer(REDIS_IMAGE)
    .withExposedPorts(6379)
    .withWaitStrategy(Wait.forLogMessage(/Ready to accept connections/));
  if (options.tls) {
    const files = [
      ['cert.pem', options.tls.certFile],
      ['key.pem', options.tls.keyFile],
      ['ca.pem', options.tls.caFile],
    ] as const;
    container = container.withCopyFilesToContainer(
      files.map(([name, source]) => ({ source, target: `/tls/${name}`, mode: 0o644 })),
    );
    args.push(
      ...['--port', '0', '--tls-port', '6379', '--tls-cert-file', '/tls/cert.pem'],
      ...['--tls-key-file', '/tls/key.pem', '--tls-ca-cert-file', '/tls/ca.pem'],
      ...['--tls-auth-clients', 'optional'],
    );
  }
  if (options.password !== undefined) args.push('--requirepass', options.password);
  const started = await container.withCommand(args).start();
  const port = started.getMappedPort(6379);
  return {
    port,
    url: `${options.tls ? 'rediss' : 'redis'}://127.0.0.1:${port}`,
    stop: async () => {
      await started.stop();
    },
  };
}

/** Starts a redis-server; retries on another port if the one picked was taken meanwhile. */
async function startProcess(options: RedisServerOptions): Promise<RedisServer> {
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
  const deadline = Date.now() + 60_000;
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
