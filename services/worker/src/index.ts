// @spinmesh/worker: one shard of a job. The service (Worker: WorkerControl, PeerService and
// health on one port, bus membership, the sampling loop of its shard), its configuration and
// the peer spin-exchange transport. The bus protocol it shares with the coordinator is
// @spinmesh/cluster's.
export { Worker, checkAssignment, type WorkerOptions } from './worker.js';
export { ShardRun, type RunState, type RunDeps, type StopResult } from './run.js';
export { kinds, type WorkerKind, type ShardRunner } from './kinds/index.js';
export {
  configFromEnv,
  defaultWorkerId,
  CONFIG_DEFAULTS,
  WORKER_ENV_VARS,
  type WorkerConfig,
  type BusConfig,
} from './config.js';
export { createLogger, silentLogger, type Logger } from './log.js';
export { loadShardJob, jobParameterSource, JobLoadError, type ShardJob } from './job.js';
export {
  PeerServer,
  PeerLink,
  PeerLinkError,
  SECRET_METADATA,
  type FrameHandler,
  type PeerServerOptions,
  type PeerStreamOptions,
  type PeerServerStats,
  type PeerSenderStats,
  type PeerServerEvents,
  type PeerLinkOptions,
  type PeerLinkStats,
  type PeerLinkEvents,
  type PeerLinkState,
  type SpinBlock,
} from './peers.js';
export { ClientStreamCall, type StreamCallOptions } from './stream/client.js';
export {
  RecordType,
  RecordReader,
  MAGIC as PEER_STREAM_MAGIC,
  header as peerStreamHeader,
  proof as peerStreamProof,
  secretKey as peerStreamKey,
} from './stream/wire.js';
export {
  FrameDeduper,
  checkFrameShape,
  packedBytes,
  valuesBytes,
  type FrameKey,
  type FrameDeduperOptions,
} from './frames.js';
