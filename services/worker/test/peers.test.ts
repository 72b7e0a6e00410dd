// The peer spin-exchange transport over real gRPC on 127.0.0.1: exact round trips of packed
// spins, ordering, back-pressure, reconnection without loss or duplicates, rejection of frames
// of another generation, the health service, and a figure of throughput on loopback.
import * as grpc from '@grpc/grpc-js';
import { PortableKernels } from '@spinmesh/kernels';
import {
  HealthClient,
  PeerServiceClient,
  ServingStatus,
  type SpinAck,
  type SpinFrame,
} from '@spinmesh/proto';
import { mulberry32 as rng } from '@spinmesh/model';
import { afterEach, describe, expect, it } from 'vitest';

import { FrameDeduper, PeerLink, PeerLinkError, PeerServer, type SpinBlock } from '../src/index.js';
import {
  countingProxy,
  Links,
  randomSpins,
  Servers,
  sleep,
  stampedBlock,
  stampedOk,
  until,
} from './helpers.js';

const kernels = new PortableKernels();

// Every behaviour holds on both transports: Exchange over gRPC, and the same frames on the
// worker's framed stream (which a link finds through StreamEndpoint).
describe.each(['grpc', 'stream'] as const)('PeerLink -> PeerServer over %s', (transport) => {
  const servers = new Servers(
    transport === 'stream' ? { stream: { host: '127.0.0.1', port: 0 } } : {},
  );
  const links = new Links({ maxBackoffMs: 200, transport });
  const link = links.make.bind(links);

  afterEach(async () => {
    await links.closeAll();
    await servers.closeAll();
  });

  it('delivers packed spins that unpack to exactly the spins sent', async () => {
    const got: SpinFrame[] = [];
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: (f) => void got.push(f),
    });
    const l = link({ address: server.address, fromShard: 3 });
    const r = rng(1);
    const shapes: [number, number, boolean][] = [
      [64, 500, false],
      [64, 500, true],
      [3, 13, false], // 39 bits: a partial last byte
      [1, 1, true],
    ];
    const sent: Float32Array[] = [];
    for (const [step, [chains, units, ising]] of shapes.entries()) {
      const x = randomSpins(r, chains, units, ising);
      sent.push(x);
      const packed = new Uint8Array(Math.ceil((chains * units) / 8));
      kernels.packSpins(chains * units, x, packed);
      await l.send({ step, phase: 2, layer: 1, unitStart: 17, unitCount: units, chains, packed });
    }
    // A Gaussian block travels as float32 values.
    const g = Float32Array.from({ length: 4 * 5 }, () => r() * 4 - 2);
    await l.send({
      step: 9,
      phase: 0,
      layer: 0,
      unitStart: 0,
      unitCount: 5,
      chains: 4,
      values: new Uint8Array(g.buffer),
    });
    await l.flush();

    expect(got).toHaveLength(shapes.length + 1);
    for (const [i, [chains, units, ising]] of shapes.entries()) {
      const f = got[i]!;
      expect(f).toMatchObject({ jobId: 'job', generation: 1, fromShard: 3, step: i, phase: 2 });
      expect(f).toMatchObject({ layer: 1, unitStart: 17, unitCount: units, chains, seq: i + 1 });
      const back = new Float32Array(chains * units);
      kernels.unpackSpins(chains * units, f.packed, ising ? -1 : 0, back);
      expect(back).toEqual(sent[i]);
    }
    const gf = got[shapes.length]!;
    expect(gf.packed).toHaveLength(0);
    const gv = new Float32Array(
      gf.values.buffer.slice(gf.values.byteOffset, gf.values.byteOffset + gf.values.byteLength),
    );
    expect(gv).toEqual(g);
    expect(l.stats.framesSent).toBe(5);
    expect(l.stats.framesAcked).toBe(5);
    expect(server.stats.framesDelivered).toBe(5);
    expect(server.stats.bytesReceived).toBe(l.stats.bytesSent);
    expect(l.stats.bytesReceived).toBe(server.stats.bytesSent);
    expect(l.via).toBe(transport);
  });

  it('keeps the order of each link, with several senders at once', async () => {
    const bySender = new Map<number, number[]>();
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: (f) => {
        const a = bySender.get(f.fromShard) ?? [];
        a.push(f.step);
        bySender.set(f.fromShard, a);
      },
    });
    const senders = [1, 2, 5].map((fromShard) => link({ address: server.address, fromShard }));
    const n = 300;
    await Promise.all(
      senders.map(async (l) => {
        for (let i = 0; i < n; i++) await l.send(stampedBlock(i));
        await l.flush();
      }),
    );
    const want = Array.from({ length: n }, (_, i) => i);
    for (const s of [1, 2, 5]) expect(bySender.get(s)).toEqual(want);
  });

  it('keeps at most maxInFlight frames unacknowledged behind a slow receiver', async () => {
    const maxInFlight = 4;
    const got: number[] = [];
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: async (f) => {
        await sleep(3);
        got.push(f.step);
      },
    });
    const l = link({ address: server.address, fromShard: 0, maxInFlight });
    let worst = 0;
    for (let i = 0; i < 40; i++) {
      await l.send(stampedBlock(i));
      worst = Math.max(worst, l.inFlight);
    }
    await l.flush();
    expect(got).toEqual(Array.from({ length: 40 }, (_, i) => i));
    expect(worst).toBe(maxInFlight);
    expect(l.stats.peakInFlight).toBe(maxInFlight);
    // What the receiver saw: never more than maxInFlight frames between its acknowledgements.
    expect(server.stats.peakUnacked).toBe(maxInFlight);
  });

  it("waits for 'drain' when the stream's buffer is full, and loses nothing", async () => {
    const chains = 64;
    const units = 32_768; // 256 KiB a frame: more than HTTP/2 lets out at once
    let ok = 0;
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: (f) => {
        if (stampedOk(f.step, f.packed, chains, units)) ok++;
      },
    });
    const l = link({ address: server.address, fromShard: 0, maxInFlight: 64 });
    for (let i = 0; i < 48; i++) await l.send(stampedBlock(i, chains, units));
    await l.flush();
    expect(ok).toBe(48);
    expect(l.stats.drainWaits).toBeGreaterThan(0);
  });

  it('reconnects after the server dies mid-stream; no frame lost or delivered twice', async () => {
    const deduper = new FrameDeduper();
    const got: number[] = [];
    let server: PeerServer | null = null;
    const onFrame = (f: SpinFrame): void => {
      got.push(f.step);
      // A crash mid-stream, after frame 80 was handled and before it was acknowledged: the
      // link resends it, and the restarted server's deduper (shared) drops it.
      if (got.length === 80) server!.forceClose();
    };
    server = await servers.start({ jobId: 'job', generation: 1, deduper, onFrame });
    const port = server.port;
    const l = link({ address: server.address, fromShard: 4, maxInFlight: 8 });
    const disconnects: grpc.StatusObject[] = [];
    l.on('disconnect', (st) => disconnects.push(st));
    const n = 200;
    const sending = (async () => {
      for (let i = 0; i < n; i++) await l.send(stampedBlock(i));
      await l.flush();
    })();
    await until(() => disconnects.length > 0, 60_000, 'the link to notice');
    expect(l.state === 'backoff' || l.state === 'connecting').toBe(true);
    await sleep(100); // down for a while: the link retries and backs off
    server = await servers.start({
      jobId: 'job',
      generation: 1,
      deduper,
      onFrame,
      address: `127.0.0.1:${port}`,
    });
    await sending;
    expect(got).toEqual(Array.from({ length: n }, (_, i) => i));
    expect(l.stats.reconnects).toBeGreaterThanOrEqual(1);
    expect(l.stats.framesResent).toBeGreaterThan(0);
    expect(server.stats.duplicates).toBeGreaterThanOrEqual(1);
    expect(l.state).toBe('open');
    expect(disconnects[0]!.code).not.toBe(grpc.status.OK);
  });

  it('rejects frames of an older generation or another job: the link fails', async () => {
    const got: SpinFrame[] = [];
    const rejects: unknown[] = [];
    const server = await servers.start({
      jobId: 'job',
      generation: 2,
      onFrame: (f) => void got.push(f),
    });
    server.on('reject', (r) => rejects.push(r));

    const old = link({ address: server.address, fromShard: 1, generation: 1 });
    const failed = new Promise<PeerLinkError>((resolve) => old.once('fail', resolve));
    await old.send(stampedBlock(0));
    const err = await failed;
    expect(err.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(err.message).toMatch(/generation 1 is older than this worker's assignment generation 2/);
    expect(old.state).toBe('failed');
    await expect(old.send(stampedBlock(1))).rejects.toBeInstanceOf(PeerLinkError);
    await expect(old.flush()).rejects.toMatchObject({ code: grpc.status.FAILED_PRECONDITION });

    const other = link({ address: server.address, fromShard: 1, generation: 2, jobId: 'other' });
    const failed2 = new Promise<PeerLinkError>((resolve) => other.once('fail', resolve));
    await other.send(stampedBlock(0));
    expect((await failed2).message).toMatch(/job_id 'other' is not this worker's job 'job'/);

    expect(got).toHaveLength(0);
    expect(server.stats.rejected).toBe(2);
    expect(rejects).toHaveLength(2);
  });

  it('holds frames of a newer generation until the receiver is reassigned', async () => {
    const got: number[] = [];
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: (f) => void got.push(f.step),
    });
    const l = link({ address: server.address, fromShard: 1, generation: 2 });
    const disconnects: grpc.StatusObject[] = [];
    l.on('disconnect', (st) => disconnects.push(st));
    for (let i = 0; i < 5; i++) await l.send(stampedBlock(i));
    await until(() => disconnects.length >= 2, 60_000, 'two refusals');
    expect(disconnects[0]!.code).toBe(grpc.status.UNAVAILABLE);
    expect(disconnects[0]!.details).toMatch(/generation 2 is newer/);
    expect(got).toHaveLength(0);
    server.setAssignment('job', 2);
    await l.flush();
    expect(got).toEqual([0, 1, 2, 3, 4]);
  });

  it('ends a stream with INVALID_ARGUMENT naming the field of a malformed frame', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const client = new PeerServiceClient(server.address, grpc.credentials.createInsecure());
    try {
      const call = client.exchange();
      call.on('data', (_: SpinAck) => {});
      const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
      call.on('error', () => {});
      call.write({
        jobId: 'job',
        generation: 1,
        fromShard: 0,
        step: 0,
        phase: 0,
        layer: 0,
        unitStart: 0,
        unitCount: 10,
        chains: 2,
        packed: Buffer.alloc(2), // needs 3
        values: Buffer.alloc(0),
        seq: 1,
        reads: [],
        partialField: false,
      });
      const st = await status;
      expect(st.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(st.details).toMatch(/packed must hold .* = 3 bytes .* got 2/);
    } finally {
      client.close();
    }
    // The link checks blocks before they leave: a partial field is carried in values only.
    const l = link({ address: server.address, fromShard: 0 });
    const bad: SpinBlock = { ...stampedBlock(0), unitCount: 0 };
    await expect(l.send(bad)).rejects.toThrow(/unit_count must be > 0/);
    const field: SpinBlock = { ...stampedBlock(0), partialField: true };
    await expect(l.send(field)).rejects.toThrow(/a partial field must be carried in values/);
  });

  it('gives up after maxAttempts failed connections in a row', async () => {
    const probe = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const address = probe.address;
    await probe.close(); // nothing listens there now
    const l = link({ address, fromShard: 0, maxAttempts: 3, initialBackoffMs: 10 });
    const failed = new Promise<PeerLinkError>((resolve) => l.once('fail', resolve));
    const sent = l.send(stampedBlock(0)); // in flight at once, never acknowledged
    const flushed = l.flush();
    const err = await failed;
    expect(err.code).toBe(grpc.status.UNAVAILABLE);
    expect(err.message).toMatch(/unreachable after 3 attempts/);
    await sent;
    await expect(flushed).rejects.toBe(err);
    await expect(l.send({ ...stampedBlock(1), step: -1 })).rejects.toBe(err);
    const fresh = link({ address, fromShard: 0 });
    await expect(fresh.send({ ...stampedBlock(1), step: -1 })).rejects.toThrow(
      /step must be an unsigned integer/,
    );
  });

  it('answers health checks: SERVING while it runs', async () => {
    const server = await servers.start({ jobId: 'job', generation: 1, onFrame: () => {} });
    const client = new HealthClient(server.address, grpc.credentials.createInsecure());
    try {
      for (const service of ['', 'spinmesh.v1.PeerService']) {
        const st = await new Promise<ServingStatus>((resolve, reject) =>
          client.check(
            { service },
            new grpc.Metadata(),
            { deadline: Date.now() + 5000 },
            (err, res) => (err ? reject(err) : resolve(res.status)),
          ),
        );
        expect(st).toBe(ServingStatus.SERVING);
      }
    } finally {
      client.close();
    }
  });

  it('leaves no sockets, servers or timers behind once closed', async () => {
    const kinds = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'];
    const count = (): number =>
      process.getActiveResourcesInfo().filter((k) => kinds.includes(k)).length;
    const before = count();
    const server = await PeerServer.start({
      jobId: 'job',
      generation: 1,
      onFrame: () => {},
      ...(transport === 'stream' ? { stream: { host: '127.0.0.1', port: 0 } } : {}),
    });
    const l = new PeerLink({
      address: server.address,
      jobId: 'job',
      generation: 1,
      fromShard: 0,
      transport,
    });
    for (let i = 0; i < 20; i++) await l.send(stampedBlock(i));
    await l.flush();
    expect(count()).toBeGreaterThan(before);
    await l.close();
    await server.close();
    await until(() => count() <= before, 60_000, 'handles to close');
    expect(l.state).toBe('closed');
    await expect(l.send(stampedBlock(99))).rejects.toMatchObject({ code: grpc.status.CANCELLED });
  });

  // Over gRPC a byte-counting proxy sits in front of the port, so the figures include HTTP/2's
  // framing; the framed stream's own framing is its 5-byte record header a message.
  it('measures 64 chains x 500 units frames on loopback (printed, not asserted)', async () => {
    const chains = 64;
    const units = 500;
    let delivered = 0;
    const server = await servers.start({
      jobId: 'job',
      generation: 1,
      onFrame: () => void delivered++,
    });
    const proxy = await countingProxy(server.port);
    try {
      const address = transport === 'grpc' ? `127.0.0.1:${proxy.port}` : server.address;
      const l = link({ address, fromShard: 0, maxInFlight: 32 });
      const r = rng(7);
      const x = randomSpins(r, chains, units);
      const packed = new Uint8Array((chains * units) / 8);
      const block = (step: number): SpinBlock => {
        kernels.packSpins(chains * units, x, packed); // the sender's cost per frame, included
        return { step, phase: 0, layer: 1, unitStart: 0, unitCount: units, chains, packed };
      };
      for (let i = 0; i < 100; i++) await l.send(block(i)); // warm up
      await l.flush();
      const up0 = proxy.up();
      const down0 = proxy.down();
      const msg0 = l.stats.bytesSent;
      const n = 3000;
      const t0 = process.hrtime.bigint();
      for (let i = 100; i < 100 + n; i++) await l.send(block(i));
      await l.flush();
      const s = Number(process.hrtime.bigint() - t0) / 1e9;
      const spins = n * chains * units;
      const figures = {
        frames: n,
        framesPerSecond: Math.round(n / s),
        spinsPerSecond: Math.round(spins / s),
        payloadBytesPerSpin: 1 / 8,
        messageBytesPerSpin: (l.stats.bytesSent - msg0) / spins,
        wireBytesPerSpin:
          transport === 'grpc'
            ? (proxy.up() - up0) / spins
            : (l.stats.bytesSent - msg0 + 5 * n) / spins,
        ackWireBytesPerFrame: transport === 'grpc' ? (proxy.down() - down0) / n : null,
      };
      console.log(
        `peer transport over ${transport}, 64 chains x 500 units, loopback: ${JSON.stringify(figures)}`,
      );
      expect(l.via).toBe(transport);
      expect(delivered).toBe(100 + n);
    } finally {
      await links.closeAll();
      await proxy.close();
    }
  });
});
