// Public entry of @spinmesh/bus: the state bus interface, its Redis and in-process
// implementations, the job life cycle, and the errors. Imports no other spinmesh package.
export type { Bus } from './bus.js';
export * from './types.js';
export * from './errors.js';
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
export {
  RedisBus,
  redisBusOptionsFromEnv,
  REDIS_BUS_DEFAULTS,
  REDIS_ENV_VARS,
  type RedisBusOptions,
  type RedisTlsOptions,
} from './redis.js';
export {
  RemoteBus,
  RemoteBusError,
  serveBus,
  BUS_SERVER_OPTIONS,
  BUS_MAX_MESSAGE_BYTES,
  BUS_SECRET_METADATA,
  BUS_ERROR_METADATA,
  type RemoteBusOptions,
  type RemoteMethod,
  type ServeBusOptions,
} from './remote.js';
