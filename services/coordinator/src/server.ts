// The coordinator process put together: the state bus (Redis, or in-process and served to the
// workers over gRPC), the gRPC server (JobService, health, the bus), the control loop, and an
// orderly shutdown.
import { randomBytes } from 'node:crypto';

import * as grpc from '@grpc/grpc-js';
import { MemoryBus, RedisBus, serveBus, type Bus } from '@spinmesh/bus';
import { loadKernels, type Kernels } from '@spinmesh/kernels';
import {
  OVERALL_HEALTH,
  ServiceNames,
  ServingStatus,
  addHealthService,
  addReflectionService,
  channelCredentials,
  serverCredentials,
  tokenInterceptor,
  type HealthReporter,
} from '@spinmesh/proto';
import { confinedAccess } from '@spinmesh/model';
import { withRpcMetrics, type CoordinatorMetrics } from '@spinmesh/telemetry';

import type { CoordinatorConfig } from './config.js';
import { Coordinator } from './coordinator.js';
import { addJobService, type JobServiceHandle } from './job-service.js';
import { addModelService } from './model-service.js';
import { ModelRunner } from './model-runner.js';
import type { Logger } from './log.js';
import { WorkerClients } from './worker-client.js';

/** A running coordinator. */
export interface CoordinatorServer {
  /** host:port the gRPC server listens on (the port picked when the config said 0). */
  readonly address: string;
  readonly bus: Bus;
  readonly coordinator: Coordinator;
  /** Stops the loop, ends watch streams, stops the server and closes the bus. Idempotent. */
  close(): Promise<void>;
}

/** Options besides the config (tests pass a bus or kernels of their own). */
export interface StartOptions {
  /** Use this bus instead of the one the config says (the caller closes it). */
  bus?: Bus;
  kernels?: Kernels;
  /** Metrics to feed (RPCs, jobs, evaluations); main serves them on /metrics. */
  metrics?: CoordinatorMetrics;
}

/** Starts a coordinator as the config says. */
export async function startCoordinator(
  config: CoordinatorConfig,
  log: Logger,
  options: StartOptions = {},
): Promise<CoordinatorServer> {
  const ownBus = options.bus === undefined;
  const bus: Bus =
    options.bus ??
    (config.redis
      ? await RedisBus.connect({
          ...config.redis,
          connectionName: 'spinmesh-coordinator',
          onError: (err) => log.warn({ err }, 'redis connection error'),
        })
      : new MemoryBus());
  const inProcessBus = options.bus === undefined && config.redis === null;
  // The bus is never served without a secret: with none configured, one that nobody else knows,
  // which closes it to every worker outside this process (the embedded cluster passes its own).
  const configuredSecret = config.clusterSecret === '' ? null : config.clusterSecret;
  const busSecret = inProcessBus
    ? (configuredSecret ?? randomBytes(32).toString('base64url'))
    : null;
  const clusterSecret = busSecret ?? configuredSecret;
  if (inProcessBus && configuredSecret === null)
    log.warn(
      'SPINMESH_CLUSTER_SECRET is not set: the in-process bus refuses every worker; ' +
        'give the coordinator and its workers the same SPINMESH_CLUSTER_SECRET',
    );
  const kernels = options.kernels ?? loadKernels(config.kernels);
  const workers = new WorkerClients({
    clusterSecret,
    credentials: channelCredentials(config.tls),
    timeoutMs: config.rpcTimeoutMs,
  });
  const dataAccess = confinedAccess(config.dataRoots, config.dataMaxBytes);
  const runner = new ModelRunner({
    kernels: config.kernels,
    maxConcurrent: config.modelOpsMax,
    dataAccess,
  });
  const coordinator = new Coordinator({
    runner,
    bus,
    workers,
    kernels,
    log,
    heartbeatTimeoutMs: config.heartbeatTimeoutMs,
    pollIntervalMs: config.pollIntervalMs,
    progressIntervalMs: config.progressIntervalMs,
    maxRecoveries: config.maxRecoveries,
    dataAccess,
    metrics: options.metrics,
    limits: config.limits,
  });

  // One limit for every service on this listener, the in-process bus included: grpc-js applies
  // it per server, before a message is buffered, and a larger one for the bus's checkpoints would
  // let anyone send messages that large to the API too. A checkpoint must fit in it.
  const serverOptions: grpc.ServerOptions = {
    'grpc.max_receive_message_length': config.maxMessageBytes,
    'grpc.max_send_message_length': config.maxMessageBytes,
    // The bus checks the cluster secret itself; health stays open for probes.
    ...(config.apiToken !== null
      ? {
          interceptors: [
            tokenInterceptor(config.apiToken, [ServiceNames.health, ServiceNames.bus]),
          ],
        }
      : {}),
  };
  const server = new grpc.Server(withRpcMetrics(options.metrics?.rpc, serverOptions));
  const health: HealthReporter = addHealthService(server, {
    [ServiceNames.jobs]: ServingStatus.SERVING,
    [ServiceNames.models]: ServingStatus.SERVING,
    ...(inProcessBus ? { [ServiceNames.bus]: ServingStatus.SERVING } : {}),
  });
  const jobs: JobServiceHandle = addJobService(server, { bus, coordinator, log });
  addModelService(server, {
    bus,
    runner,
    kernels,
    log,
    maxMessageBytes: config.maxMessageBytes,
    maxUnitUpdates: config.maxUnitUpdates,
    limits: config.limits,
  });
  addReflectionService(server, [
    ServiceNames.jobs,
    ServiceNames.models,
    ServiceNames.health,
    ...(inProcessBus ? [ServiceNames.bus] : []),
  ]);
  if (busSecret !== null) {
    serveBus(server, bus, {
      secret: busSecret,
      onError: (err, method) => log.warn({ err, method }, 'bus call failed'),
    });
  }
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(config.listen, serverCredentials(config.tls), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  const address = `${host}:${port}`;

  // The health of the whole server follows the bus: NOT_SERVING while it does not answer.
  const healthTimer = setInterval(() => {
    bus.ping().then(
      () => health.setStatus(OVERALL_HEALTH, ServingStatus.SERVING),
      () => health.setStatus(OVERALL_HEALTH, ServingStatus.NOT_SERVING),
    );
  }, 5000);
  healthTimer.unref();

  coordinator.start();
  log.info(
    { address, bus: inProcessBus ? 'in-process (served over gRPC)' : ownBus ? 'redis' : 'given' },
    'listening',
  );

  let closing: Promise<void> | null = null;
  return {
    address,
    bus,
    coordinator,
    close() {
      closing ??= (async () => {
        clearInterval(healthTimer);
        health.shutdown();
        jobs.close();
        // The loop first: a sequence job whose thread the runner then stops stays running, and
        // the next coordinator trains it again.
        await coordinator.stop();
        await runner.close();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 5000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        workers.close();
        if (ownBus) await bus.close();
      })();
      return closing;
    },
  };
}
