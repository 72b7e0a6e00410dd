// @spinmesh/proto: the messages and services of proto/ as TypeScript (generated into gen/ by
// `npm run generate`; never edit gen/ by hand), the gRPC health service, and the error type
// server handlers throw.

export {
  UnitType,
  unitTypeFromJSON,
  unitTypeToJSON,
  LayerSpec,
  ConnectionSpec,
  NetworkSpec,
  UnitRange,
} from './gen/spinmesh/v1/common.js';

export {
  SpinFrame,
  SpinAck,
  StreamEndpointRequest,
  StreamEndpointResponse,
  PeerServiceService,
  PeerServiceClient,
  type PeerServiceServer,
} from './gen/spinmesh/v1/spins.js';

export {
  WorkerState,
  workerStateFromJSON,
  workerStateToJSON,
  ShardAssignment,
  PeerEndpoint,
  AssignResponse,
  StopRequest,
  StopResponse,
  CheckpointAtRequest,
  CheckpointAtResponse,
  StatusRequest,
  StalenessSummary,
  StalenessBucket,
  WorkerStatus,
  PeerCounters,
  WorkerControlService,
  WorkerControlClient,
  type WorkerControlServer,
} from './gen/spinmesh/v1/worker.js';

export {
  JobState,
  jobStateFromJSON,
  jobStateToJSON,
  SubmitJobRequest,
  SubmitJobResponse,
  GetJobRequest,
  GetJobResponse,
  ListJobsRequest,
  ListJobsResponse,
  WatchJobRequest,
  WatchJobResponse,
  Job,
  JobProgress,
  JobStateChange,
  Evaluation,
  WorkerChange,
  ShardWorker,
  CancelJobRequest,
  CancelJobResponse,
  JobServiceService,
  JobServiceClient,
  type JobServiceServer,
} from './gen/spinmesh/v1/jobs.js';

export {
  ModelFormat,
  modelFormatFromJSON,
  modelFormatToJSON,
  GetModelRequest,
  ModelChunk,
  Patterns,
  SampleRequest,
  SampleResponse,
  CompleteRequest,
  CompleteResponse,
  EvaluateRequest,
  EvaluateResponse,
  GenerateRequest,
  GenerateResponse,
  ModelServiceService,
  ModelServiceClient,
  type ModelServiceServer,
} from './gen/spinmesh/v1/models.js';

export {
  BusCall,
  BusReply,
  BusServiceService,
  BusServiceClient,
  type BusServiceServer,
} from './gen/spinmesh/v1/bus.js';

export {
  HealthCheckRequest,
  HealthCheckResponse,
  HealthListRequest,
  HealthListResponse,
  HealthService,
  HealthClient,
  type HealthServer,
} from './gen/grpc/health/v1/health.js';

export { type MessageFns, type DeepPartial } from './gen/spinmesh/v1/common.js';

export { addHealthService, OVERALL_HEALTH, ServingStatus, type HealthReporter } from './health.js';
export { MAX_DETAILS_CHARS, ServerError, capDetails, toServiceError } from './server-error.js';
export { addReflectionService, DESCRIPTOR_SET_URL } from './reflection.js';
export { guardDecoding } from './decode-guard.js';
export { encodeSpinFrame } from './frame-encoding.js';
export { AUTHORIZATION, bearerToken, tokenInterceptor, tokenMetadata } from './auth.js';
export {
  PLAINTEXT,
  TlsConfigError,
  channelCredentials,
  serverCredentials,
  tlsFromEnv,
  type TlsConfig,
} from './tls.js';

/**
 * ShardAssignment.staleness meaning "no bound": a worker never waits for its peers' spins
 * (the largest uint32; protobuf has no constants, so it lives here).
 */
export const STALENESS_UNBOUNDED = 0xffff_ffff;

/**
 * A staleness as ShardAssignment.staleness carries it. Inside the code a staleness is a number,
 * Infinity meaning unbounded (the spec's 'unbounded'); the sentinel exists only on the wire.
 */
export function stalenessToWire(staleness: number): number {
  return staleness === Infinity ? STALENESS_UNBOUNDED : staleness;
}

/** ShardAssignment.staleness as the code's number: Infinity for the unbounded sentinel. */
export function stalenessFromWire(wire: number): number {
  return wire === STALENESS_UNBOUNDED ? Infinity : wire;
}

/** Fully qualified names of the services, as the health service and tools know them. */
export const ServiceNames = {
  peer: 'spinmesh.v1.PeerService',
  workerControl: 'spinmesh.v1.WorkerControl',
  jobs: 'spinmesh.v1.JobService',
  models: 'spinmesh.v1.ModelService',
  bus: 'spinmesh.v1.BusService',
  health: 'grpc.health.v1.Health',
} as const;
