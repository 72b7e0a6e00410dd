#!/usr/bin/env node
// The worker process: reads its configuration from the environment (docs/configuration.md lists
// every variable), connects to the state bus, serves PeerService, WorkerControl and health on one
// port, and trains the shards the coordinator assigns until SIGTERM or SIGINT, which drain it
// (finish the checkpoint interval, checkpoint, close links, leave the membership) and exit 0. Exit
// codes: 0 after a drained shutdown, 1 when it cannot start or fails, 2 for a bad setting.

import { loadKernels } from '@spinmesh/kernels';
import { RedisBus, RemoteBus, type Bus } from '@spinmesh/bus';
import { channelCredentials } from '@spinmesh/proto';
import { confinedAccess } from '@spinmesh/model';
import { WorkerMetrics, startMetricsServer, type MetricsServer } from '@spinmesh/telemetry';
import { ConfigError, setHeapGrowingPercent } from '@spinmesh/cluster';

import { configFromEnv, type WorkerConfig } from './config.js';
import { createLogger, type Logger } from './log.js';
import { Worker } from './worker.js';

async function connectBus(config: WorkerConfig): Promise<Bus> {
  if (config.bus.kind === 'remote') {
    return RemoteBus.connect({
      address: config.bus.address,
      credentials: channelCredentials(config.tls),
      ...(config.clusterSecret !== null ? { secret: config.clusterSecret } : {}),
    });
  }
  return RedisBus.connect(config.bus.options);
}

/** The environment as a config; a bad variable ends the process (exit code 2) naming it. */
function configOrExit(): WorkerConfig {
  try {
    return configFromEnv();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    createLogger('unknown', 'info').fatal({ variable: err.variable }, err.message);
    process.exit(2);
  }
}

/** Calls `shutdown` on SIGTERM, SIGINT and, when the config says so, the end of stdin. */
function stopOnSignals(config: WorkerConfig, shutdown: (why: string) => Promise<void>): void {
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  if (config.stopOnStdinClose) {
    process.stdin.on('end', () => void shutdown('stdin closed'));
    process.stdin.on('error', () => void shutdown('stdin closed'));
    process.stdin.resume();
  }
}

async function main(): Promise<void> {
  const config = configOrExit();
  setHeapGrowingPercent(config.heapGrowingPercent); // config.ts says why a worker wants it
  const log: Logger = createLogger(config.workerId, config.logLevel);
  let bus: Bus | null = null;
  let worker: Worker | null = null;
  let metricsServer: MetricsServer | null = null;
  let exiting = false;
  const shutdown = async (why: string): Promise<void> => {
    if (exiting) return;
    exiting = true;
    log.info({ reason: why }, 'stopping');
    try {
      await worker?.shutdown();
      await metricsServer?.close();
      await bus?.close();
      process.exit(0);
    } catch (err) {
      log.error({ err: String(err) }, 'shutdown failed');
      process.exit(1);
    }
  };
  stopOnSignals(config, shutdown);
  try {
    const kernels = loadKernels(config.kernels, { threads: config.blasThreads });
    bus = await connectBus(config);
    log.info(
      {
        bus: config.bus.kind === 'remote' ? `grpc://${config.bus.address}` : 'redis',
        kernels: kernels.describe(),
        slowdown: config.debugSlowdown,
      },
      'starting',
    );
    const metrics = new WorkerMetrics();
    if (config.metricsListen !== null) {
      metricsServer = await startMetricsServer({
        registry: metrics.registry,
        listen: config.metricsListen,
        beforeScrape: () => worker?.refreshMetrics(),
        onError: (err) => log.warn({ err: String(err) }, 'metrics endpoint error'),
      });
      log.info({ address: metricsServer.address }, 'metrics listening');
    }
    worker = await Worker.start({
      id: config.workerId,
      listen: config.listen,
      advertise: config.advertise,
      bus,
      kernels,
      log,
      clusterSecret: config.clusterSecret,
      tls: config.tls,
      peerStreamPort: config.peerStreamPort,
      heartbeatMs: config.heartbeatMs,
      debugSlowdown: config.debugSlowdown,
      drainMs: config.drainMs,
      progressMs: config.progressMs,
      dataAccess: confinedAccess(config.dataRoots, config.dataMaxBytes),
      cores: config.blasThreads,
      metrics,
      ...(metricsServer !== null ? { meta: { metrics: metricsServer.address } } : {}),
    });
    if (exiting) await worker.shutdown();
  } catch (err) {
    log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'cannot start');
    await metricsServer?.close();
    await bus?.close().catch(() => {});
    process.exit(1);
  }
}

await main();
