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

/** The bus the coordinator uses, and whether and with which secret it serves it. */
interface BusChoice {
  bus: Bus;
  /** The coordinator opened it (and closes it). */
  ownBus: boolean;
  /** An in-process bus, served to the workers over gRPC. */
  inProcessBus: boolean;
  /** The secret the served bus requires; null: not served. */
  busSecret: string | null;
  /** The secret of the cluster's RPCs (workers, bus). */
  clusterSecret: string | null;
}

async function openBus(
  config: CoordinatorConfig,
  log: Logger,
  options: StartOptions,
): Promise<BusChoice> {
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
  if (inProcessBus && configuredSecret === null)
    log.warn(
      'SPINMESH_CLUSTER_SECRET is not set: the in-process bus refuses every worker; ' +
        'give the coordinator and its workers the same SPINMESH_CLUSTER_SECRET',
    );
  return {
    bus,
    ownBus: options.bus === undefined,
    inProcessBus,
    busSecret,
    clusterSecret: busSecret ?? configuredSecret,
  };
}

/** The gRPC server with every service of the coordinator on it, not yet bound. */
function createServer(
  config: CoordinatorConfig,
  log: Logger,
  parts: {
    choice: BusChoice;
    coordinator: Coordinator;
    runner: ModelRunner;
    kernels: Kernels;
    metrics: CoordinatorMetrics | undefined;
  },
): { server: grpc.Server; health: HealthReporter; jobs: JobServiceHandle } {
  const { bus, inProcessBus, busSecret } = parts.choice;
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
  const server = new grpc.Server(withRpcMetrics(parts.metrics?.rpc, serverOptions));
  const health: HealthReporter = addHealthService(server, {
    [ServiceNames.jobs]: ServingStatus.SERVING,
    [ServiceNames.models]: ServingStatus.SERVING,
    ...(inProcessBus ? { [ServiceNames.bus]: ServingStatus.SERVING } : {}),
  });
  const jobs = addJobService(server, { bus, coordinator: parts.coordinator, log });
  addModelService(server, {
    bus,
    runner: parts.runner,
    kernels: parts.kernels,
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
  return { server, health, jobs };
}

/** Binds the server; its host:port (the port picked when the config said 0). */
async function listen(server: grpc.Server, config: CoordinatorConfig): Promise<string> {
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(config.listen, serverCredentials(config.tls), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  const host = config.listen.slice(0, config.listen.lastIndexOf(':'));
  return `${host}:${port}`;
}

/** Starts a coordinator as the config says. */
export async function startCoordinator(
  config: CoordinatorConfig,
  log: Logger,
  options: StartOptions = {},
): Promise<CoordinatorServer> {
  const choice = await openBus(config, log, options);
  const { bus, ownBus, inProcessBus } = choice;
  const kernels = options.kernels ?? loadKernels(config.kernels);
  const workers = new WorkerClients({
    clusterSecret: choice.clusterSecret,
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
    rebalance: {
      maxRebalances: config.maxRebalances,
      threshold: config.rebalanceThresholdPct / 100,
      minSavingSeconds: config.rebalanceMinSavingS,
      debugStopInMove: config.debugStopInMove,
    },
    dataAccess,
    metrics: options.metrics,
    limits: config.limits,
  });
  const { server, health, jobs } = createServer(config, log, {
    choice,
    coordinator,
    runner,
    kernels,
    metrics: options.metrics,
  });
  const address = await listen(server, config);

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
        await shutDown(server);
        workers.close();
        if (ownBus) await bus.close();
      })();
      return closing;
    },
  };
}

/** Lets calls in progress end, for up to 5 s, then cuts them. */
function shutDown(server: grpc.Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, 5000);
    server.tryShutdown(() => {
      clearTimeout(force);
      resolve();
    });
  });
}
