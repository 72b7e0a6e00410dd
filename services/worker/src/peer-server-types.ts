// The shapes around a PeerServer: its options, counters and events, and what its handler uses
// of an Exchange call (from gRPC or from the framed stream).
import type * as grpc from '@grpc/grpc-js';
import type { SpinAck, SpinFrame } from '@spinmesh/proto';

import type { FrameDeduper } from './frames.js';

/** Receives each new frame; see PeerServerOptions.onFrame. */
export type FrameHandler = (frame: SpinFrame) => void | Promise<void>;

/** Options of a PeerServer. */
export interface PeerServerOptions {
  /** Credentials of the server start() makes (TLS). @defaultValue plaintext */
  credentials?: grpc.ServerCredentials;
  /**
   * The job whose frames are accepted (SpinFrame.job_id). Leave it and `generation` out for a
   * server with no assignment yet (a worker without a job): it answers every stream with
   * UNAVAILABLE, so that peers assigned before it retry instead of giving up.
   */
  jobId?: string;
  /** The assignment generation whose frames are accepted (SpinFrame.generation), >= 1. */
  generation?: number;
  /**
   * Receives every frame the first time it arrives, in the order its sender sent it; frames of
   * different senders may interleave. A frame is acknowledged to its sender once the handler
   * returns (or its promise resolves), so a slow handler slows its senders down. Throwing a
   * ServerError ends the sender's stream with that status; anything else ends it with INTERNAL
   * and is emitted as 'handlerError'.
   */
  onFrame: FrameHandler;
  /**
   * host:port to bind when the PeerServer makes its own grpc.Server.
   * @defaultValue '127.0.0.1:0' (a free port; read `address` after start)
   */
  address?: string;
  /**
   * Remembers delivered frames; pass the same one to a restarted server so that frames resent
   * to it are not delivered twice.
   * @defaultValue a new FrameDeduper
   */
  deduper?: FrameDeduper;
  /**
   * Add the gRPC health service to the server the PeerServer makes (PeerService reported
   * SERVING while it runs).
   * @defaultValue true
   */
  health?: boolean;
  /**
   * Largest frame the server accepts, in bytes (64 chains x 100,000 binary units is 800 KB).
   * @defaultValue 64 MiB
   */
  maxFrameBytes?: number;
  /**
   * Frames received on one stream and not yet handled before the server stops reading it (a
   * PeerLink never has more than its maxInFlight outstanding anyway).
   * @defaultValue 64
   */
  highWaterFrames?: number;
  /**
   * Handled frames after which an acknowledgement is sent even though more frames are waiting
   * (otherwise one acknowledgement covers everything handled when the queue runs empty).
   * @defaultValue 8
   */
  ackEveryFrames?: number;
  /**
   * How long close() lets the server finish in-progress calls before forcing it down, in ms.
   * @defaultValue 2000
   */
  closeGraceMs?: number;
  /**
   * The cluster secret: a stream whose metadata does not carry it (`spinmesh-cluster-secret`)
   * is ended with UNAUTHENTICATED. Unset or empty: no check.
   */
  secret?: string;
  /** The server start() makes also takes the framed stream there (see listenStream). */
  stream?: PeerStreamOptions;
}

/** Where a PeerServer also takes Exchange as a framed stream (listenStream). */
export interface PeerStreamOptions {
  /** Address to bind: the worker's listen host. */
  host: string;
  /** Port to bind; 0 for a free one. */
  port: number;
  /** TLS with the certificate and key of the worker's gRPC port. */
  tls?: { cert: Buffer; key: Buffer };
  /** As PeerServerOptions.maxFrameBytes. @defaultValue 64 MiB */
  maxFrameBytes?: number;
  /** How long a connection may take to authenticate, in ms. @defaultValue 5000 */
  handshakeTimeoutMs?: number;
}

/** Counters of a PeerServer since it started. */
export interface PeerServerStats {
  /** Exchange streams open now. */
  streams: number;
  /** Frames read off the wire, resent ones included. */
  framesReceived: number;
  /** Frames handed to onFrame. */
  framesDelivered: number;
  /** Frames dropped because they had been delivered before (resends). */
  duplicates: number;
  /** Serialized SpinFrame bytes received (gRPC and HTTP/2 framing not included). */
  bytesReceived: number;
  /** Acknowledgements sent (one covers every frame handled since the one before). */
  acksSent: number;
  /** Serialized SpinAck bytes sent. */
  bytesSent: number;
  /** Streams ended with an error status because of a frame (job, generation or shape). */
  rejected: number;
  /** The most frames received on one stream and not yet acknowledged, at any moment. */
  peakUnacked: number;
}

/** Counters of the frames from one sender (SpinFrame.from_shard) since the assignment. */
export interface PeerSenderStats {
  /** Frames read off the wire, resent ones included. */
  framesReceived: number;
  /** Serialized SpinFrame bytes received. */
  bytesReceived: number;
}

/** Events of a PeerServer (libraries do not log: the worker logs these). */
export interface PeerServerEvents {
  /** A stream was ended with an error status because of one of its frames. */
  reject: [info: { code: grpc.status; details: string; peer: string; fromShard: number }];
  /** onFrame threw something other than a ServerError. */
  handlerError: [err: unknown];
}

/**
 * What the handler uses of an Exchange call: a grpc-js server duplex stream, or a peer stream's
 * connection (stream/server.ts) with the same surface.
 */
export interface ExchangeCall {
  on(event: 'data', listener: (frame: SpinFrame) => void): unknown;
  on(event: 'end' | 'cancelled' | 'close', listener: () => void): unknown;
  emit(event: 'error', err: unknown): boolean;
  sendMetadata(md: grpc.Metadata): void;
  pause(): unknown;
  resume(): unknown;
  write(ack: SpinAck): boolean;
  end(): unknown;
  getPeer(): string;
}

export interface InStream {
  readonly call: ExchangeCall;
  readonly queue: SpinFrame[];
  fromShard: number | undefined;
  /** No more frames are handled or acknowledged (ended, rejected, cancelled, superseded). */
  done: boolean;
  /** The client half-closed: end the call once the queue is handled. */
  ended: boolean;
  paused: boolean;
  pumping: Promise<void> | null;
  /** Handling of an older stream of the same sender, to wait for before handling this one. */
  after: Promise<void> | null;
  arrived: number;
  acked: number;
  sinceAck: number;
  last: SpinFrame | null;
}
