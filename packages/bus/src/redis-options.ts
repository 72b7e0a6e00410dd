// The Redis bus's options: the URL, TLS and environment settings, merged with the defaults and
// checked once at connect.
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import type { RedisOptions } from 'ioredis';
import { InvalidArgumentError } from './errors.js';
import { Keys } from './keys.js';
import { checkNonNegativeInt, checkPositiveInt } from './validate.js';

/** TLS settings of the Redis connection. PEM contents and file paths may be mixed. */
export interface RedisTlsOptions {
  /** CA certificate(s), PEM, to trust a server certificate from a private CA. */
  ca?: string | Buffer;
  /** Path of a PEM file with the CA certificate(s); read when the bus connects. */
  caFile?: string;
  /** Client certificate, PEM (for servers that require client certificates). */
  cert?: string | Buffer;
  /** Path of a PEM file with the client certificate. */
  certFile?: string;
  /** Client private key, PEM. */
  key?: string | Buffer;
  /** Path of a PEM file with the client private key. */
  keyFile?: string;
  /**
   * Server name for SNI and the certificate check.
   * @defaultValue the host
   */
  servername?: string;
  /**
   * Refuse a server whose certificate does not check out. Turn off only for tests.
   * @defaultValue true
   */
  rejectUnauthorized?: boolean;
}

/**
 * Options of {@link RedisBus}. Explicit fields win over the parts of `url`.
 */
export interface RedisBusOptions {
  /**
   * `redis://[[username]:password@]host[:port][/db]`, or `rediss://...` for TLS.
   * @defaultValue none (host, port and the rest apply)
   */
  url?: string;
  /** @defaultValue `'127.0.0.1'` */
  host?: string;
  /** @defaultValue `6379` */
  port?: number;
  /**
   * ACL user name (Redis 6+).
   * @defaultValue none: the `default` user
   */
  username?: string;
  /**
   * Password of the ACL user, or the `requirepass` password.
   * @defaultValue none
   */
  password?: string;
  /**
   * TLS: `true` for the system's trusted CAs, or settings.
   * @defaultValue off, on for `rediss://` URLs
   */
  tls?: boolean | RedisTlsOptions;
  /**
   * Logical database number.
   * @defaultValue `0`
   */
  db?: number;
  /**
   * Every key of the bus lies under `<prefix>:`. Clusters (or tests) that share a Redis use
   * different prefixes. 1-64 characters of `[A-Za-z0-9._-]`.
   * @defaultValue `'spinmesh'`
   */
  prefix?: string;
  /**
   * Time to establish a connection, in milliseconds.
   * @defaultValue `10000`
   */
  connectTimeoutMs?: number;
  /**
   * Time for one command's reply, in milliseconds, before it fails with "Command timed out".
   * Blocking reads get their `blockMs` plus this.
   * @defaultValue `10000`
   */
  commandTimeoutMs?: number;
  /**
   * Checkpoints are stored in chunks of this many bytes (Redis strings are best kept small).
   * @defaultValue `1048576` (1 MiB)
   */
  checkpointChunkBytes?: number;
  /**
   * Keep at most this many newest events per job stream (exact trimming), unless an append
   * says otherwise.
   * @defaultValue no trimming
   */
  maxEventsPerJob?: number;
  /**
   * Name of the connections in `CLIENT LIST`; blocking readers get `-block` appended.
   * @defaultValue `'spinmesh-bus'`
   */
  connectionName?: string;
  /**
   * Called with connection errors (the client reconnects on its own). Libraries do not log: pass
   * your logger here.
   * @defaultValue ignore them (the failing calls reject anyway)
   */
  onError?: (err: Error) => void;
}

/** Defaults of {@link RedisBusOptions}. */
export const REDIS_BUS_DEFAULTS = {
  host: '127.0.0.1',
  port: 6379,
  db: 0,
  prefix: 'spinmesh',
  connectTimeoutMs: 10_000,
  commandTimeoutMs: 10_000,
  checkpointChunkBytes: 1 << 20,
  connectionName: 'spinmesh-bus',
} as const;

/** The variables redisBusOptionsFromEnv reads (services list them with their own). */
export const REDIS_ENV_VARS = [
  'REDIS_URL',
  'REDIS_USERNAME',
  'REDIS_PASSWORD',
  'REDIS_TLS_CA',
  'SPINMESH_REDIS_PREFIX',
] as const;

/**
 * Reads the bus's settings from the environment:
 * - `REDIS_URL`: `redis://` or `rediss://` URL (default `redis://127.0.0.1:6379`)
 * - `REDIS_USERNAME`, `REDIS_PASSWORD`: ACL credentials (override those in the URL)
 * - `REDIS_TLS_CA`: path of a PEM CA file; turns TLS on
 * - `SPINMESH_REDIS_PREFIX`: key prefix (default `spinmesh`)
 *
 * Empty variables count as unset.
 */
