// The peer spin-exchange transport, server and link, under the one name the run loop imports.
export { SECRET_METADATA } from './peer-common.js';
export { PeerServer } from './peer-server.js';
export {
  type FrameHandler,
  type PeerServerEvents,
  type PeerServerOptions,
  type PeerStreamOptions,
  type PeerServerStats,
  type PeerSenderStats,
} from './peer-server-types.js';
export { PeerLink } from './peer-link.js';
export {
  PeerLinkError,
  type PeerLinkEvents,
  type PeerLinkOptions,
  type PeerLinkState,
  type PeerLinkStats,
  type SpinBlock,
} from './peer-link-types.js';
