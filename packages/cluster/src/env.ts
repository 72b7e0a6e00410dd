// Reading a service's settings from the environment: the checks the worker and the coordinator
// share (each failure a ConfigError naming the variable).
import { isIPv4, isIPv6 } from 'node:net';
import { isAbsolute } from 'node:path';
import { setFlagsFromString } from 'node:v8';

import { tlsFromEnv, type TlsConfig } from '@spinmesh/proto';

/** A variable with a bad value. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable} ${message}`);
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** host:port, with a bracketed IPv6 host allowed. */
export const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/;

/**
 * Whether a host:port binds loopback only: 127.0.0.0/8 or ::1 (also as ::ffff:127.x.x.x), or
 * `localhost`. A wildcard (0.0.0.0, ::), a name or any other address reaches beyond the host.
 */
export function isLoopbackListen(hostPort: string): boolean {
  const host = hostPort.slice(0, hostPort.lastIndexOf(':'));
  if (host === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  const bare = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (!isIPv6(bare)) return false;
  // The URL parser writes an IPv6 address in its one shortest form.
  const canonical = new URL(`http://[${bare}]/`).hostname;
  return canonical === '[::1]' || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(canonical);
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** The readers of one environment. */
export class EnvReader {
  constructor(private readonly env: Env) {}

  /** The trimmed value; undefined when unset or blank. */
  get(name: string): string | undefined {
    const v = this.env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  }

  /** An integer >= min, or the fallback when unset. */
  int(name: string, fallback: number, min: number): number {
    const v = this.get(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < min)
      throw new ConfigError(name, `must be an integer >= ${min} (got '${v}')`);
    return n;
  }

  /** A host:port, or undefined when unset. */
  hostPort(name: string): string | undefined {
    const v = this.get(name);
    if (v !== undefined && !HOST_PORT.test(v))
      throw new ConfigError(name, `must be host:port (got '${v}')`);
    return v;
  }

  /** SPINMESH_KERNELS. */
  kernels(
    fallback: 'cuda' | 'native' | 'portable' | 'auto',
  ): 'cuda' | 'native' | 'portable' | 'auto' {
    const k = this.get('SPINMESH_KERNELS') ?? fallback;
    if (k !== 'cuda' && k !== 'native' && k !== 'portable' && k !== 'auto')
      throw new ConfigError(
        'SPINMESH_KERNELS',
        `must be cuda, native, portable or auto (got '${k}')`,
      );
    return k;
  }

  /** SPINMESH_LOG_LEVEL. */
  logLevel(fallback: string): string {
    const l = this.get('SPINMESH_LOG_LEVEL') ?? fallback;
    if (!LOG_LEVELS.includes(l))
      throw new ConfigError(
        'SPINMESH_LOG_LEVEL',
        `must be fatal, error, warn, info, debug, trace or silent (got '${l}')`,
      );
    return l;
  }

  /** SPINMESH_HEAP_GROWING_PERCENT: 0 (V8's own factor) to 10000 (setHeapGrowingPercent). */
  heapGrowingPercent(fallback: number): number {
    const name = 'SPINMESH_HEAP_GROWING_PERCENT';
    const v = this.int(name, fallback, 0);
    if (v > 10_000) throw new ConfigError(name, `must be at most 10000 (got ${v})`);
    return v;
  }

  /** SPINMESH_STOP_ON_STDIN_CLOSE (0 or 1). */
  stopOnStdinClose(): boolean {
    const s = this.get('SPINMESH_STOP_ON_STDIN_CLOSE') ?? '0';
    if (s !== '0' && s !== '1')
      throw new ConfigError('SPINMESH_STOP_ON_STDIN_CLOSE', `must be 0 or 1 (got '${s}')`);
    return s === '1';
  }

  /** SPINMESH_METRICS_LISTEN: host:port, or null for 'off'. */
  metricsListen(fallback: string): string | null {
    const m = this.get('SPINMESH_METRICS_LISTEN') ?? fallback;
    if (m !== 'off' && !HOST_PORT.test(m))
      throw new ConfigError('SPINMESH_METRICS_LISTEN', `must be host:port or off (got '${m}')`);
    return m === 'off' ? null : m;
  }

  /**
   * SPINMESH_DATA_ROOTS: absolute directories separated by ':', the only places a service reads
   * job data from; unset: SPINMESH_DATA_DIR when that is set, else none.
   */
  dataRoots(): string[] {
    const name =
      this.get('SPINMESH_DATA_ROOTS') !== undefined ? 'SPINMESH_DATA_ROOTS' : 'SPINMESH_DATA_DIR';
    const roots = (this.get(name) ?? '').split(':').filter((r) => r !== '');
    if (roots.some((r) => !isAbsolute(r)))
      throw new ConfigError(name, 'must be absolute directories separated by :');
    return roots;
  }

  /** SPINMESH_TLS_CERT, SPINMESH_TLS_KEY, SPINMESH_TLS_CA, SPINMESH_TLS. */
  tls(): TlsConfig {
    return tlsFromEnv(this.env, (variable, message) => new ConfigError(variable, message));
  }
}

/**
 * Sets V8's old-generation growing factor to 1 + percent/100 (0: leaves V8's own). V8 reads it
 * at every collection, so setting it at start, before the work, takes effect. Both services
 * keep a small JS heap and allocate large buffers fast (a worker its frames, the coordinator
 * the checkpoints its embedded bus receives); with V8's default factor the old generation's
 * limit after a collection sits so close to the live size that the next full collection starts
 * within ~100 ms, every time, a pause of several ms on a core that lockstep workers share.
 */
export function setHeapGrowingPercent(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}
