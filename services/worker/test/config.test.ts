// The worker's environment: defaults, every variable, errors naming the variable.
import { describe, expect, it } from 'vitest';
import { ConfigError } from '@spinmesh/cluster';

import { configFromEnv, WORKER_ENV_VARS, defaultWorkerId } from '../src/index.js';

describe('configFromEnv', () => {
  it('has defaults for everything', () => {
    const c = configFromEnv({});
    expect(c).toMatchObject({
      listen: '127.0.0.1:0',
      advertise: null,
      bus: { kind: 'redis', options: {} },
      clusterSecret: null,
      tls: { server: null, client: null },
      kernels: 'auto',
      blasThreads: 1,
      heartbeatMs: 1000,
      debugSlowdown: 1,
      drainMs: 8000,
      progressMs: 1000,
      metricsListen: '127.0.0.1:0',
      dataRoots: [],
      dataMaxBytes: 64 << 20,
      logLevel: 'info',
      heapGrowingPercent: 300,
      stopOnStdinClose: false,
    });
    expect(c.workerId).toBe(defaultWorkerId());
    expect(defaultWorkerId('my host.local', 42)).toBe('my-host.local-42');
  });

  it('reads every variable', () => {
    const c = configFromEnv({
      SPINMESH_WORKER_ID: 'w-7',
      SPINMESH_WORKER_LISTEN: '0.0.0.0:7100',
      SPINMESH_WORKER_ADVERTISE: 'worker-7:7100',
      SPINMESH_BUS_ADDRESS: 'coordinator:7070',
      REDIS_URL: 'redis://ignored:6379',
      SPINMESH_CLUSTER_SECRET: 's',
      SPINMESH_TLS_CERT: '/tls/cert.pem',
      SPINMESH_TLS_KEY: '/tls/key.pem',
      SPINMESH_TLS_CA: '/tls/ca.pem',
      SPINMESH_TLS: '1',
      SPINMESH_KERNELS: 'portable',
      OPENBLAS_NUM_THREADS: '2',
      SPINMESH_HEARTBEAT_MS: '250',
      SPINMESH_DEBUG_SLOWDOWN: '2.5',
      SPINMESH_WORKER_DRAIN_MS: '100',
      SPINMESH_PROGRESS_MS: '0',
      SPINMESH_METRICS_LISTEN: '0.0.0.0:9464',
      SPINMESH_DATA_ROOTS: '/data',
      SPINMESH_DATA_FILE_MAX_BYTES: '4096',
      SPINMESH_LOG_LEVEL: 'debug',
      SPINMESH_STOP_ON_STDIN_CLOSE: '1',
      SPINMESH_PEER_STREAM_PORT: '7101',
      SPINMESH_HEAP_GROWING_PERCENT: '0',
    });
    expect(c).toEqual({
      workerId: 'w-7',
      peerStreamPort: 7101,
      listen: '0.0.0.0:7100',
      advertise: 'worker-7:7100',
      bus: { kind: 'remote', address: 'coordinator:7070' },
      clusterSecret: 's',
      tls: {
        server: { certFile: '/tls/cert.pem', keyFile: '/tls/key.pem' },
        client: { caFile: '/tls/ca.pem' },
      },
      kernels: 'portable',
      blasThreads: 2,
      heartbeatMs: 250,
      debugSlowdown: 2.5,
      drainMs: 100,
      progressMs: 0,
      metricsListen: '0.0.0.0:9464',
      dataRoots: ['/data'],
      dataMaxBytes: 4096,
      logLevel: 'debug',
      heapGrowingPercent: 0,
      stopOnStdinClose: true,
    });
    const r = configFromEnv({ REDIS_URL: 'redis://r:1', SPINMESH_REDIS_PREFIX: 'p' });
    expect(r.bus).toEqual({ kind: 'redis', options: { url: 'redis://r:1', prefix: 'p' } });
    expect(configFromEnv({ SPINMESH_METRICS_LISTEN: 'off' }).metricsListen).toBeNull();
  });

  it('lists every variable it reads in WORKER_ENV_VARS', () => {
    const read = new Set<string>();
    const env = new Proxy({} as Record<string, string | undefined>, {
      get: (_, name) => {
        if (typeof name === 'string') read.add(name);
        return undefined;
      },
    });
    configFromEnv(env);
    const listed: readonly string[] = WORKER_ENV_VARS;
    expect([...read].filter((v) => !listed.includes(v))).toEqual([]);
    expect(read.size).toBe(listed.length);
  });

  it("takes the peer stream's port, 0 for a free one, or 'off'", () => {
    expect(configFromEnv({}).peerStreamPort).toBe(0);
    expect(configFromEnv({ SPINMESH_PEER_STREAM_PORT: '0' }).peerStreamPort).toBe(0);
    expect(configFromEnv({ SPINMESH_PEER_STREAM_PORT: 'off' }).peerStreamPort).toBeNull();
  });

  it('refuses bad values, naming the variable', () => {
    const bad: [Record<string, string>, string][] = [
      [{ SPINMESH_WORKER_ID: 'a:b' }, 'SPINMESH_WORKER_ID'],
      [{ SPINMESH_WORKER_LISTEN: 'nohost' }, 'SPINMESH_WORKER_LISTEN'],
      [{ SPINMESH_WORKER_ADVERTISE: 'h:0' }, 'SPINMESH_WORKER_ADVERTISE'],
      [{ SPINMESH_BUS_ADDRESS: 'x' }, 'SPINMESH_BUS_ADDRESS'],
      [{ SPINMESH_KERNELS: 'gpu' }, 'SPINMESH_KERNELS'],
      [{ OPENBLAS_NUM_THREADS: '0' }, 'OPENBLAS_NUM_THREADS'],
      [{ SPINMESH_HEARTBEAT_MS: '5' }, 'SPINMESH_HEARTBEAT_MS'],
      [{ SPINMESH_DEBUG_SLOWDOWN: '0.5' }, 'SPINMESH_DEBUG_SLOWDOWN'],
      [{ SPINMESH_WORKER_DRAIN_MS: '-1' }, 'SPINMESH_WORKER_DRAIN_MS'],
      [{ SPINMESH_LOG_LEVEL: 'loud' }, 'SPINMESH_LOG_LEVEL'],
      [{ SPINMESH_STOP_ON_STDIN_CLOSE: 'yes' }, 'SPINMESH_STOP_ON_STDIN_CLOSE'],
      [{ SPINMESH_METRICS_LISTEN: '9464' }, 'SPINMESH_METRICS_LISTEN'],
      [{ SPINMESH_PEER_STREAM_PORT: '70000' }, 'SPINMESH_PEER_STREAM_PORT'],
      [{ SPINMESH_PEER_STREAM_PORT: 'on' }, 'SPINMESH_PEER_STREAM_PORT'],
      [{ SPINMESH_HEAP_GROWING_PERCENT: '-1' }, 'SPINMESH_HEAP_GROWING_PERCENT'],
      [{ SPINMESH_HEAP_GROWING_PERCENT: '1.5' }, 'SPINMESH_HEAP_GROWING_PERCENT'],
      [{ SPINMESH_HEAP_GROWING_PERCENT: '10001' }, 'SPINMESH_HEAP_GROWING_PERCENT'],
    ];
    for (const [env, variable] of bad) {
      let err: unknown;
      try {
        configFromEnv(env);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as ConfigError).message.startsWith(variable)).toBe(true);
    }
  });

  it('wants the cluster secret beyond loopback and with a coordinator bus, and never echoes it', () => {
    const refused: Record<string, string>[] = [
      { SPINMESH_WORKER_LISTEN: '0.0.0.0:7100' },
      { SPINMESH_WORKER_LISTEN: '[::]:7100' },
      { SPINMESH_WORKER_LISTEN: '10.1.2.3:7100' },
      { SPINMESH_WORKER_LISTEN: 'worker-7:7100' },
      { SPINMESH_WORKER_LISTEN: '128.0.0.1:7100' },
      { SPINMESH_BUS_ADDRESS: 'coordinator:7070' },
    ];
    for (const env of refused) {
      expect(() => configFromEnv(env), JSON.stringify(env)).toThrow(
        /^SPINMESH_CLUSTER_SECRET must be set/,
      );
      expect(() => configFromEnv({ ...env, SPINMESH_CLUSTER_SECRET: '   ' })).toThrow(
        /^SPINMESH_CLUSTER_SECRET must be set/,
      );
      expect(configFromEnv({ ...env, SPINMESH_CLUSTER_SECRET: 'xyzzy' }).clusterSecret).toBe(
        'xyzzy',
      );
    }
    for (const listen of ['127.0.0.1:0', '127.9.9.9:7100', '[::1]:7100', 'localhost:7100'])
      expect(configFromEnv({ SPINMESH_WORKER_LISTEN: listen }).clusterSecret).toBeNull();
  });
});
