// The peer spin-exchange transport, server and link, under the one name the run loop imports.
export { SECRET_METADATA } from './peer-common.js';
export {
  PeerServer,
  type FrameHandler,
  type PeerServerEvents,
  type PeerServerOptions,
  type PeerServerStats,
  type PeerSenderStats,
} from './peer-server.js';
export {
  PeerLink,
  PeerLinkError,
  type PeerLinkEvents,
  type PeerLinkOptions,
  type PeerLinkState,
  type PeerLinkStats,
  type SpinBlock,
} from './peer-link.js';
