// The bus over gRPC: the whole Bus contract through RemoteBus -> real gRPC on 127.0.0.1 ->
// serveBus -> MemoryBus, plus what only the remote pair has: the cluster secret, errors rebuilt
// as their classes, bytes that never pass through JSON, deadlines of blocking reads, and an
// unreachable server.
import * as grpc from '@grpc/grpc-js';
import { BusCall, BusReply, BusServiceService } from '@spinmesh/proto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  BUS_ERROR_METADATA,
  BUS_SECRET_METADATA,
  BUS_SERVER_OPTIONS,
  IllegalTransitionError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  MemoryBus,
  MemoryStore,
  RemoteBus,
  RemoteBusError,
  ShardNotFoundError,
  StaleAssignmentError,
  StaleWriterError,
  serveBus,
  type Bus,
  type ServeBusOptions,
} from '@spinmesh/bus';
import { runBusContract } from './contract.js';

interface Served {
  address: string;
  bus: MemoryBus;
  server: grpc.Server;
}

async function serve(bus: MemoryBus, opts: ServeBusOptions = {}): Promise<Served> {
  const server = new grpc.Server(BUS_SERVER_OPTIONS);
  serveBus(server, bus, opts);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { address: `127.0.0.1:${port}`, bus, server };
}

async function stop(s: Served): Promise<void> {
  await new Promise<void>((resolve) => s.server.tryShutdown(() => resolve()));
  s.server.forceShutdown();
  await s.bus.close();
}

// One server (and one MemoryBus over one store) per contract prefix: clients of the same prefix
// share it, as processes share one Redis.
const servers = new Map<string, Promise<Served>>();

runBusContract(
  'RemoteBus over gRPC to a MemoryBus',
  async (prefix) => {
    let s = servers.get(prefix);
    if (!s) servers.set(prefix, (s = serve(new MemoryBus({ store: new MemoryStore() }))));
    return new RemoteBus({ address: (await s).address });
  },
  async (prefix) => {
    const s = servers.get(prefix);
    servers.delete(prefix);
    if (s) await stop(await s);
  },
);

