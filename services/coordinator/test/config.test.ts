import { describe, expect, it } from 'vitest';
import {
  CONFIG_DEFAULTS,
  COORDINATOR_ENV_VARS,
  ConfigError,
  configFromEnv,
} from '../src/config.js';

describe('configFromEnv', () => {
  it('has documented defaults and an in-process bus without REDIS_URL', () => {
    const c = configFromEnv({});
    expect(c).toEqual({
      ...CONFIG_DEFAULTS,
      redis: null,
      clusterSecret: null,
      apiToken: null,
      tls: { server: null, client: null },
    });
  });

  it('reads every variable', () => {
    const c = configFromEnv({
      SPINMESH_COORDINATOR_LISTEN: '127.0.0.1:0',
      REDIS_URL: 'redis://127.0.0.1:6390',
      SPINMESH_REDIS_PREFIX: 'p1',
      SPINMESH_CLUSTER_SECRET: 's3cret',
      SPINMESH_HEARTBEAT_TIMEOUT_MS: '1500',
      SPINMESH_COORDINATOR_POLL_MS: '50',
      SPINMESH_RPC_TIMEOUT_MS: '700',
      SPINMESH_PROGRESS_INTERVAL_MS: '0',
      SPINMESH_MAX_RECOVERIES: '3',
      SPINMESH_MAX_REBALANCES: '2',
      SPINMESH_REBALANCE_THRESHOLD_PCT: '30',
      SPINMESH_REBALANCE_MIN_SAVING_S: '0',
      SPINMESH_DEBUG_STOP_IN_MOVE: '2',
      SPINMESH_HEAP_GROWING_PERCENT: '0',
      SPINMESH_KERNELS: 'portable',
      SPINMESH_LOG_LEVEL: 'warn',
      SPINMESH_STOP_ON_STDIN_CLOSE: '1',
      SPINMESH_API_TOKEN: 'tok',
      SPINMESH_TLS_CERT: '/etc/spinmesh/cert.pem',
      SPINMESH_TLS_KEY: '/etc/spinmesh/key.pem',
      SPINMESH_TLS_CA: '/etc/spinmesh/ca.pem',
      SPINMESH_MODEL_OPS_MAX: '3',
      SPINMESH_MAX_MESSAGE_BYTES: '2097152',
      SPINMESH_MAX_UNIT_UPDATES: '1000000',
      SPINMESH_MAX_UNITS: '1000',
      SPINMESH_MAX_WEIGHT_BYTES: '2000',
      SPINMESH_MAX_STATE_BYTES: '3000',
      SPINMESH_MAX_DATA_BYTES: '4000',
      SPINMESH_MAX_WORK: '1e12',
      SPINMESH_MAX_QUEUED_JOBS: '6',
      SPINMESH_MAX_QUEUED_BYTES: '7000',
      SPINMESH_METRICS_LISTEN: '0.0.0.0:9464',
      SPINMESH_DATA_ROOTS: '/srv/data:/mnt/more',
      SPINMESH_DATA_DIR: '/srv/fashion',
      SPINMESH_DATA_FILE_MAX_BYTES: '1048576',
    });
    expect(c).toEqual({
      listen: '127.0.0.1:0',
      redis: { url: 'redis://127.0.0.1:6390', prefix: 'p1' },
      clusterSecret: 's3cret',
      heartbeatTimeoutMs: 1500,
      pollIntervalMs: 50,
      rpcTimeoutMs: 700,
      progressIntervalMs: 0,
      maxRecoveries: 3,
      maxRebalances: 2,
      rebalanceThresholdPct: 30,
      rebalanceMinSavingS: 0,
      debugStopInMove: 2,
      heapGrowingPercent: 0,
      apiToken: 'tok',
      tls: {
        server: { certFile: '/etc/spinmesh/cert.pem', keyFile: '/etc/spinmesh/key.pem' },
        client: { caFile: '/etc/spinmesh/ca.pem' },
      },
      modelOpsMax: 3,
      maxMessageBytes: 2097152,
      maxUnitUpdates: 1000000,
      limits: {
        maxUnits: 1000,
        maxWeightBytes: 2000,
        maxStateBytes: 3000,
        maxDataBytes: 4000,
        maxWork: 1e12,
        maxQueuedJobs: 6,
        maxQueuedBytes: 7000,
      },
      metricsListen: '0.0.0.0:9464',
      kernels: 'portable',
      dataRoots: ['/srv/data', '/mnt/more'],
      dataMaxBytes: 1048576,
      logLevel: 'warn',
      stopOnStdinClose: true,
    });
  });

  it('reads job data from SPINMESH_DATA_DIR when no data roots are set, and from nowhere by default', () => {
    expect(configFromEnv({ SPINMESH_DATA_DIR: '/srv/fashion' }).dataRoots).toEqual([
      '/srv/fashion',
    ]);
    expect(configFromEnv({}).dataRoots).toEqual([]);
    expect(configFromEnv({}).dataMaxBytes).toBe(64 << 20);
  });

  it.each([
    ['SPINMESH_COORDINATOR_LISTEN', 'localhost'],
    ['SPINMESH_HEARTBEAT_TIMEOUT_MS', '0'],
    ['SPINMESH_COORDINATOR_POLL_MS', 'fast'],
    ['SPINMESH_KERNELS', 'gpu'],
    ['SPINMESH_LOG_LEVEL', 'loud'],
    ['SPINMESH_STOP_ON_STDIN_CLOSE', 'yes'],
    ['SPINMESH_MODEL_OPS_MAX', '0'],
    ['SPINMESH_MAX_MESSAGE_BYTES', '1000'],
    ['SPINMESH_METRICS_LISTEN', '9464'],
    ['SPINMESH_MAX_STATE_BYTES', '0'],
    ['SPINMESH_MAX_QUEUED_JOBS', 'many'],
    ['SPINMESH_MAX_WORK', '1e300'],
    ['SPINMESH_DATA_ROOTS', '/srv/data:relative/dir'],
    ['SPINMESH_DATA_DIR', 'data'],
    ['SPINMESH_DATA_FILE_MAX_BYTES', '0'],
    ['SPINMESH_HEAP_GROWING_PERCENT', '-1'],
    ['SPINMESH_HEAP_GROWING_PERCENT', '10001'],
  ])('refuses a bad %s, naming it', (name, value) => {
    expect(() => configFromEnv({ [name]: value })).toThrow(ConfigError);
    expect(() => configFromEnv({ [name]: value })).toThrow(new RegExp(`^${name} `));
  });

  it('needs both TLS files, naming the missing one', () => {
    expect(() => configFromEnv({ SPINMESH_TLS_CERT: '/c.pem' })).toThrow(
      /^SPINMESH_TLS_KEY must be set too/,
    );
    expect(() => configFromEnv({ SPINMESH_TLS_KEY: '/k.pem' })).toThrow(
      /^SPINMESH_TLS_CERT must be set too/,
    );
  });

  it('turns the metrics endpoint off', () => {
    expect(configFromEnv({ SPINMESH_METRICS_LISTEN: 'off' }).metricsListen).toBeNull();
  });

  it('lists every variable it reads in COORDINATOR_ENV_VARS', () => {
    const read = new Set<string>();
    const record = (values: Record<string, string>): Record<string, string | undefined> =>
      new Proxy(values, {
        get: (target, name) => {
          if (typeof name === 'string') read.add(name);
          return typeof name === 'string' ? target[name] : undefined;
        },
      });
    configFromEnv(record({}));
    configFromEnv(record({ REDIS_URL: 'redis://r:1' }));
    const listed: readonly string[] = COORDINATOR_ENV_VARS;
    expect([...read].filter((v) => !listed.includes(v))).toEqual([]);
    expect(read.size).toBe(listed.length);
  });
});
