// The coordinator's settings, read once from the environment in main (docs/configuration.md lists
// every variable). Defaults first, then validated: a bad value stops the process at start with a
// message naming the variable.
import { DATA_MAX_BYTES_DEFAULT } from '@spinmesh/model';
import { REDIS_ENV_VARS, redisBusOptionsFromEnv, type RedisBusOptions } from '@spinmesh/bus';
import { DEFAULT_LIMITS, type Limits } from '@spinmesh/model';
import type { TlsConfig } from '@spinmesh/proto';
import { ConfigError, EnvReader, HOST_PORT, type Env } from '@spinmesh/cluster';

export { ConfigError } from '@spinmesh/cluster';

export interface CoordinatorConfig {
  /**
   * host:port of the gRPC server (JobService, health, and the bus when it is in-process); port 0
   * picks a free one (the `listening` log line says which).
   * @defaultValue '0.0.0.0:7070'
   */
  listen: string;
  /**
   * The Redis bus's options when REDIS_URL is set; null: an in-process bus, served to the
   * workers over gRPC on `listen` (they set SPINMESH_BUS_ADDRESS to it). An in-process bus lives
   * and dies with this process.
   */
  redis: RedisBusOptions | null;
  /**
   * Shared secret of the cluster: sent to the workers with every WorkerControl call and required
   * from every caller of the in-process bus (metadata `spinmesh-cluster-secret`). null: none.
   */
  clusterSecret: string | null;
  /**
   * A worker whose Status calls have failed for this long is declared lost, like one whose bus
   * registration expired (its heartbeat TTL, which the worker sets).
   * @defaultValue 10000
   */
  heartbeatTimeoutMs: number;
  /** How often the coordinator looks at its jobs and workers. @defaultValue 500 */
  pollIntervalMs: number;
  /** Deadline of each WorkerControl call (Assign, Stop, Status). @defaultValue 5000 */
  rpcTimeoutMs: number;
  /** Least time between two progress events of a job. @defaultValue 1000 */
  progressIntervalMs: number;
  /**
   * Reassignments after failures a job may need before the coordinator gives up and fails it
   * (a shard that fails on every worker would otherwise loop forever).
   * @defaultValue 20
   */
  maxRecoveries: number;
  /**
   * Rebalances a lockstep job may have when its workers run at different speeds (units moved
   * from slow workers to fast ones at a checkpoint; the model does not change); 0: never.
   * @defaultValue 3
   */
  maxRebalances: number;
  /**
   * How much longer, in percent, the slowest shard's time per step must be than the fastest's
   * before a job is rebalanced. @defaultValue 20
   */
  rebalanceThresholdPct: number;
  /** Least seconds a rebalance must be predicted to save over the rest of a job. @defaultValue 10 */
  rebalanceMinSavingS: number;
  /**
   * Debug, for tests of recovery: the coordinator kills itself (SIGKILL) in its first rebalance
   * after re-cutting this many shards' checkpoints, before it records the move; 0: never.
   * @defaultValue 0
   */
  debugStopInMove: number;
  /**
   * The token every client of JobService, ModelService and reflection must send (metadata
   * `authorization: Bearer <token>`); the health service stays open for probes. null: no token.
   */
  apiToken: string | null;
  /**
   * TLS: of the gRPC server (SPINMESH_TLS_CERT and SPINMESH_TLS_KEY) and of the channels to the
   * workers (SPINMESH_TLS_CA, or SPINMESH_TLS=1 for the system's roots). Plaintext by default.
   */
  tls: TlsConfig;
  /** Model operations (Sample, Complete, Evaluate) running at once, one thread each. @defaultValue 2 */
  modelOpsMax: number;
  /**
   * Largest gRPC message in bytes, received (a job spec, Complete's cues) or answered (samples,
   * completions). @defaultValue 67108864 (64 MiB)
   */
  maxMessageBytes: number;
  /** Most unit updates one model request may ask for (chains x sweeps x units). @defaultValue 1e10 */
  maxUnitUpdates: number;
  /**
   * What one job or request may cost and what the queue may hold (SPINMESH_MAX_UNITS,
   * SPINMESH_MAX_WEIGHT_BYTES, SPINMESH_MAX_STATE_BYTES, SPINMESH_MAX_DATA_BYTES,
   * SPINMESH_MAX_WORK, SPINMESH_MAX_QUEUED_JOBS, SPINMESH_MAX_QUEUED_BYTES).
   * @defaultValue DEFAULT_LIMITS of @spinmesh/model
   */
  limits: Limits;
  /**
   * host:port of the HTTP endpoint of the coordinator's Prometheus metrics (/metrics) and
   * liveness (/healthz); port 0 picks a free one (the `metrics listening` log line says which).
   * null (the value `off`): no endpoint.
   * @defaultValue '127.0.0.1:0' (local clusters never collide; containers set 0.0.0.0:9464)
   */
  metricsListen: string | null;
  /** Kernels for assembling and evaluating models: cuda, native, portable or auto. @defaultValue 'auto' */
  kernels: 'cuda' | 'native' | 'portable' | 'auto';
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
   * (SPINMESH_HEAP_GROWING_PERCENT; 0: V8's own). The embedded bus of a local cluster lives in
   * the coordinator and takes every checkpoint, a few MB each; with V8's default factor those
   * buffers started a full collection about every checkpoint round, on cores the workers use.
   * @defaultValue 300 (x4)
   */
  heapGrowingPercent: number;
  /**
   * Shut down when stdin ends: set by a parent process (the embedded local cluster of
   * `spinmesh train`) so that the coordinator never outlives it.
   * @defaultValue false
   */
  stopOnStdinClose: boolean;
}

export const CONFIG_DEFAULTS: Omit<
  CoordinatorConfig,
  'redis' | 'clusterSecret' | 'apiToken' | 'tls'
> = {
  listen: '0.0.0.0:7070',
  heartbeatTimeoutMs: 10_000,
  pollIntervalMs: 500,
  rpcTimeoutMs: 5_000,
  progressIntervalMs: 1_000,
  maxRecoveries: 20,
  maxRebalances: 3,
  rebalanceThresholdPct: 20,
  rebalanceMinSavingS: 10,
  debugStopInMove: 0,
  heapGrowingPercent: 300,
  modelOpsMax: 2,
  maxMessageBytes: 64 << 20,
  maxUnitUpdates: 1e10,
  limits: DEFAULT_LIMITS,
  metricsListen: '127.0.0.1:0',
  kernels: 'auto',
  dataRoots: [] as string[],
  dataMaxBytes: DATA_MAX_BYTES_DEFAULT,
  logLevel: 'info',
  stopOnStdinClose: false,
};

/** The variable that sets each limit (error messages name it, so an operator knows what to raise). */
export const LIMIT_ENV_VARS: Readonly<Record<keyof Limits, string>> = {
  maxUnits: 'SPINMESH_MAX_UNITS',
  maxWeightBytes: 'SPINMESH_MAX_WEIGHT_BYTES',
  maxStateBytes: 'SPINMESH_MAX_STATE_BYTES',
  maxDataBytes: 'SPINMESH_MAX_DATA_BYTES',
  maxWork: 'SPINMESH_MAX_WORK',
  maxQueuedJobs: 'SPINMESH_MAX_QUEUED_JOBS',
  maxQueuedBytes: 'SPINMESH_MAX_QUEUED_BYTES',
};

/** Every variable configFromEnv reads (the deployment's test holds compose files to it). */
export const COORDINATOR_ENV_VARS = [
  'SPINMESH_COORDINATOR_LISTEN',
  ...REDIS_ENV_VARS,
  'SPINMESH_CLUSTER_SECRET',
  'SPINMESH_HEARTBEAT_TIMEOUT_MS',
  'SPINMESH_COORDINATOR_POLL_MS',
  'SPINMESH_RPC_TIMEOUT_MS',
  'SPINMESH_PROGRESS_INTERVAL_MS',
  'SPINMESH_MAX_RECOVERIES',
  'SPINMESH_MAX_REBALANCES',
  'SPINMESH_REBALANCE_THRESHOLD_PCT',
  'SPINMESH_REBALANCE_MIN_SAVING_S',
  'SPINMESH_DEBUG_STOP_IN_MOVE',
  'SPINMESH_API_TOKEN',
  'SPINMESH_TLS_CERT',
  'SPINMESH_TLS_KEY',
  'SPINMESH_TLS_CA',
  'SPINMESH_TLS',
  'SPINMESH_MODEL_OPS_MAX',
  'SPINMESH_MAX_MESSAGE_BYTES',
  'SPINMESH_MAX_UNIT_UPDATES',
  ...Object.values(LIMIT_ENV_VARS),
  'SPINMESH_METRICS_LISTEN',
  'SPINMESH_KERNELS',
  'SPINMESH_DATA_ROOTS',
  'SPINMESH_DATA_DIR',
  'SPINMESH_DATA_FILE_MAX_BYTES',
  'SPINMESH_LOG_LEVEL',
  'SPINMESH_HEAP_GROWING_PERCENT',
  'SPINMESH_STOP_ON_STDIN_CLOSE',
] as const;

/** Reads and checks the coordinator's variables. @throws ConfigError naming the variable */
export function configFromEnv(env: Env = process.env): CoordinatorConfig {
  const r = new EnvReader(env);
  const listen = r.get('SPINMESH_COORDINATOR_LISTEN') ?? CONFIG_DEFAULTS.listen;
  if (!HOST_PORT.test(listen))
    throw new ConfigError('SPINMESH_COORDINATOR_LISTEN', `must be host:port (got '${listen}')`);
  const kernels = r.kernels(CONFIG_DEFAULTS.kernels);
  const logLevel = r.logLevel(CONFIG_DEFAULTS.logLevel);
  const stopOnStdinClose = r.stopOnStdinClose();
  const tls = r.tls();
  const metricsListen = r.metricsListen(CONFIG_DEFAULTS.metricsListen ?? 'off');
  return {
    listen,
    redis: r.get('REDIS_URL') === undefined ? null : redisBusOptionsFromEnv(env),
    clusterSecret: r.get('SPINMESH_CLUSTER_SECRET') ?? null,
    heartbeatTimeoutMs: r.int(
      'SPINMESH_HEARTBEAT_TIMEOUT_MS',
      CONFIG_DEFAULTS.heartbeatTimeoutMs,
      1,
    ),
    pollIntervalMs: r.int('SPINMESH_COORDINATOR_POLL_MS', CONFIG_DEFAULTS.pollIntervalMs, 10),
    rpcTimeoutMs: r.int('SPINMESH_RPC_TIMEOUT_MS', CONFIG_DEFAULTS.rpcTimeoutMs, 1),
    progressIntervalMs: r.int(
      'SPINMESH_PROGRESS_INTERVAL_MS',
      CONFIG_DEFAULTS.progressIntervalMs,
      0,
    ),
    maxRecoveries: r.int('SPINMESH_MAX_RECOVERIES', CONFIG_DEFAULTS.maxRecoveries, 0),
    maxRebalances: r.int('SPINMESH_MAX_REBALANCES', CONFIG_DEFAULTS.maxRebalances, 0),
    rebalanceThresholdPct: r.int(
      'SPINMESH_REBALANCE_THRESHOLD_PCT',
      CONFIG_DEFAULTS.rebalanceThresholdPct,
      1,
    ),
    rebalanceMinSavingS: r.int(
      'SPINMESH_REBALANCE_MIN_SAVING_S',
      CONFIG_DEFAULTS.rebalanceMinSavingS,
      0,
    ),
    debugStopInMove: r.int('SPINMESH_DEBUG_STOP_IN_MOVE', CONFIG_DEFAULTS.debugStopInMove, 0),
    heapGrowingPercent: r.heapGrowingPercent(CONFIG_DEFAULTS.heapGrowingPercent),
    apiToken: r.get('SPINMESH_API_TOKEN') ?? null,
    tls,
    modelOpsMax: r.int('SPINMESH_MODEL_OPS_MAX', CONFIG_DEFAULTS.modelOpsMax, 1),
    maxMessageBytes: r.int('SPINMESH_MAX_MESSAGE_BYTES', CONFIG_DEFAULTS.maxMessageBytes, 1 << 20),
    maxUnitUpdates: r.int('SPINMESH_MAX_UNIT_UPDATES', CONFIG_DEFAULTS.maxUnitUpdates, 1),
    limits: Object.fromEntries(
      (Object.keys(LIMIT_ENV_VARS) as (keyof Limits)[]).map((k) => [
        k,
        r.int(LIMIT_ENV_VARS[k], DEFAULT_LIMITS[k], 1),
      ]),
    ) as unknown as Limits,
    metricsListen,
    kernels,
    dataRoots: r.dataRoots(),
    dataMaxBytes: r.int('SPINMESH_DATA_FILE_MAX_BYTES', CONFIG_DEFAULTS.dataMaxBytes, 1),
    logLevel,
    stopOnStdinClose,
  };
}
