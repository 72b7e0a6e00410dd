// The client side of the peer stream (wire.ts): connects, proves the cluster secret and checks
// the server's proof, then offers a PeerLink the surface it uses of a grpc-js client duplex
// stream: write(frame bytes) with 'drain', 'metadata' (open), 'data' (a SpinAck), 'status'
// (exactly once: the server's final status, or UNAVAILABLE when the connection went), end()
// (half-close) and cancel().
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { connect as connectTls } from 'node:tls';

import * as grpc from '@grpc/grpc-js';
import { SpinAck } from '@spinmesh/proto';

import {
  MAGIC,
  NONCE_BYTES,
  PROOF_BYTES,
  RecordError,
  RecordReader,
  RecordType,
  STATUS_MAX_BYTES,
  header,
  newNonce,
  parseStatus,
  proof,
  proofMatches,
  secretKey,
} from './wire.js';

const Status = grpc.status;

/** Bytes held before the handshake is done beyond which write() asks the caller to wait. */
const PENDING_HIGH_WATER = 1 << 20;

/** Largest record a server sends: acknowledgements and statuses are small. */
const MAX_SERVER_RECORD = Math.max(STATUS_MAX_BYTES, 64 * 1024);

export interface StreamCallOptions {
  host: string;
  port: number;
  secret: string;
  /** TLS, checking the server's certificate against `ca` (or the system's roots). */
  tls?: { ca?: Buffer; servername?: string };
  /** How long connecting and authenticating may take. @defaultValue 10000 */
  connectTimeoutMs?: number;
  /** Counts the bytes of each acknowledgement received. */
  onAckBytes?: (n: number) => void;
}

export class ClientStreamCall extends EventEmitter {
  private readonly socket: Socket;
  private readonly key: Buffer;
  private readonly clientNonce = newNonce();
  private authenticated = false;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private ended = false;
  private statusSent = false;
  private readonly timer: NodeJS.Timeout;
  private readonly reader: RecordReader;

  constructor(private readonly opts: StreamCallOptions) {
    super();
    this.key = secretKey(opts.secret);
    this.socket = opts.tls
      ? connectTls({
          host: opts.host,
          port: opts.port,
          ca: opts.tls.ca,
          servername: opts.tls.servername ?? opts.host,
        })
      : connect({ host: opts.host, port: opts.port });
    this.socket.setNoDelay(true);
    this.timer = setTimeout(
      () => this.fail(Status.UNAVAILABLE, 'peer stream: connecting timed out'),
      opts.connectTimeoutMs ?? 10_000,
    );
    this.reader = new RecordReader(NONCE_BYTES + PROOF_BYTES, (type, payload) =>
      this.onRecord(type, payload),
    );
    this.socket.once(opts.tls ? 'secureConnect' : 'connect', () => {
      const hello = Buffer.concat([MAGIC, this.clientNonce]);
      this.writeRecord(RecordType.Hello, hello);
    });
    this.socket.on('data', (chunk: Buffer) => {
      try {
        this.reader.push(chunk);
      } catch (err) {
        if (!(err instanceof RecordError)) throw err;
        this.fail(Status.INTERNAL, err.message);
      }
    });
    this.socket.on('drain', () => this.emit('drain'));
    this.socket.on('error', (err: NodeJS.ErrnoException) =>
      this.fail(Status.UNAVAILABLE, `peer stream: ${err.code ?? 'connection error'}`),
    );
    this.socket.on('close', () => this.fail(Status.UNAVAILABLE, 'peer stream: connection closed'));
  }

  /** Writes a serialized SpinFrame; false when the socket's buffer is full (wait for 'drain'). */
  write(bytes: Buffer): boolean {
    if (this.statusSent || this.ended) return false;
    if (!this.authenticated) {
      this.pending.push(bytes);
      this.pendingBytes += bytes.length;
      return this.pendingBytes < PENDING_HIGH_WATER;
    }
    return this.writeRecord(RecordType.Data, bytes);
  }

  /** Half-closes: the server handles what it has and ends with its status. */
  end(): void {
    if (this.ended || this.statusSent) return;
    this.ended = true;
    if (this.authenticated) this.writeRecord(RecordType.End, Buffer.alloc(0));
  }

  cancel(): void {
    this.fail(Status.CANCELLED, 'peer stream: cancelled');
  }

  private onRecord(type: number, payload: Buffer): void {
    if (this.statusSent) return;
    if (!this.authenticated) {
      if (type === RecordType.Status) {
        this.finish(parseStatus(payload));
        return;
      }
      const serverNonce = payload.subarray(0, NONCE_BYTES);
      const expected =
        payload.length === NONCE_BYTES + PROOF_BYTES
          ? proof(this.key, 'server', this.clientNonce, serverNonce)
          : null;
      if (
        type !== RecordType.Challenge ||
        expected === null ||
        !proofMatches(payload.subarray(NONCE_BYTES), expected)
      ) {
        this.fail(Status.UNAUTHENTICATED, 'peer stream: the peer did not prove the cluster secret');
        return;
      }
      this.writeRecord(RecordType.Proof, proof(this.key, 'client', this.clientNonce, serverNonce));
      this.authenticated = true;
      clearTimeout(this.timer);
      this.reader.maxPayload = MAX_SERVER_RECORD;
      const pending = this.pending;
      const held = this.pendingBytes;
      this.pending = [];
      this.pendingBytes = 0;
      let room = true;
      for (const p of pending) room = this.writeRecord(RecordType.Data, p);
      if (this.ended) this.writeRecord(RecordType.End, Buffer.alloc(0));
      // A caller told to wait before the handshake is told to go on once the socket has room.
      if (held >= PENDING_HIGH_WATER && room) this.emit('drain');
      return;
    }
    if (type === RecordType.Open) {
      this.emit('metadata', new grpc.Metadata());
    } else if (type === RecordType.Data) {
      this.opts.onAckBytes?.(payload.length);
      let ack: SpinAck;
      try {
        ack = SpinAck.decode(payload);
      } catch {
        this.fail(Status.INTERNAL, 'peer stream: an acknowledgement that is not a SpinAck');
        return;
      }
      this.emit('data', ack);
    } else if (type === RecordType.Status) {
      this.finish(parseStatus(payload));
    } else {
      this.fail(Status.INTERNAL, `peer stream: unexpected record type ${type}`);
    }
  }

  private writeRecord(type: RecordType, payload: Buffer): boolean {
    if (this.socket.destroyed || this.socket.writableEnded) return false;
    this.socket.cork();
    this.socket.write(header(type, payload.length));
    const ok = this.socket.write(payload);
    this.socket.uncork();
    return ok;
  }

  private fail(code: number, details: string): void {
    this.finish({ code, details });
  }

  /** Emits the call's one status and lets the connection go. */
  private finish(st: { code: number; details: string }): void {
    if (this.statusSent) return;
    this.statusSent = true;
    clearTimeout(this.timer);
    this.socket.destroy();
    const status: grpc.StatusObject = {
      code: st.code as grpc.status,
      details: st.details,
      metadata: new grpc.Metadata(),
    };
    if (st.code !== Status.OK) this.emit('error', Object.assign(new Error(st.details), status));
    this.emit('status', status);
  }
}
