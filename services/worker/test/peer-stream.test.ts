// The framed peer stream (src/stream/) against callers that do not follow it: the wrong secret
// either way, bytes that are not the protocol, lengths meant to make the server allocate,
// silence, frames that are not SpinFrames or are over the limit. Each is answered with a status
// record naming the problem (never the secret), and the connection is closed; a well-behaved
// link is served as before, alongside.
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';

import {
  ClientStreamCall,
  PEER_STREAM_MAGIC,
  PeerLinkError,
  RecordReader,
  RecordType,
  peerStreamHeader,
  peerStreamKey,
  peerStreamProof,
  type PeerServer,
} from '../src/index.js';
import { selfSignedCert } from '../../../test/support/tls.js';
import { Links, Servers, stampedBlock } from './helpers.js';

const SECRET = 'the-cluster-secret-0123456789';
const servers = new Servers({
  secret: SECRET,
  stream: { host: '127.0.0.1', port: 0, maxFrameBytes: 4096, handshakeTimeoutMs: 300 },
});
const links = new Links({ maxBackoffMs: 200, transport: 'stream', secret: SECRET });

afterEach(async () => {
  await links.closeAll();
  await servers.closeAll();
});

interface Record {
  type: number;
  payload: Buffer;
}

/** A raw connection to the stream port: records in, and how it ended. */
async function raw(server: PeerServer): Promise<{
  socket: Socket;
  records: Record[];
  closed: Promise<void>;
  send: (type: number, payload: Buffer) => void;
}> {
  const socket = connect(server.streamPort, '127.0.0.1');
  await once(socket, 'connect');
  const records: Record[] = [];
  const reader = new RecordReader(1 << 20, (type, payload) =>
    records.push({ type, payload: Buffer.from(payload) }),
  );
  socket.on('data', (b: Buffer) => reader.push(b));
  socket.on('error', () => {});
  const closed = once(socket, 'close').then(() => undefined);
  const send = (type: number, payload: Buffer): void => {
    socket.write(peerStreamHeader(type as RecordType, payload.length));
    socket.write(payload);
  };
  return { socket, records, closed, send };
}

function statusOf(records: Record[]): { code: number; details: string } {
  const st = records.find((r) => r.type === RecordType.Status);
  if (!st) throw new Error(`no status record among ${records.length}`);
  return { code: st.payload.readUInt32LE(0), details: st.payload.subarray(4).toString('utf8') };
}

/** Says hello and answers the challenge with `secret`'s proof; resolves once sent. */
async function authenticate(c: Awaited<ReturnType<typeof raw>>, secret: string): Promise<void> {
  const nonce = Buffer.alloc(32, 7);
  c.send(RecordType.Hello, Buffer.concat([PEER_STREAM_MAGIC, nonce]));
  const deadline = Date.now() + 60_000;
  while (!c.records.some((r) => r.type === RecordType.Challenge)) {
    if (Date.now() > deadline) throw new Error('no challenge');
    await new Promise((r) => setTimeout(r, 5));
  }
  const challenge = c.records.find((r) => r.type === RecordType.Challenge)!.payload;
  const serverNonce = challenge.subarray(0, 32);
  c.send(RecordType.Proof, peerStreamProof(peerStreamKey(secret), 'client', nonce, serverNonce));
}

