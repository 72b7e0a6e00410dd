// The sending end of the peer spin exchange: a PeerLink streams this shard's frames to one peer
// with back-pressure, and reconnects and resends when the stream breaks.
import { EventEmitter } from 'node:events';

import * as grpc from '@grpc/grpc-js';
import {
  PeerServiceService,
  SpinAck,
  SpinFrame,
  StreamEndpointResponse,
  encodeSpinFrame,
} from '@spinmesh/proto';

import { checkFrameShape } from './frames.js';
import { checkAssignment, checkPositiveInt, SECRET_METADATA } from './peer-common.js';
import {
  PeerLinkError,
  type LinkCall,
  type PeerLinkEvents,
  type PeerLinkOptions,
  type PeerLinkState,
  type PeerLinkStats,
  type SpinBlock,
  type StreamEndpoint,
} from './peer-link-types.js';
import { ClientStreamCall } from './stream/client.js';

const Status = grpc.status;

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
      partialField: block.partialField === true,
    };
    try {
      checkFrameShape(frame);
    } catch (err) {
      return Promise.reject(new RangeError((err as Error).message));
    }
    this.nextSeq++;
    const out: OutFrame = {
      seq: frame.seq,
      bytes: asBuffer(encodeSpinFrame(frame)),
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

  /** A grpc-js channel of its own to the peer. */
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

/** The entries of `o` whose value is not undefined (so they do not hide defaults). */
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
