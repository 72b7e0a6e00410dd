// The worker's settings, read once from the environment in main (docs/configuration.md lists every
// variable). Defaults first, then validated: a bad value stops the process at start with a message
// naming the variable.
import { hostname } from 'node:os';

import { DATA_MAX_BYTES_DEFAULT } from '@spinmesh/model';
import { REDIS_ENV_VARS, redisBusOptionsFromEnv, type RedisBusOptions } from '@spinmesh/bus';
import type { TlsConfig } from '@spinmesh/proto';
import { ConfigError, EnvReader, isLoopbackListen, type Env } from '@spinmesh/cluster';

/** Where the worker's state bus is. */
export type BusConfig =
  /** Redis (REDIS_URL and the bus's other REDIS_* variables). */
  | { kind: 'redis'; options: RedisBusOptions }
  /** A coordinator's in-process bus served over gRPC (SPINMESH_BUS_ADDRESS). */
  | { kind: 'remote'; address: string };

export interface WorkerConfig {
  /**
   * The worker's id in the bus's membership: 1-128 characters of [A-Za-z0-9._-].
   * @defaultValue `<hostname>-<pid>` (characters outside that set become '-')
   */
  workerId: string;
  /**
   * host:port the gRPC server (PeerService, WorkerControl, health) binds; port 0 picks a free
   * one (the `listening` log line and the bus registration say which).
   * @defaultValue '127.0.0.1:0'
   */
  listen: string;
  /**
   * host:port that peers and the coordinator use to reach this worker, as registered on the
   * bus. null: the bound address, with the host name instead of a wildcard host (0.0.0.0, ::).
   */
  advertise: string | null;
  /** The state bus. @defaultValue Redis at redis://127.0.0.1:6379 */
  bus: BusConfig;
  /**
   * TLS: of the gRPC server (SPINMESH_TLS_CERT and SPINMESH_TLS_KEY) and of the channels to the
   * peers and a remote bus (SPINMESH_TLS_CA, or SPINMESH_TLS=1 for the system's roots).
   */
  tls: TlsConfig;
  /**
   * The cluster secret: required from callers of WorkerControl and PeerService and sent to peers
   * and to a remote bus (metadata `spinmesh-cluster-secret`). null: none, allowed only for a
   * worker that listens on loopback (127.0.0.0/8, ::1, localhost) and uses Redis: a worker that
   * listens beyond it, or uses a coordinator's bus (which always wants a secret), refuses to start.
   */
  clusterSecret: string | null;
  /**
   * The framed peer stream (SPINMESH_PEER_STREAM_PORT): the port, on the listen host, where this
   * worker also takes its peers' frames without HTTP/2 (0: a free one), and what its links use
   * to reach peers that have one. null ('off'): gRPC only, both ways. @defaultValue 0
   */
  peerStreamPort: number | null;
  /** Kernels: cuda, native, portable or auto. @defaultValue 'auto' */
  kernels: 'cuda' | 'native' | 'portable' | 'auto';
  /**
   * BLAS threads of the native kernels, also announced as the worker's cores. One per worker by
   * default: a cluster scales out with processes, and shards of one job must use the same
   * thread count for their replicas to stay bit-identical under OpenBLAS.
   * @defaultValue 1
   */
  blasThreads: number;
  /** Interval of the membership heartbeat, in ms; the registration lives 3 of them. @defaultValue 1000 */
  heartbeatMs: number;
  /**
   * Debug setting for straggler experiments: a factor >= 1; the worker owes (factor - 1) x the
   * time its process was busy (the event loop's active time: computing, and also encoding,
   * sending and decoding frames) and sleeps it off in pieces of at least 2 ms, so on average it
   * runs `factor` times slower. @defaultValue 1 (no slowdown)
   */
  debugSlowdown: number;
  /**
   * Longest a graceful stop (Stop with checkpoint, SIGTERM) may take to reach its checkpoint
   * and deliver its last spins, in ms; past it the worker stops at once, keeping the last
   * checkpoint it wrote. @defaultValue 8000 (under Docker's 10 s stop grace)
   */
  drainMs: number;
  /** Least time between two progress reports (events and spin snapshots), in ms. @defaultValue 1000 */
  progressMs: number;
  /**
   * host:port of the HTTP endpoint of the worker's Prometheus metrics (/metrics) and liveness
   * (/healthz); port 0 picks a free one (the `metrics listening` log line and the bus
   * registration's `meta.metrics` say which). null (the value `off`): no endpoint.
   * @defaultValue '127.0.0.1:0' (several workers on one machine never collide; containers set
   * 0.0.0.0:9464)
   */
  metricsListen: string | null;
  /**
   * The directories job data files are read from (spec paths resolved with realpath must lie in
   * one; relative paths resolve against the first), plus Fashion-MNIST's package directory for
   * that data kind. @defaultValue [SPINMESH_DATA_DIR] when that is set, else [] (no data files)
   */
  dataRoots: string[];
  /** Largest data file read, in bytes. @defaultValue 67108864 (64 MiB) */
  dataMaxBytes: number;
  /** pino level. @defaultValue 'info' */
  logLevel: string;
  /**
   * V8's old-generation growing factor, as 1 + percent/100, set at start
   * (SPINMESH_HEAP_GROWING_PERCENT; 0: V8's own). A worker keeps a small JS heap (its weights
   * and frames are outside it) and allocates frame buffers fast; with V8's default factor the
   * old generation's limit after a collection sits so close to its live size that V8 starts
   * the next one within ~100 ms, every time, each a 5-7 ms pause on the worker's one core that
   * lockstep peers wait out too. @defaultValue 300 (x4)
   */
  heapGrowingPercent: number;
  /**
   * Shut down (as on SIGTERM) when stdin ends: set by a parent process (the embedded local
   * cluster) so that the worker never outlives it. @defaultValue false
   */
  stopOnStdinClose: boolean;
}

