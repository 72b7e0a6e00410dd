// The peer stream's wire format: the Exchange of PeerService carried on a plain byte stream
// (TCP, or TLS where the worker has a certificate) instead of HTTP/2. The messages are the same
// serialized SpinFrame and SpinAck protobufs; what goes is grpc-js's per-message machinery,
// which costs a worker more CPU per frame and per byte than the frames' own encoding (`npm run
// bench -- scaling` measures both).
//
// Every message is a record: 1 byte of type, 4 bytes of payload length (little-endian), the
// payload. A connection opens with a mutual challenge-response on the cluster secret (HMAC-SHA256
// over both sides' random nonces, so nothing replayable or secret crosses the wire), then
// carries DATA records both ways: frames to the receiver, acknowledgements back. The client
// half-closes with END; the server ends with STATUS (a gRPC status code and its details).
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const RecordType = {
  /** client -> server: MAGIC and the client's nonce. */
  Hello: 1,
  /** server -> client: the server's nonce and its proof. */
  Challenge: 2,
  /** client -> server: the client's proof. */
  Proof: 3,
  /** server -> client: the stream is open (what gRPC's response headers say). */
  Open: 4,
  /** both ways: a serialized SpinFrame (to the server) or SpinAck (to the client). */
  Data: 5,
  /** client -> server: no more frames (gRPC's half-close). */
  End: 6,
  /** server -> client: the stream's final status: u32 code, then UTF-8 details. */
  Status: 7,
} as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];

export const HEADER_BYTES = 5;
export const MAGIC = Buffer.from('spinmesh-peer-stream-1', 'latin1');
export const NONCE_BYTES = 32;
export const PROOF_BYTES = 32;
/** The largest record before the handshake is done: nothing bigger is ever needed. */
export const HANDSHAKE_MAX_BYTES = MAGIC.length + NONCE_BYTES;
/** Status details are cut here (a peer's message is short; a hostile one is not read whole). */
export const STATUS_MAX_BYTES = 2048;

/** A record's header and payload as two buffers, for a corked write. */
export function header(type: RecordType, length: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER_BYTES);
  h.writeUInt8(type, 0);
  h.writeUInt32LE(length, 1);
  return h;
}

export function statusPayload(code: number, details: string): Buffer {
  const text = Buffer.from(details, 'utf8').subarray(0, STATUS_MAX_BYTES - 4);
  const out = Buffer.allocUnsafe(4 + text.length);
  out.writeUInt32LE(code >>> 0, 0);
  text.copy(out, 4);
  return out;
}

export function parseStatus(p: Buffer): { code: number; details: string } {
  if (p.length < 4) return { code: 13, details: 'peer stream: malformed status record' };
  return { code: p.readUInt32LE(0), details: p.subarray(4).toString('utf8') };
}

/** Why a record stream was refused: the peer broke the format, or sent more than allowed. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
}

/**
 * Cuts a byte stream into records. Chunks are kept as they come and joined once per record, so
 * a large frame arriving in many chunks is copied once. A record longer than `maxPayload` (which
 * the owner may lower or raise as the connection moves through its handshake) is refused before
 * any of its payload is kept.
 */
export class RecordReader {
  private chunks: Buffer[] = [];
  private have = 0;

  constructor(
    public maxPayload: number,
    private readonly onRecord: (type: number, payload: Buffer) => void,
  ) {}

  /** Takes a chunk; calls onRecord for each complete record. Throws RecordError. */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    while (this.have >= HEADER_BYTES) {
      if (this.chunks[0]!.length < HEADER_BYTES) this.chunks = [Buffer.concat(this.chunks)];
      const head = this.chunks[0]!;
      const type = head.readUInt8(0);
      const len = head.readUInt32LE(1);
      if (len > this.maxPayload) {
        throw new RecordError(
          `peer stream: a record of ${len} bytes is over the limit of ${this.maxPayload}`,
        );
      }
      if (this.have < HEADER_BYTES + len) return;
      const all = this.chunks.length === 1 ? head : Buffer.concat(this.chunks, this.have);
      const payload = all.subarray(HEADER_BYTES, HEADER_BYTES + len);
      const rest = all.subarray(HEADER_BYTES + len);
      this.chunks = rest.length > 0 ? [rest] : [];
      this.have = rest.length;
      this.onRecord(type, payload);
    }
  }
}

/** The key both sides prove knowledge of: a digest of the secret ('' when none is set). */
export function secretKey(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

export function newNonce(): Buffer {
  return randomBytes(NONCE_BYTES);
}

/** The proof of `role` for this pair of nonces: HMAC(key, role | client nonce | server nonce). */
export function proof(
  key: Buffer,
  role: 'client' | 'server',
  client: Buffer,
  server: Buffer,
): Buffer {
  return createHmac('sha256', key).update(role).update(client).update(server).digest();
}

export function proofMatches(given: Buffer, expected: Buffer): boolean {
  return given.length === expected.length && timingSafeEqual(given, expected);
}
