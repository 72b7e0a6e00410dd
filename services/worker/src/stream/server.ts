// The server side of the peer stream (wire.ts): a TCP (or TLS) listener that authenticates each
// connection by the cluster secret and hands it to the PeerServer as a call with the surface of
// a grpc-js server duplex stream, so that one handler serves both transports.
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';

import * as grpc from '@grpc/grpc-js';
import type { SpinAck, SpinFrame } from '@spinmesh/proto';

import {
  HANDSHAKE_MAX_BYTES,
  MAGIC,
  NONCE_BYTES,
  PROOF_BYTES,
  RecordError,
  RecordReader,
  RecordType,
  header,
  newNonce,
  proof,
  proofMatches,
  secretKey,
  statusPayload,
} from './wire.js';

const Status = grpc.status;

/** An error a handler ends a call with: a gRPC status code and its details. */
interface StatusError {
  code?: number;
  details?: string;
  message?: string;
}

/**
 * One authenticated connection, as the PeerServer's handler sees a grpc-js server duplex
 * stream: 'data' (a SpinFrame), 'end' (the sender half-closed), 'cancelled' and 'close' (the
 * connection went), write(ack), end() (status OK), emit('error', status) (ends with that status),
 * sendMetadata(), pause(), resume(), getPeer().
 */
export class ServerStreamCall extends EventEmitter {
  private done = false;

  constructor(
    private readonly socket: Socket,
    private readonly serialize: (ack: SpinAck) => Buffer,
  ) {
    super();
    // The handler ends a call with an error by emitting it, as with grpc-js.
    this.on('error', (err: StatusError) =>
      this.finish(err.code ?? Status.INTERNAL, err.details ?? err.message ?? 'error'),
    );
  }

  /** The stream is open: the sender may count on its frames being read. */
  sendMetadata(): void {
    this.record(RecordType.Open, Buffer.alloc(0));
  }

  write(ack: SpinAck): boolean {
    return this.record(RecordType.Data, this.serialize(ack));
  }

  /** Ends the stream with status OK. */
  end(): void {
    this.finish(Status.OK, '');
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  getPeer(): string {
    return `${this.socket.remoteAddress ?? '?'}:${this.socket.remotePort ?? 0}`;
  }

  /** A record from the sender, after the handshake. */
  received(type: number, payload: Buffer, deserialize: (b: Buffer) => SpinFrame): void {
    if (this.done) return;
    if (type === RecordType.Data) {
      let frame: SpinFrame;
      try {
        frame = deserialize(payload);
      } catch {
        this.finish(Status.INVALID_ARGUMENT, 'peer stream: a frame that is not a SpinFrame');
        return;
      }
      this.emit('data', frame);
    } else if (type === RecordType.End) {
      this.emit('end');
    } else {
      this.finish(Status.INVALID_ARGUMENT, `peer stream: unexpected record type ${type}`);
    }
  }

  /** The connection went (or was cut) before the handler ended the call. */
  gone(): void {
    if (!this.done) {
      this.done = true;
      this.emit('cancelled');
    }
    this.emit('close');
  }

  /** Writes the final status and closes the connection once it is written. */
  finish(code: number, details: string): void {
    if (this.done) return;
    this.done = true;
    this.record(RecordType.Status, statusPayload(code, details));
    this.socket.end();
    // A sender that goes on writing after the status is not waited for.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }

  private record(type: RecordType, payload: Buffer): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) return false;
    this.socket.cork();
    this.socket.write(header(type, payload.length));
    const ok = this.socket.write(payload);
    this.socket.uncork();
    return ok;
  }
}

/** Options of a PeerStreamListener. */
export interface PeerStreamListenerOptions {
  /** Address to bind (the worker's listen host). */
  host: string;
  /** Port to bind; 0 for a free one. */
  port: number;
  /** The cluster secret each connection must prove ('' when the cluster has none). */
  secret: string;
  /** Certificate and key: TLS on the stream as on the worker's gRPC port. */
  tls?: { cert: Buffer; key: Buffer };
  /** Largest frame, in bytes, as the gRPC port's message limit. */
  maxFrameBytes: number;
  /** How long a connection may take to authenticate. @defaultValue 5000 */
  handshakeTimeoutMs?: number;
  /** Connections at once beyond which new ones are closed. @defaultValue 256 */
  maxConnections?: number;
  deserialize: (b: Buffer) => SpinFrame;
  serialize: (ack: SpinAck) => Buffer;
  /** Each authenticated connection, as a call. */
  onCall: (call: ServerStreamCall) => void;
}