export const CONFIG_DEFAULTS = {
  listen: '127.0.0.1:0',
  kernels: 'auto',
  blasThreads: 1,
  heartbeatMs: 1000,
  debugSlowdown: 1,
  drainMs: 8000,
  progressMs: 1000,
  metricsListen: '127.0.0.1:0',
  dataRoots: [] as string[],
  dataMaxBytes: DATA_MAX_BYTES_DEFAULT,
  logLevel: 'info',
  heapGrowingPercent: 300,
} as const;

/** Every variable configFromEnv reads (the deployment's test holds compose files to it). */
export const WORKER_ENV_VARS = [
  'SPINMESH_WORKER_ID',
  'SPINMESH_WORKER_LISTEN',
  'SPINMESH_WORKER_ADVERTISE',
  'SPINMESH_BUS_ADDRESS',
  ...REDIS_ENV_VARS,
  'SPINMESH_CLUSTER_SECRET',
  'SPINMESH_PEER_STREAM_PORT',
  'SPINMESH_TLS_CERT',
  'SPINMESH_TLS_KEY',
  'SPINMESH_TLS_CA',
  'SPINMESH_TLS',
  'SPINMESH_KERNELS',
  'OPENBLAS_NUM_THREADS',
  'SPINMESH_HEARTBEAT_MS',
  'SPINMESH_DEBUG_SLOWDOWN',
  'SPINMESH_WORKER_DRAIN_MS',
  'SPINMESH_PROGRESS_MS',
  'SPINMESH_METRICS_LISTEN',
  'SPINMESH_DATA_ROOTS',
  'SPINMESH_DATA_DIR',
  'SPINMESH_DATA_FILE_MAX_BYTES',
  'SPINMESH_LOG_LEVEL',
  'SPINMESH_HEAP_GROWING_PERCENT',
  'SPINMESH_STOP_ON_STDIN_CLOSE',
] as const;

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** `<hostname>-<pid>`, made a valid bus id. */
export function defaultWorkerId(host = hostname(), pid = process.pid): string {
  const clean = host.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return `${clean.slice(0, 100) || 'worker'}-${pid}`;
}

