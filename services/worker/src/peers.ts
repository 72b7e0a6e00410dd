// The peer spin-exchange transport: a PeerServer receives the spin frames of the shards whose
// units connect to this worker's units; a PeerLink streams this shard's frames to one peer with
// back-pressure, and reconnects and resends when the stream breaks.
import { createHash, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';

import * as grpc from '@grpc/grpc-js';
import {
  addHealthService,
  PeerServiceService,
  ServerError,
  ServiceNames,
  ServingStatus,
  SpinAck,
  SpinFrame,
  StreamEndpointResponse,
  toServiceError,
  type HealthReporter,
  type PeerServiceServer,
} from '@spinmesh/proto';

import { checkFrameShape, FrameDeduper } from './frames.js';
import { ClientStreamCall } from './stream/client.js';
import { PeerStreamListener, type ServerStreamCall } from './stream/server.js';

const Status = grpc.status;

/** Metadata entry of the cluster secret (the same as the bus's and WorkerControl's). */
export const SECRET_METADATA = 'spinmesh-cluster-secret';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

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
interface ExchangeCall {
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

interface InStream {
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

/**
 * Serves spinmesh.v1.PeerService: takes the frames of its peers' PeerLinks, checks them against
 * the job and assignment generation, hands each new one to `onFrame`, and acknowledges them.
 * Either owns a grpc.Server (`PeerServer.start`) or joins one the worker owns
 * (`PeerServer.attach`).
 */
export class PeerServer extends EventEmitter<PeerServerEvents> {
  readonly stats: PeerServerStats = {
    streams: 0,
    framesReceived: 0,
    framesDelivered: 0,
    duplicates: 0,
    bytesReceived: 0,
    acksSent: 0,
    bytesSent: 0,
    rejected: 0,
    peakUnacked: 0,
  };
  private jobId: string | null;
  private generation: number;
  private readonly senders = new Map<number, PeerSenderStats>();
  private readonly onFrame: FrameHandler;
  private readonly deduper: FrameDeduper;
  private readonly highWater: number;
  private readonly ackEvery: number;
  private readonly closeGraceMs: number;
  private readonly secret: Buffer | null;
  private readonly streams = new Set<InStream>();
  private readonly bySender = new Map<number, InStream>();
  private server: grpc.Server | null = null;
  private health: HealthReporter | null = null;
  private closing: Promise<void> | null = null;
  private boundAddress = '';
  private stream: PeerStreamListener | null = null;
  private streamTls = false;
  private readonly rawSecret: string;

  /** Makes a grpc.Server with PeerService (and health), binds it, and returns once it listens. */
  static async start(opts: PeerServerOptions): Promise<PeerServer> {
    const maxFrameBytes = opts.maxFrameBytes ?? 64 * 1024 * 1024;
    checkPositiveInt('maxFrameBytes', maxFrameBytes);
    const server = new grpc.Server({ 'grpc.max_receive_message_length': maxFrameBytes });
    const ps = new PeerServer(opts, server);
    ps.server = server;
    if (opts.health ?? true) {
      ps.health = addHealthService(server, { [ServiceNames.peer]: ServingStatus.SERVING });
    }
    const want = opts.address ?? '127.0.0.1:0';
    try {
      const port = await new Promise<number>((resolve, reject) => {
        server.bindAsync(
          want,
          opts.credentials ?? grpc.ServerCredentials.createInsecure(),
          (err, p) => (err ? reject(err) : resolve(p)),
        );
      });
      ps.boundAddress = want.replace(/:\d+$/, `:${port}`);
      if (opts.stream) await ps.listenStream({ maxFrameBytes, ...opts.stream });
    } catch (err) {
      ps.forceClose();
      throw err;
    }
    return ps;
  }

  /**
   * Adds PeerService to `server`, which the caller binds and shuts down (the worker serves
   * PeerService, WorkerControl and health on one port). close() then ends the streams only.
   * The server's grpc.max_receive_message_length bounds the frame size.
   */
  static attach(server: grpc.Server, opts: PeerServerOptions): PeerServer {
    return new PeerServer(opts, server);
  }

  private constructor(opts: PeerServerOptions, server: grpc.Server) {
    super();
    if (opts.jobId !== undefined || opts.generation !== undefined) {
      checkAssignment(opts.jobId ?? '', opts.generation ?? 0);
    }
    this.jobId = opts.jobId ?? null;
    this.generation = opts.generation ?? 0;
    this.onFrame = opts.onFrame;
    this.deduper = opts.deduper ?? new FrameDeduper();
    this.highWater = opts.highWaterFrames ?? 64;
    this.ackEvery = opts.ackEveryFrames ?? 8;
    this.closeGraceMs = opts.closeGraceMs ?? 2000;
    this.secret = opts.secret ? digest(opts.secret) : null;
    this.rawSecret = opts.secret ?? '';
    checkPositiveInt('highWaterFrames', this.highWater);
    checkPositiveInt('ackEveryFrames', this.ackEvery);
    // Count bytes where the messages are (de)serialized, so the figures are those of the wire
    // messages, whichever transport carried them.
    const def = {
      exchange: {
        ...PeerServiceService.exchange,
        requestDeserialize: (b: Buffer): SpinFrame => this.decodeFrame(b),
        responseSerialize: (a: SpinAck): Buffer => this.encodeAck(a),
      },
      streamEndpoint: PeerServiceService.streamEndpoint,
    };
    const impl: PeerServiceServer = {
      exchange: (call) => this.handle(call),
      streamEndpoint: (call, callback) => {
        if (!this.authorized(call.metadata)) {
          callback(
            new ServerError(
              Status.UNAUTHENTICATED,
              'peer stream endpoint: missing or wrong cluster secret',
            ).toServiceError(),
          );
          return;
        }
        callback(
          null,
          StreamEndpointResponse.fromPartial({ port: this.streamPort, tls: this.streamTls }),
        );
      },
    };
    server.addService(def, impl);
  }

  /** host:port the server listens on ('' when attached to a server someone else binds). */
  get address(): string {
    return this.boundAddress;
  }

  /** The port it listens on (0 when attached). */
  get port(): number {
    const m = /:(\d+)$/.exec(this.address);
    return m ? Number(m[1]) : 0;
  }

  /** The port of the framed stream (listenStream), or 0. */
  get streamPort(): number {
    return this.stream?.port ?? 0;
  }

  /**
   * Also takes Exchange as a framed stream on a port of its own (stream/wire.ts), authenticated
   * by the cluster secret; StreamEndpoint tells peers where. Returns the port.
   */
  async listenStream(opts: PeerStreamOptions): Promise<number> {
    if (this.stream !== null) throw new Error('PeerServer: the stream listens already');
    this.stream = await PeerStreamListener.start({
      host: opts.host,
      port: opts.port,
      secret: this.rawSecret,
      ...(opts.tls ? { tls: opts.tls } : {}),
      maxFrameBytes: opts.maxFrameBytes ?? 64 * 1024 * 1024,
      ...(opts.handshakeTimeoutMs !== undefined
        ? { handshakeTimeoutMs: opts.handshakeTimeoutMs }
        : {}),
      deserialize: (b) => this.decodeFrame(b),
      serialize: (a) => this.encodeAck(a),
      onCall: (call: ServerStreamCall) => this.serve(call),
    });
    this.streamTls = opts.tls !== undefined;
    return this.stream.port;
  }

  /**
   * Moves to another job or assignment generation. Frames of an older generation are rejected
   * from now on; when the generation changes the deduper is cleared (a new generation's
   * frames are never duplicates of the old one's) and open streams are ended with UNAVAILABLE,
   * so that senders come back and are checked against the new assignment.
   */
  setAssignment(jobId: string, generation: number): void {
    checkAssignment(jobId, generation);
    if (jobId === this.jobId && generation === this.generation) return;
    this.jobId = jobId;
    this.generation = generation;
    this.reset();
  }

  /**
   * Drops the assignment (the worker has no job any more): open streams end with UNAVAILABLE
   * and new ones are answered UNAVAILABLE until the next setAssignment.
   */
  clearAssignment(): void {
    if (this.jobId === null) return;
    this.jobId = null;
    this.generation = 0;
    this.reset();
  }

  /** The job and generation whose frames are accepted; null when unassigned. */
  get assignment(): { jobId: string; generation: number } | null {
    return this.jobId === null ? null : { jobId: this.jobId, generation: this.generation };
  }

  /** Frames and bytes received from each sender (by from_shard) since the assignment changed. */
  senderStats(): ReadonlyMap<number, Readonly<PeerSenderStats>> {
    return this.senders;
  }

  private reset(): void {
    this.deduper.clear();
    this.senders.clear();
    for (const s of [...this.streams]) {
      this.finish(s, { code: Status.UNAVAILABLE, details: 'peer assignment changed: reconnect' });
    }
  }

  /**
   * Ends every stream with UNAVAILABLE (senders keep their unacknowledged frames and
   * reconnect), marks the health service NOT_SERVING, and shuts the server down if it owns
   * it: gracefully for up to closeGraceMs, then by force. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /**
   * Drops everything at once, as a crashed process would: no statuses are sent, connections
   * are reset. For tests and fatal paths; close() is the normal way.
   */
  forceClose(): void {
    for (const s of [...this.streams]) this.finish(s, null);
    this.stream?.destroy();
    this.stream = null;
    this.health?.shutdown();
    this.server?.forceShutdown();
    this.server = null;
    this.closing ??= Promise.resolve();
  }

  private async doClose(): Promise<void> {
    for (const s of [...this.streams]) {
      this.finish(s, { code: Status.UNAVAILABLE, details: 'peer server shutting down' });
    }
    const stream = this.stream;
    this.stream = null;
    await stream?.close();
    this.health?.shutdown();
    const server = this.server;
    this.server = null;
    if (server === null) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, this.closeGraceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private decodeFrame(b: Buffer): SpinFrame {
    this.stats.bytesReceived += b.length;
    const frame = SpinFrame.decode(b);
    let per = this.senders.get(frame.fromShard);
    if (per === undefined) {
      per = { framesReceived: 0, bytesReceived: 0 };
      this.senders.set(frame.fromShard, per);
    }
    per.framesReceived++;
    per.bytesReceived += b.length;
    return frame;
  }

  private encodeAck(a: SpinAck): Buffer {
    const b = Buffer.from(SpinAck.encode(a).finish());
    this.stats.bytesSent += b.length;
    return b;
  }

  private authorized(metadata: grpc.Metadata): boolean {
    if (this.secret === null) return true;
    const given = metadata.get(SECRET_METADATA)[0];
    return typeof given === 'string' && timingSafeEqual(digest(given), this.secret);
  }

  private handle(call: grpc.ServerDuplexStream<SpinFrame, SpinAck>): void {
    if (!this.authorized(call.metadata)) {
      call.emit(
        'error',
        new ServerError(
          Status.UNAUTHENTICATED,
          'peer stream: missing or wrong cluster secret',
        ).toServiceError(),
      );
      return;
    }
    this.serve(call);
  }

  /** Handles an authenticated Exchange call, from gRPC or from the framed stream. */
  private serve(call: ExchangeCall): void {
    if (this.closing !== null) {
      call.emit(
        'error',
        new ServerError(Status.UNAVAILABLE, 'peer server shutting down').toServiceError(),
      );
      return;
    }
    const s: InStream = {
      call,
      queue: [],
      fromShard: undefined,
      done: false,
      ended: false,
      paused: false,
      pumping: null,
      after: null,
      arrived: 0,
      acked: 0,
      sinceAck: 0,
      last: null,
    };
    this.streams.add(s);
    this.stats.streams = this.streams.size;
    // Headers now, so the sender knows the stream is up before its first acknowledgement.
    call.sendMetadata(new grpc.Metadata());
    call.on('data', (frame: SpinFrame) => this.arrive(s, frame));
    call.on('end', () => {
      s.ended = true;
      this.kick(s);
    });
    call.on('cancelled', () => this.finish(s, null));
    call.on('close', () => this.finish(s, null));
  }

  private arrive(s: InStream, frame: SpinFrame): void {
    if (s.done) return;
    this.stats.framesReceived++;
    s.arrived++;
    const unacked = s.arrived - s.acked;
    if (unacked > this.stats.peakUnacked) this.stats.peakUnacked = unacked;
    const err = this.check(frame);
    if (err !== null) {
      this.stats.rejected++;
      this.emit('reject', {
        code: err.code,
        details: err.details,
        peer: s.call.getPeer(),
        fromShard: frame.fromShard,
      });
      this.finish(s, err);
      return;
    }
    if (s.fromShard === undefined) {
      s.fromShard = frame.fromShard;
      // A sender has one link to us: a newer stream of it means the older one is dead, though
      // this side may not know yet. Hand over, keeping the sender's frames in order.
      const old = this.bySender.get(frame.fromShard);
      if (old !== undefined && old !== s) {
        s.after = old.pumping;
        this.finish(old, { code: Status.ABORTED, details: 'superseded by a newer stream' });
      }
      this.bySender.set(frame.fromShard, s);
    } else if (frame.fromShard !== s.fromShard) {
      const e = new ServerError(
        Status.INVALID_ARGUMENT,
        `spin frame: from_shard ${frame.fromShard} differs from this stream's sender ${s.fromShard}`,
      );
      this.stats.rejected++;
      this.emit('reject', {
        code: e.code,
        details: e.details,
        peer: s.call.getPeer(),
        fromShard: frame.fromShard,
      });
      this.finish(s, e);
      return;
    }
    s.queue.push(frame);
    if (!s.paused && s.queue.length >= this.highWater) {
      s.paused = true;
      s.call.pause();
    }
    this.kick(s);
  }

  /** null when the frame may be handled, else why not. */
  private check(frame: SpinFrame): ServerError | null {
    if (this.jobId === null) {
      return new ServerError(
        Status.UNAVAILABLE,
        `spin frame: this worker has no assignment yet (job '${frame.jobId}'): retry`,
      );
    }
    if (frame.jobId !== this.jobId) {
      return new ServerError(
        Status.FAILED_PRECONDITION,
        `spin frame: job_id '${frame.jobId}' is not this worker's job '${this.jobId}'`,
      );
    }
    if (frame.generation < this.generation) {
      return new ServerError(
        Status.FAILED_PRECONDITION,
        `spin frame: generation ${frame.generation} is older than this worker's assignment ` +
          `generation ${this.generation}`,
      );
    }
    if (frame.generation > this.generation) {
      return new ServerError(
        Status.UNAVAILABLE,
        `spin frame: generation ${frame.generation} is newer than this worker's assignment ` +
          `generation ${this.generation} (not reassigned yet: retry)`,
      );
    }
    try {
      checkFrameShape(frame);
    } catch (err) {
      if (err instanceof ServerError) return err;
      throw err;
    }
    return null;
  }

  private kick(s: InStream): void {
    if (s.pumping === null && !s.done) {
      s.pumping = this.pump(s).finally(() => {
        s.pumping = null;
      });
    }
  }

  private async pump(s: InStream): Promise<void> {
    if (s.after !== null) {
      await s.after;
      s.after = null;
    }
    while (!s.done && s.queue.length > 0) {
      const frame = s.queue.shift()!;
      if (this.deduper.admit(frame) === 'new') {
        try {
          await this.onFrame(frame);
        } catch (err) {
          if (!(err instanceof ServerError)) this.emit('handlerError', err);
          this.finish(s, toServiceError(err, 'handling the spin frame'));
          return;
        }
        this.stats.framesDelivered++;
      } else {
        this.stats.duplicates++;
      }
      if (s.done) return;
      s.last = frame;
      s.sinceAck++;
      if (s.queue.length === 0 || s.sinceAck >= this.ackEvery) this.ack(s);
      if (s.paused && s.queue.length <= this.highWater >>> 1) {
        s.paused = false;
        s.call.resume();
      }
    }
    if (s.ended && !s.done && s.queue.length === 0) this.finish(s, { code: Status.OK });
  }

  private ack(s: InStream): void {
    const f = s.last;
    if (f === null || s.sinceAck === 0) return;
    s.acked += s.sinceAck;
    s.sinceAck = 0;
    this.stats.acksSent++;
    // Acknowledgements are tiny and the sender reads them all the time: write() returning
    // false here needs no waiting.
    s.call.write({
      jobId: f.jobId,
      fromShard: f.fromShard,
      step: f.step,
      phase: f.phase,
      layer: f.layer,
      seq: f.seq,
    });
  }

  /**
   * Stops handling the stream; ends the call with `status` (OK or an error), or leaves it
   * (null: the call is already gone, or the server is being torn down).
   */
  private finish(s: InStream, status: { code: grpc.status; details?: string } | null): void {
    if (s.done) return;
    s.done = true;
    s.queue.length = 0;
    this.streams.delete(s);
    this.stats.streams = this.streams.size;
    if (s.fromShard !== undefined && this.bySender.get(s.fromShard) === s) {
      this.bySender.delete(s.fromShard);
    }
    if (status === null) return;
    if (status.code === Status.OK) {
      s.call.end();
    } else {
      const details = status.details ?? 'error';
      s.call.emit('error', new ServerError(status.code, details).toServiceError());
    }
  }
}

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
  /** Gaussian units: chains x unitCount little-endian float32. */
  values?: Uint8Array;
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
interface LinkCall {
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
type StreamEndpoint = { port: number; tls: boolean } | null;

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

/**
 * Statuses after which resending cannot help: the peer refuses these frames (RESOURCE_EXHAUSTED:
 * a frame over the peer's size limit, which grpc-js reports so).
 */
const FATAL: ReadonlySet<grpc.status> = new Set([
  Status.INVALID_ARGUMENT,
  Status.FAILED_PRECONDITION,
  Status.RESOURCE_EXHAUSTED,
  Status.UNIMPLEMENTED,
  Status.PERMISSION_DENIED,
  Status.UNAUTHENTICATED,
]);

interface OutFrame {
  readonly seq: number;
  readonly bytes: Buffer;
  sends: number;
}

interface Waiter {
  readonly frame: OutFrame;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/**
 * This shard's end of a stream to one peer. send() numbers each frame and writes it, keeping at
 * most maxInFlight unacknowledged (beyond that, its promise waits), and waits for 'drain' when
 * the stream's buffer is full. When the stream breaks it reconnects with exponential backoff and
 * resends the unacknowledged frames in order (the peer drops those it had). close() ends it.
 */
export class PeerLink extends EventEmitter<PeerLinkEvents> {
  readonly stats: PeerLinkStats = {
    framesSent: 0,
    framesResent: 0,
    framesAcked: 0,
    bytesSent: 0,
    bytesReceived: 0,
    reconnects: 0,
    drainWaits: 0,
    peakInFlight: 0,
  };
  private readonly opts: Required<
    Omit<PeerLinkOptions, 'channelOptions' | 'secret' | 'credentials' | 'streamTls'>
  > & {
    channelOptions: grpc.ChannelOptions;
    secret: string;
    credentials: grpc.ChannelCredentials;
    streamTls: { ca?: Buffer } | null;
  };
  /** The peer's framed stream: undefined until asked (again after each disconnection). */
  private endpoint: StreamEndpoint | undefined = undefined;
  private linkState: PeerLinkState = 'connecting';
  private failure: PeerLinkError | null = null;
  private nextSeq = 1;
  /** Sent (or to be sent on the current stream) and not acknowledged, by seq. */
  private readonly unacked: OutFrame[] = [];
  /** How many of `unacked` were written on the current stream. */
  private written = 0;
  private readonly waiting: Waiter[] = [];
  private flushers: { resolve: () => void; reject: (err: Error) => void }[] = [];
  private client: grpc.Client | null = null;
  private call: LinkCall | null = null;
  private draining = false;
  private attempts = 0;
  private opened = 0;
  private timer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;
  private onCallEnded: (() => void) | null = null;

  constructor(opts: PeerLinkOptions) {
    super();
    this.opts = {
      maxInFlight: 16,
      initialBackoffMs: 50,
      maxBackoffMs: 5000,
      backoffMultiplier: 2,
      backoffJitter: 0.2,
      maxAttempts: Infinity,
      closeGraceMs: 1000,
      ...definedOnly(opts),
      address: opts.address,
      jobId: opts.jobId,
      generation: opts.generation,
      fromShard: opts.fromShard,
      channelOptions: opts.channelOptions ?? {},
      credentials: opts.credentials ?? grpc.credentials.createInsecure(),
      secret: opts.secret ?? '',
      transport: opts.transport ?? 'stream',
      streamTls: opts.streamTls ?? null,
    };
    const o = this.opts;
    if (o.address === '') throw new RangeError('PeerLink: address must be host:port');
    checkAssignment(o.jobId, o.generation);
    if (!Number.isInteger(o.fromShard) || o.fromShard < 0) {
      throw new RangeError(`PeerLink: fromShard must be an integer >= 0, got ${o.fromShard}`);
    }
    checkPositiveInt('maxInFlight', o.maxInFlight);
    if (!(o.initialBackoffMs > 0) || !(o.maxBackoffMs >= o.initialBackoffMs)) {
      throw new RangeError('PeerLink: need 0 < initialBackoffMs <= maxBackoffMs');
    }
    if (!(o.backoffMultiplier >= 1)) {
      throw new RangeError('PeerLink: backoffMultiplier must be >= 1');
    }
    if (!(o.backoffJitter >= 0 && o.backoffJitter < 1)) {
      throw new RangeError('PeerLink: backoffJitter must be in [0, 1)');
    }
    if (!(o.maxAttempts >= 1)) throw new RangeError('PeerLink: maxAttempts must be >= 1');
    this.open();
  }

  /** connecting, open (a stream is up), backoff (waiting to reconnect), failed, closed. */
  get state(): PeerLinkState {
    return this.linkState;
  }

  /** What carries the current stream: the peer's framed stream, gRPC, or nothing yet. */
  get via(): 'stream' | 'grpc' | null {
    if (this.call === null) return null;
    return this.call instanceof ClientStreamCall ? 'stream' : 'grpc';
  }

  /** Frames sent and not yet acknowledged. */
  get inFlight(): number {
    return this.unacked.length;
  }

  /** The address of the peer. */
  get address(): string {
    return this.opts.address;
  }

  /**
   * Sends a block of spins. Resolves once the frame is in flight (at once while fewer than
   * maxInFlight are unacknowledged; else when acknowledgements make room), not when it is
   * acknowledged (see flush). Frames go out in the order of the send() calls. Rejects with a
   * PeerLinkError when the link is closed or failed, and with a RangeError for a malformed
   * block.
   */
  send(block: SpinBlock): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.closing !== null) return Promise.reject(closedError());
    for (const k of ['step', 'phase', 'layer', 'unitStart', 'unitCount', 'chains'] as const) {
      const v = block[k];
      if (!Number.isSafeInteger(v) || v < 0 || (k !== 'step' && v > 0xffff_ffff)) {
        return Promise.reject(
          new RangeError(`spin frame: ${k} must be an unsigned integer, got ${v}`),
        );
      }
    }
    const packed = asBuffer(block.packed);
    const values = asBuffer(block.values);
    const frame: SpinFrame = {
      jobId: this.opts.jobId,
      generation: this.opts.generation,
      fromShard: this.opts.fromShard,
      step: block.step,
      phase: block.phase,
      layer: block.layer,
      unitStart: block.unitStart,
      unitCount: block.unitCount,
      chains: block.chains,
      packed,
      values,
      seq: this.nextSeq,
      reads: block.reads ? [...block.reads] : [],
    };
    try {
      checkFrameShape(frame);
    } catch (err) {
      return Promise.reject(new RangeError((err as Error).message));
    }
    this.nextSeq++;
    const out: OutFrame = {
      seq: frame.seq,
      bytes: asBuffer(SpinFrame.encode(frame).finish()),
      sends: 0,
    };
    if (this.waiting.length === 0 && this.unacked.length < this.opts.maxInFlight) {
      this.admit(out);
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) =>
      this.waiting.push({ frame: out, resolve, reject }),
    );
  }

  /** Resolves when every frame sent so far is acknowledged; rejects if the link fails or closes. */
  flush(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (this.unacked.length === 0 && this.waiting.length === 0) return Promise.resolve();
    if (this.closing !== null) return Promise.reject(closedError());
    return new Promise<void>((resolve, reject) => this.flushers.push({ resolve, reject }));
  }

  /**
   * Ends the link: pending send() and flush() promises reject, the stream is half-closed (the
   * peer handles what it already received) and cancelled if the peer has not ended it within
   * closeGraceMs, and the channel is closed. Unacknowledged frames are dropped: flush() first
   * to deliver everything. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.linkState = 'closed';
    this.rejectAll(this.failure ?? closedError());
    const call = this.call;
    if (call !== null) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          call.cancel();
          resolve();
        }, this.opts.closeGraceMs);
        this.onCallEnded = () => {
          clearTimeout(t);
          resolve();
        };
        call.end();
      });
    }
    this.teardown();
  }

  private admit(out: OutFrame): void {
    this.unacked.push(out);
    if (this.unacked.length > this.stats.peakInFlight) {
      this.stats.peakInFlight = this.unacked.length;
    }
    this.pump();
  }

  /** Writes the frames the current stream has not had yet, until its buffer is full. */
  private pump(): void {
    const call = this.call;
    if (call === null || this.draining) return;
    while (this.written < this.unacked.length) {
      const out = this.unacked[this.written++]!;
      if (out.sends === 0) this.stats.framesSent++;
      else this.stats.framesResent++;
      out.sends++;
      this.stats.bytesSent += out.bytes.length;
      if (!call.write(out.bytes)) {
        this.draining = true;
        this.stats.drainWaits++;
        call.once('drain', () => {
          if (this.call !== call) return;
          this.draining = false;
          this.pump();
        });
        return;
      }
    }
  }

  private open(): void {
    this.timer = null;
    this.linkState = 'connecting';
    if (this.opened++ > 0) this.stats.reconnects++;
    if (this.opts.transport === 'stream' && this.endpoint === undefined) {
      this.askEndpoint();
      return;
    }
    const call = this.endpoint ? this.openStream(this.endpoint) : this.openGrpc();
    this.call = call;
    this.written = 0;
    this.draining = false;
    call.on('metadata', () => {
      if (this.call !== call || this.closing !== null) return;
      this.linkState = 'open';
      if (this.unacked.length === 0) this.attempts = 0;
      this.emit('connect');
    });
    call.on('data', (ack: SpinAck) => {
      if (this.call === call) this.onAck(ack);
    });
    // The 'status' event says everything 'error' does; this listener only keeps an error
    // status from being an unhandled 'error' event.
    call.on('error', () => {});
    call.on('status', (st: grpc.StatusObject) => this.onStatus(call, st));
    this.pump();
  }

  /** A grpc-js channel of its own to the peer (see openGrpc). */
  private newClient(): grpc.Client {
    // A channel per stream, with its own subchannel: after a failure the next attempt connects
    // afresh now, instead of waiting out grpc-js's own reconnection backoff (1 s and up).
    return new grpc.Client(this.opts.address, this.opts.credentials, {
      'grpc.use_local_subchannel_pool': 1,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      ...this.opts.channelOptions,
    });
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.opts.secret !== '') metadata.set(SECRET_METADATA, this.opts.secret);
    return metadata;
  }

  /** Asks the peer where its framed stream is, then opens; a failure counts as an attempt. */
  private askEndpoint(): void {
    const client = this.newClient();
    this.client = client;
    client.makeUnaryRequest<Buffer, StreamEndpointResponse>(
      PeerServiceService.streamEndpoint.path,
      (b: Buffer) => b,
      (b: Buffer) => StreamEndpointResponse.decode(b),
      Buffer.alloc(0),
      this.metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => {
        if (this.client !== client) return;
        client.close();
        this.client = null;
        if (this.closing !== null) {
          this.onCallEnded?.();
          return;
        }
        if (err && err.code !== Status.UNIMPLEMENTED) {
          this.retryOrFail({ code: err.code, details: err.details, metadata: err.metadata });
          return;
        }
        const usable = res && res.port > 0 && (!res.tls || this.opts.streamTls !== null);
        this.endpoint = usable ? { port: res.port, tls: res.tls } : null;
        this.open();
      },
    );
  }

  private openGrpc(): LinkCall {
    const client = this.newClient();
    this.client = client;
    return client.makeBidiStreamRequest<Buffer, SpinAck>(
      PeerServiceService.exchange.path,
      (b: Buffer) => b,
      (b: Buffer) => {
        this.stats.bytesReceived += b.length;
        return SpinAck.decode(b);
      },
      this.metadata(),
    );
  }

  private openStream(endpoint: { port: number; tls: boolean }): LinkCall {
    const host = this.opts.address.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
    return new ClientStreamCall({
      host,
      port: endpoint.port,
      secret: this.opts.secret,
      ...(endpoint.tls ? { tls: { ...this.opts.streamTls } } : {}),
      onAckBytes: (n) => (this.stats.bytesReceived += n),
    });
  }

  private onAck(ack: SpinAck): void {
    let n = 0;
    while (n < this.unacked.length && this.unacked[n]!.seq <= ack.seq) n++;
    if (n === 0) return;
    this.unacked.splice(0, n);
    this.written = Math.max(0, this.written - n);
    this.stats.framesAcked += n;
    this.attempts = 0;
    while (this.waiting.length > 0 && this.unacked.length < this.opts.maxInFlight) {
      const w = this.waiting.shift()!;
      this.admit(w.frame);
      w.resolve();
    }
    if (this.unacked.length === 0 && this.waiting.length === 0) {
      const fl = this.flushers;
      this.flushers = [];
      for (const f of fl) f.resolve();
    }
  }

  private onStatus(call: LinkCall, st: grpc.StatusObject): void {
    if (this.call !== call) return;
    this.call = null;
    this.client?.close();
    this.client = null;
    if (this.closing !== null) {
      this.onCallEnded?.();
      return;
    }
    this.retryOrFail(st);
  }

  /** After a stream ended with `st`: fail for good, or reconnect after a backoff. */
  private retryOrFail(st: grpc.StatusObject): void {
    // The peer may have restarted elsewhere: ask where its stream is again.
    this.endpoint = undefined;
    if (FATAL.has(st.code)) {
      this.fail(new PeerLinkError(st.code, `peer ${this.opts.address} refused: ${st.details}`));
      return;
    }
    this.emit('disconnect', st);
    this.attempts++;
    if (this.attempts >= this.opts.maxAttempts) {
      this.fail(
        new PeerLinkError(
          Status.UNAVAILABLE,
          `peer ${this.opts.address} unreachable after ${this.attempts} attempts: ${st.details}`,
        ),
      );
      return;
    }
    const o = this.opts;
    const base = Math.min(
      o.maxBackoffMs,
      o.initialBackoffMs * o.backoffMultiplier ** (this.attempts - 1),
    );
    const delay = base * (1 + o.backoffJitter * (2 * Math.random() - 1));
    this.linkState = 'backoff';
    this.timer = setTimeout(() => this.open(), delay);
  }

  private fail(err: PeerLinkError): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.linkState = 'failed';
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.rejectAll(err);
    this.teardown();
    this.emit('fail', err);
  }

  private rejectAll(err: Error): void {
    for (const w of this.waiting.splice(0)) w.reject(err);
    const fl = this.flushers;
    this.flushers = [];
    for (const f of fl) f.reject(err);
  }

  private teardown(): void {
    const call = this.call;
    this.call = null;
    call?.cancel();
    this.client?.close();
    this.client = null;
  }
}

function closedError(): PeerLinkError {
  return new PeerLinkError(Status.CANCELLED, 'peer link closed');
}

function asBuffer(b: Uint8Array | undefined): Buffer {
  if (b === undefined) return Buffer.alloc(0);
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function checkAssignment(jobId: string, generation: number): void {
  if (jobId === '') throw new RangeError('jobId must not be empty');
  if (!Number.isInteger(generation) || generation < 1 || generation > 0xffff_ffff) {
    throw new RangeError(`generation must be an integer in [1, 2^32), got ${generation}`);
  }
}

function checkPositiveInt(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 1)
    throw new RangeError(`${name} must be an integer >= 1, got ${v}`);
}

/** The entries of `o` whose value is not undefined (so they do not hide defaults). */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
