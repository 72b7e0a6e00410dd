// Public entry of @spinmesh/coordinator: the coordinator as a library (tests, the embedded
// local cluster) and the helpers clients need to read its results. The process is main.ts.
export {
  configFromEnv,
  ConfigError,
  CONFIG_DEFAULTS,
  COORDINATOR_ENV_VARS,
  type CoordinatorConfig,
} from './config.js';
export { Coordinator, JobStateError, newJobId, type CoordinatorOptions } from './coordinator.js';
export { startCoordinator, type CoordinatorServer, type StartOptions } from './server.js';
export { addJobService, type JobServiceHandle, type JobServiceOptions } from './job-service.js';
export { parseSpecText, type JobPlan } from './plan.js';
export { planJob, kinds, type CoordinatorKind } from './kinds/index.js';
export {
  buildAssignment,
  peerShards,
  shardRanges,
  toProtoNetwork,
  type PlacedShard,
} from './assignment.js';
export { MODEL_SLOT, readModel, storeModel } from './model-store.js';
export { toEvaluation, toJobMessage, toJobState, toWatchResponse } from './records.js';
export { busShardState, type ShardStateReader } from './shard-state.js';
export { WorkerClients, WorkerCallError, type WorkerClientsOptions } from './worker-client.js';
export { createLogger, type Logger } from './log.js';
export {
  LocalCluster,
  SERVICE_MAINS,
  type LocalClusterOptions,
  type LocalProcess,
  type WorkerRestart,
} from './local-cluster.js';