export function redisBusOptionsFromEnv(
  env: Readonly<Record<string, string | undefined>> = process.env,
): RedisBusOptions {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const options: RedisBusOptions = {};
  const url = get('REDIS_URL');
  const username = get('REDIS_USERNAME');
  const password = get('REDIS_PASSWORD');
  const ca = get('REDIS_TLS_CA');
  const prefix = get('SPINMESH_REDIS_PREFIX');
  if (url !== undefined) options.url = url;
  if (username !== undefined) options.username = username;
  if (password !== undefined) options.password = password;
  if (ca !== undefined) options.tls = { caFile: ca };
  if (prefix !== undefined) options.prefix = prefix;
  return options;
}

export interface ResolvedRedisOptions {
  redis: RedisOptions;
  /** host:port (user, TLS), for error messages; never the password. */
  target: string;
  prefix: string;
  commandTimeoutMs: number;
  checkpointChunkBytes: number;
  maxEventsPerJob: number;
  connectionName: string;
}

/** Merges the URL, the options and the defaults, and checks them. */
export function resolveOptions(options: RedisBusOptions): ResolvedRedisOptions {
  // Long by design (exempt in test/shape.test.ts): a validator, one check per option.
  let host: string = REDIS_BUS_DEFAULTS.host;
  let port: number = REDIS_BUS_DEFAULTS.port;
  let db: number = REDIS_BUS_DEFAULTS.db;
  let username: string | undefined;
  let password: string | undefined;
  let tls: boolean | RedisTlsOptions = false;
  if (options.url !== undefined) {
    let u: URL;
    try {
      u = new URL(options.url);
    } catch {
      throw new InvalidArgumentError('url', 'is not a URL');
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
      throw new InvalidArgumentError(
        'url',
        `must start with redis:// or rediss:// (got ${u.protocol}//)`,
      );
    }
    if (u.hostname) host = u.hostname.replace(/^\[(.*)\]$/, '$1');
    if (u.port) port = Number(u.port);
    if (u.username) username = decodeURIComponent(u.username);
    if (u.password) password = decodeURIComponent(u.password);
    const path = u.pathname.replace(/^\//, '');
    if (path !== '') {
      if (!/^\d+$/.test(path))
        throw new InvalidArgumentError('url', `has a database '${path}' that is not a number`);
      db = Number(path);
    }
    if (u.protocol === 'rediss:') tls = true;
  }
  if (options.host !== undefined) host = options.host;
  if (options.port !== undefined) port = options.port;
  if (options.db !== undefined) db = options.db;
  if (options.username !== undefined) username = options.username;
  if (options.password !== undefined) password = options.password;
  if (options.tls !== undefined) tls = options.tls;
  checkPositiveInt('port', port, 65535);
  checkNonNegativeInt('db', db);
  const prefix = new Keys(options.prefix ?? REDIS_BUS_DEFAULTS.prefix).prefix;
  const connectTimeoutMs = checkPositiveInt(
    'connectTimeoutMs',
    options.connectTimeoutMs ?? REDIS_BUS_DEFAULTS.connectTimeoutMs,
  );
  const commandTimeoutMs = checkPositiveInt(
    'commandTimeoutMs',
    options.commandTimeoutMs ?? REDIS_BUS_DEFAULTS.commandTimeoutMs,
  );
  const checkpointChunkBytes = checkPositiveInt(
    'checkpointChunkBytes',
    options.checkpointChunkBytes ?? REDIS_BUS_DEFAULTS.checkpointChunkBytes,
    512 << 20,
  );
  const maxEventsPerJob =
    options.maxEventsPerJob === undefined
      ? 0
      : checkPositiveInt('maxEventsPerJob', options.maxEventsPerJob);
  const connectionName = options.connectionName ?? REDIS_BUS_DEFAULTS.connectionName;
  const redis: RedisOptions = {
    host,
    port,
    db,
    connectTimeout: connectTimeoutMs,
    commandTimeout: commandTimeoutMs,
    connectionName,
    lazyConnect: true,
  };
  if (username !== undefined) redis.username = username;
  if (password !== undefined) redis.password = password;
  if (tls !== false) redis.tls = tlsOptions(tls === true ? {} : tls);
  const who = username !== undefined ? ` as '${username}'` : '';
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}${tls !== false ? ' (TLS)' : ''}${who}`;
  return {
    redis,
    target,
    prefix,
    commandTimeoutMs,
    checkpointChunkBytes,
    maxEventsPerJob,
    connectionName,
  };
}

function tlsOptions(t: RedisTlsOptions): ConnectionOptions {
  const read = (field: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new InvalidArgumentError(`tls.${field}`, `cannot be read (${(err as Error).message})`);
    }
  };
  const out: ConnectionOptions = {};
  const ca = t.ca ?? (t.caFile !== undefined ? read('caFile', t.caFile) : undefined);
  const cert = t.cert ?? (t.certFile !== undefined ? read('certFile', t.certFile) : undefined);
  const key = t.key ?? (t.keyFile !== undefined ? read('keyFile', t.keyFile) : undefined);
  if (ca !== undefined) out.ca = ca;
  if (cert !== undefined) out.cert = cert;
  if (key !== undefined) out.key = key;
  if (t.servername !== undefined) out.servername = t.servername;
  if (t.rejectUnauthorized !== undefined) out.rejectUnauthorized = t.rejectUnauthorized;
  return out;
}
