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
  StreamEndpointResponse,
  toServiceError,
  type HealthReporter,
  type PeerServiceServer,
} from '@spinmesh/proto';

import { checkFrameShape, FrameDeduper } from './frames.js';
import { checkAssignment, checkPositiveInt, SECRET_METADATA } from './peer-common.js';
import {
  type ExchangeCall,
  type FrameHandler,
  type InStream,
  type PeerServerEvents,
  type PeerServerOptions,
  type PeerServerStats,
  type PeerSenderStats,
  type PeerStreamOptions,
} from './peer-server-types.js';
import { PeerStreamListener, type ServerStreamCall } from './stream/server.js';

const Status = grpc.status;

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
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
