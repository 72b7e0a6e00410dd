// Raw gRPC for the hostile-input corpus: messages written byte by byte, as a third-party client
// (or an attacker) could send them, so the corpus can carry what a typed client refuses to
// encode: invalid UTF-8, integers above 2^53, fields the schema does not know.
import * as grpc from '@grpc/grpc-js';

/** Protobuf message bytes built field by field. */
export class Pb {
  private readonly parts: Buffer[] = [];

  private static varint(v: bigint): Buffer {
    const out: number[] = [];
    let x = BigInt.asUintN(64, v);
    do {
      let b = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) b |= 0x80;
      out.push(b);
    } while (x !== 0n);
    return Buffer.from(out);
  }

  /** A varint field (uint32, uint64, bool, enum). */
  uint(field: number, v: number | bigint): this {
    this.parts.push(Pb.varint(BigInt((field << 3) | 0)), Pb.varint(BigInt(v)));
    return this;
  }

  /** A length-delimited field: a string (UTF-8 unless given as bytes), bytes or a message. */
  bytes(field: number, v: string | Uint8Array | Pb): this {
    const b = v instanceof Pb ? v.build() : typeof v === 'string' ? Buffer.from(v) : Buffer.from(v);
    this.parts.push(Pb.varint(BigInt((field << 3) | 2)), Pb.varint(BigInt(b.length)), b);
    return this;
  }

  /** A double field. */
  double(field: number, v: number): this {
    const b = Buffer.alloc(8);
    b.writeDoubleLE(v);
    this.parts.push(Pb.varint(BigInt((field << 3) | 1)), b);
    return this;
  }

  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** How a call ended: a status code (0: OK), its details, and how long it took. */
export interface Outcome {
  code: grpc.status;
  details: string;
  /** Trailing metadata values and the reply's bytes, for the leak check. */
  echoed: string;
  /** The reply's bytes (unary calls that succeeded). */
  reply: Buffer;
  ms: number;
}

const raw = (b: Buffer): Buffer => b;

function credentialsMetadata(headers: Record<string, string>): grpc.Metadata {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(headers)) md.set(k, v);
  return md;
}

function metadataText(md: grpc.Metadata | undefined): string {
  if (!md) return '';
  return Object.entries(md.getMap())
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : Buffer.from(v).toString('latin1')}`)
    .join('\n');
}

/** One raw unary call: `path` is '/package.Service/Method'. */
export function unaryRaw(
  address: string,
  path: string,
  body: Buffer,
  headers: Record<string, string>,
  deadlineMs: number,
): Promise<Outcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure(), {
    // Large enough for the oversized requests of the corpus to reach the server, which must
    // refuse them itself.
    'grpc.max_send_message_length': 256 << 20,
    'grpc.max_receive_message_length': 64 << 20,
  });
  const started = performance.now();
  return new Promise((resolve) => {
    let trailers = '';
    const call = client.makeUnaryRequest(
      path,
      raw,
      raw,
      body,
      credentialsMetadata(headers),
      { deadline: Date.now() + deadlineMs },
      (err: grpc.ServiceError | null, reply?: Buffer) => {
        client.close();
        resolve({
          code: err ? err.code : grpc.status.OK,
          details: err ? err.details : '',
          echoed: `${trailers}\n${err ? metadataText(err.metadata) : ''}\n${reply ? reply.toString('latin1') : ''}`,
          reply: reply ?? Buffer.alloc(0),
          ms: performance.now() - started,
        });
      },
    );
    call.on('metadata', (md: grpc.Metadata) => (trailers += metadataText(md)));
  });
}

/**
 * One raw call of a streaming method: sends `messages` (none for a server stream's request is
 * not allowed: give one), reads replies until the stream ends or `deadlineMs` passes.
 */
export function streamRaw(
  address: string,
  path: string,
  messages: Buffer[],
  headers: Record<string, string>,
  deadlineMs: number,
  kind: 'server' | 'bidi',
): Promise<Outcome> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const started = performance.now();
  return new Promise((resolve) => {
    let echoed = '';
    let settled = false;
    const done = (code: grpc.status, details: string): void => {
      if (settled) return;
      settled = true;
      client.close();
      resolve({ code, details, echoed, reply: Buffer.alloc(0), ms: performance.now() - started });
    };
    const opts = { deadline: Date.now() + deadlineMs };
    const md = credentialsMetadata(headers);
    const call =
      kind === 'server'
        ? client.makeServerStreamRequest(path, raw, raw, messages[0]!, md, opts)
        : client.makeBidiStreamRequest(path, raw, raw, md, opts);
    call.on('data', (b: Buffer) => (echoed += b.toString('latin1')));
    call.on('metadata', (m: grpc.Metadata) => (echoed += metadataText(m)));
    call.on('error', (e: grpc.ServiceError) => {
      echoed += metadataText(e.metadata);
      done(e.code, e.details);
    });
    call.on('status', (s: grpc.StatusObject) => done(s.code, s.details));
    if (kind === 'bidi') {
      const duplex = call as grpc.ClientDuplexStream<Buffer, Buffer>;
      for (const m of messages) duplex.write(m);
      duplex.end();
    }
  });
}

/** grpc.health.v1.Health/Check of the whole server: the serving status (1 = SERVING), or -1. */
export async function healthStatus(address: string, deadlineMs = 10_000): Promise<number> {
  const o = await unaryRaw(
    address,
    '/grpc.health.v1.Health/Check',
    Buffer.alloc(0),
    {},
    deadlineMs,
  );
  if (o.code !== grpc.status.OK) return -1;
  // HealthCheckResponse { status = 1 (enum) }: the reply is [0x08, status] or empty (UNKNOWN).
  return o.reply.length >= 2 && o.reply[0] === 0x08 ? o.reply[1]! : 0;
}
