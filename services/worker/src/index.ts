// @spinmesh/worker: one shard of a job. For now its peer spin-exchange transport; the sampling
// loop and the WorkerControl service come with the cluster runtime.
export {
  PeerServer,
  PeerLink,
  PeerLinkError,
  type FrameHandler,
  type PeerServerOptions,
  type PeerServerStats,
  type PeerServerEvents,
  type PeerLinkOptions,
  type PeerLinkStats,
  type PeerLinkEvents,
  type PeerLinkState,
  type SpinBlock,
} from './peers.js';
export {
  FrameDeduper,
  checkFrameShape,
  packedBytes,
  valuesBytes,
  type FrameKey,
  type FrameDeduperOptions,
} from './frames.js';
