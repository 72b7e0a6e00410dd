#!/usr/bin/env node
// The coordinator process: `node services/coordinator/dist/main.js`. Reads its environment
// (docs/configuration.md lists every variable), serves until SIGTERM or SIGINT, then shuts down in
// order.
import { CoordinatorMetrics, startMetricsServer } from '@spinmesh/telemetry';
import { setHeapGrowingPercent } from '@spinmesh/cluster';

import { ConfigError, configFromEnv, type CoordinatorConfig } from './config.js';
import { createLogger } from './log.js';
import { startCoordinator } from './server.js';

async function main(): Promise<void> {
  let config: CoordinatorConfig;
  try {
    config = configFromEnv();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`spinmesh-coordinator: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  setHeapGrowingPercent(config.heapGrowingPercent); // config.ts says why
  const log = createLogger(config.logLevel);
  const metrics = new CoordinatorMetrics();
  const server = await startCoordinator(config, log, { metrics });
  const metricsServer =
    config.metricsListen === null
      ? null
      : await startMetricsServer({
          registry: metrics.registry,
          listen: config.metricsListen,
          beforeScrape: () => server.coordinator.refreshMetrics(),
          onError: (err) => log.warn({ err }, 'metrics endpoint error'),
        });
  if (metricsServer !== null) log.info({ address: metricsServer.address }, 'metrics listening');
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ why }, 'shutting down');
    Promise.all([server.close(), metricsServer?.close()]).then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  if (config.stopOnStdinClose) {
    process.stdin.on('end', () => stop('stdin closed'));
    process.stdin.on('error', () => stop('stdin closed'));
    process.stdin.resume();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(
    `spinmesh-coordinator: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  );
  process.exit(1);
});