/** Accepts peer streams: authenticates each connection, then hands it over as a call. */
export class PeerStreamListener {
  private readonly sockets = new Set<Socket>();
  private readonly key: Buffer;

  private constructor(
    private readonly server: Server,
    private readonly opts: PeerStreamListenerOptions,
  ) {
    this.key = secretKey(opts.secret);
  }

  static async start(opts: PeerStreamListenerOptions): Promise<PeerStreamListener> {
    const server = opts.tls
      ? createTlsServer({
          cert: opts.tls.cert,
          key: opts.tls.key,
          // A TLS handshake is held to the same time as the secret's.
          handshakeTimeout: opts.handshakeTimeoutMs ?? 5000,
        })
      : createServer();
    const listener = new PeerStreamListener(server, opts);
    server.maxConnections = opts.maxConnections ?? 256;
    server.on(opts.tls ? 'secureConnection' : 'connection', (s: Socket) => listener.accept(s));
    // A TLS handshake that fails says so on the server; the connection is already gone.
    server.on('tlsClientError', () => {});
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return listener;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /**
   * Stops accepting; connections still open (their final status already written, or still
   * authenticating) are ended, and cut if they linger.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const s of this.sockets) {
      s.end();
      setTimeout(() => s.destroy(), 1000).unref();
    }
    await closed;
  }

  /** Stops accepting and cuts every connection now. */
  destroy(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const clientNonce: { value: Buffer | null } = { value: null };
    const serverNonce = newNonce();
    let call: ServerStreamCall | null = null;
    // Refused: the status is written and nothing more is read.
    let refused = false;
    const timer = setTimeout(() => socket.destroy(), this.opts.handshakeTimeoutMs ?? 5000);
    const refuse = (code: number, details: string): void => {
      if (refused) return;
      refused = true;
      clearTimeout(timer);
      socket.cork();
      const p = statusPayload(code, details);
      socket.write(header(RecordType.Status, p.length));
      socket.write(p);
      socket.uncork();
      socket.end();
      setTimeout(() => socket.destroy(), 2000).unref();
    };
    const reader = new RecordReader(HANDSHAKE_MAX_BYTES, (type, payload) => {
      if (refused) return;
      if (call !== null) {
        call.received(type, payload, this.opts.deserialize);
      } else if (clientNonce.value === null) {
        if (
          type !== RecordType.Hello ||
          payload.length !== MAGIC.length + NONCE_BYTES ||
          !payload.subarray(0, MAGIC.length).equals(MAGIC)
        ) {
          refuse(Status.INVALID_ARGUMENT, 'peer stream: not a spinmesh peer stream');
          return;
        }
        clientNonce.value = Buffer.from(payload.subarray(MAGIC.length));
        const challenge = Buffer.concat([
          serverNonce,
          proof(this.key, 'server', clientNonce.value, serverNonce),
        ]);
        socket.cork();
        socket.write(header(RecordType.Challenge, challenge.length));
        socket.write(challenge);
        socket.uncork();
      } else {
        const expected = proof(this.key, 'client', clientNonce.value, serverNonce);
        if (
          type !== RecordType.Proof ||
          payload.length !== PROOF_BYTES ||
          !proofMatches(payload, expected)
        ) {
          refuse(Status.UNAUTHENTICATED, 'peer stream: missing or wrong cluster secret');
          return;
        }
        clearTimeout(timer);
        reader.maxPayload = this.opts.maxFrameBytes;
        call = new ServerStreamCall(socket, this.opts.serialize);
        this.opts.onCall(call);
      }
    });
    socket.on('data', (chunk: Buffer) => {
      // After the final status, nothing more is read (the connection is closing).
      if (socket.writableEnded) return;
      try {
        reader.push(chunk);
      } catch (err) {
        if (!(err instanceof RecordError)) throw err;
        if (call !== null) call.finish(Status.RESOURCE_EXHAUSTED, err.message);
        else refuse(Status.RESOURCE_EXHAUSTED, err.message);
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      this.sockets.delete(socket);
      call?.gone();
    });
  }
}
