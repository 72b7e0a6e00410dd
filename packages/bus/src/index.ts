// Public entry of @spinmesh/bus: the state bus interface, its Redis and in-process
// implementations, the job life cycle, and the errors. Imports no other spinmesh package.
// Each name is listed: what is not here is internal to the package.
export type { Bus } from './bus.js';
// The records the Bus interface takes and returns.
export type {
  AppendEventOptions,
  Assignment,
  Checkpoint,
  CheckpointInfo,
  JobEvent,
  JobEventRecord,
  JobPage,
  JobPatch,
  JobRecord,
  JobState,
  JsonObject,
  JsonValue,
  ListJobsOptions,
  NewJob,
  NewJobEvent,
  ReadEventsOptions,
  ShardAssignment,
  SpinSnapshot,
  TransitionResult,
  UnitRange,
  WorkerInfo,
} from './types.js';
// What a bus throws; every implementation throws the same classes.
export {
  BusClosedError,
  BusConnectionError,
  BusError,
  CheckpointReadError,
  IllegalTransitionError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  ShardNotFoundError,
  StaleAssignmentError,
  StaleWriterError,
} from './errors.js';
export {
  JOB_STATES,
  TERMINAL_STATES,
  LEGAL_TRANSITIONS,
  isJobState,
  isTerminalState,
  isLegalTransition,
} from './states.js';
export { Keys } from './keys.js';
export { MemoryBus, MemoryStore, type MemoryBusOptions } from './memory.js';
export { RedisBus } from './redis.js';
export {
  redisBusOptionsFromEnv,
  REDIS_BUS_DEFAULTS,
  REDIS_ENV_VARS,
  type RedisBusOptions,
  type RedisTlsOptions,
} from './redis-options.js';
export { RemoteBus, type RemoteBusOptions } from './remote.js';
export { RemoteBusError } from './remote-errors.js';
export { serveBus, type ServeBusOptions } from './remote-server.js';
export {
  BUS_SERVER_OPTIONS,
  BUS_MAX_MESSAGE_BYTES,
  BUS_SECRET_METADATA,
  BUS_ERROR_METADATA,
  type RemoteMethod,
} from './remote-wire.js';
