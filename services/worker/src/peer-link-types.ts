// The shapes around a PeerLink: a block of spins, the link's options, counters, states and
// events, and what it uses of a call (from gRPC or the framed stream).
import * as grpc from '@grpc/grpc-js';
import type { SpinAck } from '@spinmesh/proto';

/** A frame's payload and place; the link adds job, generation, sender and sequence number. */
export interface SpinBlock {
  /** SpinFrame.step. */
  step: number;
  /** SpinFrame.phase. */
  phase: number;
  /** SpinFrame.layer. */
  layer: number;
  /** SpinFrame.unit_start. */
  unitStart: number;
  /** SpinFrame.unit_count. */
  unitCount: number;
  /** SpinFrame.chains. */
  chains: number;
  /** Binary units, as kernels.packSpins packs the chains x unitCount block. */
  packed?: Uint8Array;
  /** Gaussian units, or a partial field: chains x unitCount little-endian float32. */
  values?: Uint8Array;
  /** SpinFrame.partial_field: `values` is the sender's partial field for these units. */
  partialField?: boolean;
  /** SpinFrame.reads: (layer, shard, stamp) triples (asynchronous persistent chains). */
  reads?: readonly number[];
}

/** Options of a PeerLink. */
export interface PeerLinkOptions {
  /** host:port of the peer's PeerService. */
  address: string;
  /** The channel's credentials (TLS). @defaultValue plaintext */
  credentials?: grpc.ChannelCredentials;
  /** Stamped on every frame: the job, the assignment generation and this shard. */
  jobId: string;
  generation: number;
  fromShard: number;
  /**
   * The most frames sent and not yet acknowledged; send() waits beyond that.
   * @defaultValue 16
   */
  maxInFlight?: number;
  /**
   * Wait before the first reconnection attempt, in ms; each failed attempt multiplies it by
   * backoffMultiplier, up to maxBackoffMs. An acknowledgement resets it.
   * @defaultValue 50
   */
  initialBackoffMs?: number;
  /** @defaultValue 5000 */
  maxBackoffMs?: number;
  /** @defaultValue 2 */
  backoffMultiplier?: number;
  /**
   * Random spread of each wait, as a fraction of it (0.2: between 0.8 and 1.2 times).
   * @defaultValue 0.2
   */
  backoffJitter?: number;
  /**
   * Failed attempts in a row (no acknowledgement in between) after which the link gives up
   * and fails with UNAVAILABLE.
   * @defaultValue Infinity
   */
  maxAttempts?: number;
  /** How long close() waits for the peer to end the stream before cancelling it, in ms. */
  closeGraceMs?: number;
  /** grpc-js channel options, over the link's own (keepalive every 10 s). */
  channelOptions?: grpc.ChannelOptions;
  /** The cluster secret, sent with every stream (`spinmesh-cluster-secret`). */
  secret?: string;
  /**
   * 'stream': the peer's framed stream where it has one (StreamEndpoint), else gRPC; 'grpc':
   * always the Exchange stream of gRPC. @defaultValue 'stream'
   */
  transport?: 'stream' | 'grpc';
  /**
   * TLS for the framed stream (trusting `ca`, or the system's roots): needed to use a peer's
   * stream that speaks TLS; without it such a peer is reached over gRPC. null: plaintext only.
   * @defaultValue null
   */
  streamTls?: { ca?: Buffer } | null;
}

/** What a PeerLink uses of a call: a grpc-js client duplex stream, or a ClientStreamCall. */
export interface LinkCall {
  write(bytes: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
  on(event: 'metadata', listener: () => void): unknown;
  on(event: 'data', listener: (ack: SpinAck) => void): unknown;
  on(event: 'error', listener: () => void): unknown;
  on(event: 'status', listener: (st: grpc.StatusObject) => void): unknown;
  end(): unknown;
  cancel(): void;
}

/** Where a peer takes the framed stream; null: it does not (or not in a form this link can use). */
export type StreamEndpoint = { port: number; tls: boolean } | null;

/** Counters of a PeerLink since it was made. */
export interface PeerLinkStats {
  /** Frames sent the first time. */
  framesSent: number;
  /** Transmissions of frames sent before, after a reconnection. */
  framesResent: number;
  /** Frames the peer acknowledged. */
  framesAcked: number;
  /** Serialized SpinFrame bytes written, resends included (gRPC, HTTP/2 framing excluded). */
  bytesSent: number;
  /** Serialized SpinAck bytes received. */
  bytesReceived: number;
  /** Streams opened after the first. */
  reconnects: number;
  /** Times the stream's write() returned false and the link waited for 'drain'. */
  drainWaits: number;
  /** The most frames unacknowledged at once. */
  peakInFlight: number;
}

/** State of a PeerLink. */
export type PeerLinkState = 'connecting' | 'open' | 'backoff' | 'failed' | 'closed';

/** Events of a PeerLink. */
export interface PeerLinkEvents {
  /** A stream is open: the peer answered. */
  connect: [];
  /** The stream broke (status says how); a reconnection is scheduled. */
  disconnect: [status: grpc.StatusObject];
  /** The link gave up: the peer rejected its frames, or maxAttempts ran out. */
  fail: [err: PeerLinkError];
}

/** Why a link failed, or why its send() or flush() was refused. */
export class PeerLinkError extends Error {
  override readonly name = 'PeerLinkError';
  constructor(
    readonly code: grpc.status,
    readonly details: string,
  ) {
    super(details);
  }
}