describe('the framed peer stream, against hostile callers', () => {
  it('serves a link that holds the secret, over the stream', async () => {
    let got = 0;
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => void got++ });
    const l = links.make({ address: server.address, fromShard: 0 });
    for (let i = 0; i < 10; i++) await l.send(stampedBlock(i));
    await l.flush();
    expect(got).toBe(10);
    expect(l.via).toBe('stream');
  });

  it('refuses a link with the wrong secret, and a server that cannot prove it', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const l = links.make({ address: server.address, fromShard: 0, secret: 'wrong' });
    const failed = new Promise<PeerLinkError>((resolve) => l.once('fail', resolve));
    void l.send(stampedBlock(0)).catch(() => {});
    const err = await failed;
    expect(err.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(err.message).not.toContain(SECRET);
    // Straight to the stream port: the client checks the server's proof first.
    const call = new ClientStreamCall({ host: '127.0.0.1', port: server.streamPort, secret: 'x' });
    call.on('error', () => {});
    // (events.once would reject on the 'error' that precedes the status.)
    const st = await new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
    expect(st.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(st.details).toMatch(/did not prove the cluster secret/);
  });

  it('answers a wrong proof with UNAUTHENTICATED and closes', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const c = await raw(server);
    await authenticate(c, 'not-the-secret');
    await c.closed;
    const st = statusOf(c.records);
    expect(st.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(st.details).toBe('peer stream: missing or wrong cluster secret');
  });

  it('answers bytes of another protocol with INVALID_ARGUMENT and closes', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const c = await raw(server);
    c.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await c.closed;
    // 'G' is no record type, and its "length" is far over the handshake's limit.
    expect(statusOf(c.records).code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const d = await raw(server);
    d.send(RecordType.Hello, Buffer.alloc(PEER_STREAM_MAGIC.length + 32, 1));
    await d.closed;
    expect(statusOf(d.records)).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'peer stream: not a spinmesh peer stream',
    });
  });

  it('refuses a length meant to make it allocate, before and after the handshake', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const c = await raw(server);
    c.socket.write(peerStreamHeader(RecordType.Hello, 0xffff_ffff));
    await c.closed;
    expect(statusOf(c.records).details).toMatch(/record of 4294967295 bytes is over the limit/);
    const d = await raw(server);
    await authenticate(d, SECRET);
    d.socket.write(peerStreamHeader(RecordType.Data, 4097)); // the limit is 4096
    await d.closed;
    expect(statusOf(d.records)).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
  });

  it('closes a connection that says nothing within the handshake time', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const c = await raw(server);
    const t = Date.now();
    await c.closed;
    expect(Date.now() - t).toBeGreaterThanOrEqual(250);
    expect(c.records).toHaveLength(0);
  });

  it('answers a frame that is not a SpinFrame, or an unknown record, with INVALID_ARGUMENT', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const c = await raw(server);
    await authenticate(c, SECRET);
    c.send(RecordType.Data, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]));
    await c.closed;
    expect(statusOf(c.records)).toEqual({
      code: grpc.status.INVALID_ARGUMENT,
      details: 'peer stream: a frame that is not a SpinFrame',
    });
    const d = await raw(server);
    await authenticate(d, SECRET);
    d.send(99, Buffer.alloc(3));
    await d.closed;
    expect(statusOf(d.records).details).toBe('peer stream: unexpected record type 99');
    // Nothing of this touched the server's service: a link is served as before.
    const l = links.make({ address: server.address, fromShard: 1 });
    await l.send(stampedBlock(0));
    await l.flush();
    expect(l.via).toBe('stream');
  });
});

describe('the framed peer stream on TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spinmesh-stream-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('carries a link with TLS where the worker has a certificate, and refuses plaintext', async () => {
    selfSignedCert(dir);
    const pem = { cert: readFileSync(cert), key: readFileSync(key) };
    let got = 0;
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: () => void got++,
      credentials: grpc.ServerCredentials.createSsl(null, [
        { cert_chain: pem.cert, private_key: pem.key },
      ]),
      stream: { host: '127.0.0.1', port: 0, tls: pem },
    });
    const l = links.make({
      address: server.address,
      fromShard: 0,
      credentials: grpc.credentials.createSsl(pem.cert),
      streamTls: { ca: pem.cert },
    });
    for (let i = 0; i < 5; i++) await l.send(stampedBlock(i));
    await l.flush();
    expect(got).toBe(5);
    expect(l.via).toBe('stream');
    // A plaintext hello gets no answer in the protocol: the TLS server drops it.
    const c = await raw(server);
    c.send(RecordType.Hello, Buffer.concat([PEER_STREAM_MAGIC, Buffer.alloc(32)]));
    await c.closed;
    expect(c.records).toHaveLength(0);
  });
});
