// The receiving end of the peer spin exchange: a PeerServer takes the spin frames of the shards
// whose units connect to this worker's units.
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
  toServiceError,
  type HealthReporter,
  type PeerServiceServer,
} from '@spinmesh/proto';

import { checkFrameShape, FrameDeduper } from './frames.js';
import { checkAssignment, checkPositiveInt, SECRET_METADATA } from './peer-common.js';

const Status = grpc.status;

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

interface InStream {
  readonly call: grpc.ServerDuplexStream<SpinFrame, SpinAck>;
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
    } catch (err) {
      server.forceShutdown();
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
    checkPositiveInt('highWaterFrames', this.highWater);
    checkPositiveInt('ackEveryFrames', this.ackEvery);
    // Count bytes where grpc-js (de)serializes, so the figures are those of the wire messages.
    const def = {
      exchange: {
        ...PeerServiceService.exchange,
        requestDeserialize: (b: Buffer): SpinFrame => {
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
        },
        responseSerialize: (a: SpinAck): Buffer => {
          const b = Buffer.from(SpinAck.encode(a).finish());
          this.stats.bytesSent += b.length;
          return b;
        },
      },
    };
    const impl: PeerServiceServer = { exchange: (call) => this.handle(call) };
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
    this.health?.shutdown();
    this.server?.forceShutdown();
    this.server = null;
    this.closing ??= Promise.resolve();
  }

  private async doClose(): Promise<void> {
    for (const s of [...this.streams]) {
      this.finish(s, { code: Status.UNAVAILABLE, details: 'peer server shutting down' });
    }
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

  private handle(call: grpc.ServerDuplexStream<SpinFrame, SpinAck>): void {
    if (this.secret !== null) {
      const given = call.metadata.get(SECRET_METADATA)[0];
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), this.secret)) {
        call.emit(
          'error',
          new ServerError(
            Status.UNAUTHENTICATED,
            'peer stream: missing or wrong cluster secret',
          ).toServiceError(),
        );
        return;
      }
    }
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