describe('RemoteBus and serveBus', () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function pair(
    opts: ServeBusOptions = {},
    secret?: string,
  ): Promise<{ s: Served; remote: RemoteBus }> {
    const s = await serve(new MemoryBus(), opts);
    cleanups.push(() => stop(s));
    const remote = new RemoteBus({ address: s.address, ...(secret ? { secret } : {}) });
    cleanups.push(() => remote.close());
    return { s, remote };
  }

  /** A raw BusService call, to see what travels. */
  function raw(
    address: string,
    request: BusCall,
    opts: { secret?: string; deadlineMs?: number } = {},
  ): Promise<{ err: grpc.ServiceError | null; reply?: BusReply }> {
    const client = new grpc.Client(address, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    if (opts.secret) md.set(BUS_SECRET_METADATA, opts.secret);
    return new Promise((resolve) => {
      client.makeUnaryRequest(
        BusServiceService.call.path,
        BusServiceService.call.requestSerialize,
        BusServiceService.call.responseDeserialize,
        request,
        md,
        { deadline: Date.now() + (opts.deadlineMs ?? 5000) },
        (err, reply) => {
          client.close();
          resolve({ err, reply });
        },
      );
    });
  }

  it('refuses calls without the cluster secret, and serves them with it', async () => {
    const { s } = await pair({ secret: 's3cret' });
    const wrong = new RemoteBus({ address: s.address, secret: 'guess' });
    const none = new RemoteBus({ address: s.address });
    cleanups.push(
      () => wrong.close(),
      () => none.close(),
    );
    for (const b of [wrong, none]) {
      const err = await b.listWorkers().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RemoteBusError);
      expect((err as RemoteBusError).code).toBe(grpc.status.UNAUTHENTICATED);
    }
    await expect(RemoteBus.connect({ address: s.address, secret: 'guess' })).rejects.toThrow(
      /missing or wrong cluster secret/,
    );
    const right = await RemoteBus.connect({ address: s.address, secret: 's3cret' });
    cleanups.push(() => right.close());
    await right.createJob({ id: 'j' });
    expect((await s.bus.getJob('j'))!.state).toBe('queued');
  });

  it('maps bus errors to status codes and back to the same classes', async () => {
    const { s, remote } = await pair();
    await remote.createJob({ id: 'j' });
    await remote.setAssignment('j', {
      generation: 3,
      shards: [{ shardId: 0, workerId: 'w', units: [{ layer: 0, start: 0, end: 2 }] }],
    });
    const caught = async (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        () => null,
        (e: unknown) => e,
      );

    const exists = await caught(remote.createJob({ id: 'j' }));
    expect(exists).toBeInstanceOf(JobExistsError);
    expect(exists).toMatchObject({ jobId: 'j', message: "job 'j' already exists" });
    const missing = await caught(remote.updateJobProgress('nope', 1));
    expect(missing).toBeInstanceOf(JobNotFoundError);
    expect(missing).toMatchObject({ jobId: 'nope' });
    const stale = await caught(remote.setAssignment('j', { generation: 2, shards: [] }));
    expect(stale).toBeInstanceOf(StaleAssignmentError);
    expect(stale).toMatchObject({ jobId: 'j', generation: 2, currentGeneration: 3 });
    const writer = await caught(remote.putCheckpoint('j', 1, 7, new Uint8Array(2), 2));
    expect(writer).toBeInstanceOf(StaleWriterError);
    expect(writer).toMatchObject({ jobId: 'j', shardId: 1, generation: 2, currentGeneration: 3 });
    const shard = await caught(remote.reassignShard('j', 5, 'a', 'b'));
    expect(shard).toBeInstanceOf(ShardNotFoundError);
    expect(shard).toMatchObject({ jobId: 'j', shardId: 5 });
    await remote.transitionJob('j', ['queued'], 'cancelled');
    const illegal = await caught(remote.transitionJob('j', ['cancelled'], 'running'));
    expect(illegal).toBeInstanceOf(IllegalTransitionError);

    // The statuses on the wire, for clients in other languages.
    const codes: [BusCall, grpc.status][] = [
      [{ method: 'createJob', args: '[{"id":"j"}]', payload: Buffer.alloc(0) }, 6],
      [{ method: 'deleteJob', args: '["no good"]', payload: Buffer.alloc(0) }, 3],
      [{ method: 'putSpins', args: '["zz",0,1,null]', payload: Buffer.from([1]) }, 5],
      [
        {
          method: 'setAssignment',
          args: '["j",{"generation":1,"shards":[]}]',
          payload: Buffer.alloc(0),
        },
        9,
      ],
      [{ method: 'close', args: '[]', payload: Buffer.alloc(0) }, 3],
      [{ method: 'toString', args: '[]', payload: Buffer.alloc(0) }, 3],
      [{ method: 'getJob', args: '{"id":1}', payload: Buffer.alloc(0) }, 3],
      [{ method: 'getJob', args: '["a","b"]', payload: Buffer.alloc(0) }, 3],
    ];
    for (const [req, code] of codes) {
      const { err } = await raw(s.address, req);
      expect(err?.code, `${req.method} ${req.args}`).toBe(code);
    }
    // A malformed argument is checked by the server's bus and named.
    const { err } = await raw(s.address, {
      method: 'getJob',
      args: '["a b"]',
      payload: Buffer.alloc(0),
    });
    expect(err!.details).toMatch(/^jobId must be 1-128 characters/);
    const detail = JSON.parse(err!.metadata.get(BUS_ERROR_METADATA)[0]!.toString()) as object;
    expect(detail).toMatchObject({ name: 'InvalidArgumentError', field: 'jobId' });
  });

  it('checks arguments on the client as a local bus does, before sending', async () => {
    const { s, remote } = await pair();
    // NaN would become null in JSON; the client refuses it with the local bus's message.
    await expect(remote.createJob({ id: 'j', x: [Number.NaN] })).rejects.toThrow(
      'job.x[0] must be a finite number (got NaN)',
    );
    await expect(remote.createJob({ id: 'j', x: [Number.NaN] })).rejects.toThrow(
      InvalidArgumentError,
    );
    await expect(remote.putCheckpoint('j', 0, 1, [1, 2] as unknown as Uint8Array)).rejects.toThrow(
      /data must be a Uint8Array/,
    );
    expect(await s.bus.getJob('j')).toBeNull();
  });

  it('carries spins and checkpoints as bytes, not JSON', async () => {
    const { s, remote } = await pair();
    await s.bus.createJob({ id: 'j' });
    const data = new Uint8Array(5 * 1024 * 1024 + 3); // over grpc-js's default 4 MiB limit
    for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
    expect(await remote.putCheckpoint('j', 1, 10, data)).toBe(true);
    expect(Buffer.compare((await s.bus.getCheckpoint('j', 1))!.data, data)).toBe(0);
    const back = await remote.getCheckpoint('j', 1);
    expect(back!.step).toBe(10);
    expect(back!.data).toBeInstanceOf(Uint8Array);
    expect(Buffer.compare(back!.data, data)).toBe(0);

    // On the wire: the packed spins in payload, null in their place among the JSON arguments.
    const { err } = await raw(s.address, {
      method: 'putSpins',
      args: '["j",2,7,null]',
      payload: Buffer.from([255, 0, 9]),
    });
    expect(err).toBeNull();
    expect(await s.bus.getSpins('j', 2)).toEqual({ step: 7, packed: new Uint8Array([255, 0, 9]) });
    const { reply } = await raw(s.address, {
      method: 'getSpins',
      args: '["j",2]',
      payload: Buffer.alloc(0),
    });
    expect(reply!.result).toBe('{"step":7}');
    expect([...reply!.payload]).toEqual([255, 0, 9]);
    expect(await remote.getSpins('j', 3)).toBeNull();
  });

  it('ends a blocking read before the call deadline with an empty answer', async () => {
    const { s } = await pair();
    await s.bus.createJob({ id: 'j' });
    const [created] = await s.bus.readEvents('j');
    const t0 = Date.now();
    const { err, reply } = await raw(
      s.address,
      {
        method: 'readEvents',
        args: JSON.stringify(['j', { after: created!.id, blockMs: 60_000 }]),
        payload: Buffer.alloc(0),
      },
      { deadlineMs: 600 },
    );
    const took = Date.now() - t0;
    expect(err).toBeNull();
    expect(reply!.result).toBe('[]');
    expect(took).toBeLessThan(5_000); // not the 60 s asked for
  });

  it('fails with UNAVAILABLE when no server answers', async () => {
    const { s } = await pair();
    const address = s.address;
    await stop(s);
    cleanups.length = 0;
    const remote = new RemoteBus({ address, callTimeoutMs: 2000 });
    cleanups.push(() => remote.close());
    const err = await remote.ping().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RemoteBusError);
    expect([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]).toContain(
      (err as RemoteBusError).code,
    );
  });

  it('is a Bus: the worker and coordinator code takes it where it takes any bus', () => {
    const b: Bus = new RemoteBus({ address: '127.0.0.1:1' });
    void b.close();
  });
});