/** Reads and checks the worker's variables. @throws ConfigError naming the variable */
export function configFromEnv(env: Env = process.env): WorkerConfig {
  const r = new EnvReader(env);
  const workerId = r.get('SPINMESH_WORKER_ID') ?? defaultWorkerId();
  if (!ID.test(workerId))
    throw new ConfigError(
      'SPINMESH_WORKER_ID',
      `must be 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit (got '${workerId}')`,
    );
  const listen = r.hostPort('SPINMESH_WORKER_LISTEN') ?? CONFIG_DEFAULTS.listen;
  const advertise = r.hostPort('SPINMESH_WORKER_ADVERTISE') ?? null;
  if (advertise !== null && /:0$/.test(advertise))
    throw new ConfigError(
      'SPINMESH_WORKER_ADVERTISE',
      `must name a real port (got '${advertise}')`,
    );
  const busAddress = r.hostPort('SPINMESH_BUS_ADDRESS');
  const bus: BusConfig =
    busAddress !== undefined
      ? { kind: 'remote', address: busAddress }
      : { kind: 'redis', options: redisBusOptionsFromEnv(env) };
  const kernels = r.kernels(CONFIG_DEFAULTS.kernels);
  const slowdownText = r.get('SPINMESH_DEBUG_SLOWDOWN');
  const debugSlowdown = slowdownText === undefined ? 1 : Number(slowdownText);
  if (!(Number.isFinite(debugSlowdown) && debugSlowdown >= 1 && debugSlowdown <= 1000))
    throw new ConfigError(
      'SPINMESH_DEBUG_SLOWDOWN',
      `must be a number from 1 to 1000 (got '${slowdownText}')`,
    );
  const logLevel = r.logLevel(CONFIG_DEFAULTS.logLevel);
  const stopOnStdinClose = r.stopOnStdinClose();
  const tls = r.tls();
  const metricsListen = r.metricsListen(CONFIG_DEFAULTS.metricsListen ?? 'off');
  const clusterSecret = r.get('SPINMESH_CLUSTER_SECRET') ?? null;
  if (clusterSecret === null && !isLoopbackListen(listen))
    throw new ConfigError(
      'SPINMESH_CLUSTER_SECRET',
      `must be set when SPINMESH_WORKER_LISTEN reaches beyond loopback (${listen}): ` +
        'without it WorkerControl and PeerService would answer anyone',
    );
  if (clusterSecret === null && bus.kind === 'remote')
    throw new ConfigError(
      'SPINMESH_CLUSTER_SECRET',
      "must be set with SPINMESH_BUS_ADDRESS: a coordinator's bus answers only callers with it",
    );
  const streamText = r.get('SPINMESH_PEER_STREAM_PORT');
  const peerStreamPort = streamText === 'off' ? null : r.int('SPINMESH_PEER_STREAM_PORT', 0, 0);
  if (peerStreamPort !== null && peerStreamPort > 65535)
    throw new ConfigError(
      'SPINMESH_PEER_STREAM_PORT',
      `must be a port (0-65535, 0: a free one) or 'off' (got '${streamText}')`,
    );
  return {
    workerId,
    tls,
    peerStreamPort,
    listen,
    advertise,
    bus,
    clusterSecret,
    kernels,
    blasThreads: r.int('OPENBLAS_NUM_THREADS', CONFIG_DEFAULTS.blasThreads, 1),
    heartbeatMs: r.int('SPINMESH_HEARTBEAT_MS', CONFIG_DEFAULTS.heartbeatMs, 10),
    debugSlowdown,
    drainMs: r.int('SPINMESH_WORKER_DRAIN_MS', CONFIG_DEFAULTS.drainMs, 0),
    progressMs: r.int('SPINMESH_PROGRESS_MS', CONFIG_DEFAULTS.progressMs, 0),
    metricsListen,
    dataRoots: r.dataRoots(),
    dataMaxBytes: r.int('SPINMESH_DATA_FILE_MAX_BYTES', CONFIG_DEFAULTS.dataMaxBytes, 1),
    logLevel,
    heapGrowingPercent: r.heapGrowingPercent(CONFIG_DEFAULTS.heapGrowingPercent),
    stopOnStdinClose,
  };
}
