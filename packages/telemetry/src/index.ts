// @spinmesh/telemetry: what the services export to Prometheus (one registry per service, the
// metric definitions the dashboards are checked against, the gRPC server interceptor, the
// /metrics endpoint) and the gRPC health probe their containers run.
export {
  Labels,
  RpcMetricDefs,
  WorkerMetricDefs,
  CoordinatorMetricDefs,
  STALENESS_BUCKETS,
  RPC_SECONDS_BUCKETS,
  EVALUATION_SECONDS_BUCKETS,
  type MetricDefinition,
  type MetricType,
} from './names.js';
export { createRegistry, exposedNames, type RegistryOptions } from './registry.js';
export { RpcMetrics, codeName, splitMethodPath, withRpcMetrics, type RpcType } from './rpc.js';
export {
  WorkerMetrics,
  WORKER_STATES,
  type WorkerStateName,
  type WorkerMetricsOptions,
  type ShardSample,
  type PeerSample,
  type UpdateSample,
} from './worker.js';
export {
  CoordinatorMetrics,
  JOB_STATES,
  type CoordinatorMetricsOptions,
  type EvaluationSample,
} from './coordinator.js';
export {
  startMetricsServer,
  parseHostPort,
  type MetricsServer,
  type MetricsServerOptions,
} from './server.js';
export {
  checkHealth,
  ownServerRoots,
  runHealthcheck,
  probeAddress,
  type HealthCheckOptions,
  type HealthCheckResult,
} from './health.js';
