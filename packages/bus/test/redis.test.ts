import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  BusConnectionError,
  InvalidArgumentError,
  Keys,
  RedisBus,
  redisBusOptionsFromEnv,
  StaleWriterError,
  type RedisBusOptions,
} from '@spinmesh/bus';
import { makeTestCertificates } from './certs.js';
import { runBusContract } from './contract.js';
import { startRedisServer, type RedisServer } from '../../../test/support/redis-server.js';

let server: RedisServer | undefined;
let admin: Redis | undefined;

beforeAll(async () => {
  server = await startRedisServer();
  admin = new Redis({ port: server.port, host: '127.0.0.1', lazyConnect: true });
  await admin.connect();
});

afterAll(async () => {
  await admin?.quit();
  await server?.stop();
});

function srv(): RedisServer {
  if (!server) throw new Error('redis-server did not start (see the beforeAll error)');
  return server;
}

/** Every key under a SCAN pattern, in one database. */
async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    out.push(...keys);
    cursor = next;
  } while (cursor !== '0');
  return out.sort();
}

async function removePrefix(redis: Redis, prefix: string): Promise<void> {
  const keys = await scanKeys(redis, new Keys(prefix).all());
  if (keys.length > 0) await redis.del(...keys);
}

function connect(prefix: string, extra: RedisBusOptions = {}): Promise<RedisBus> {
  return RedisBus.connect({ url: srv().url, prefix, ...extra });
}

runBusContract(
  'RedisBus',
  (prefix) => connect(prefix),
  async (prefix) => {
    await removePrefix(admin!, prefix);
  },
);

describe('RedisBus', () => {
  it('keeps every key under its prefix and removes every key of a deleted job', async () => {
    // A database of its own, so that SCAN sees only this test's keys.
    const db = new Redis({ port: srv().port, host: '127.0.0.1', db: 3 });
    const prefix = `own-${process.pid}`;
    const other = `other-${process.pid}`;
    const bus = await connect(prefix, { db: 3, checkpointChunkBytes: 1000 });
    const neighbour = await connect(other, { db: 3 });
    try {
      await neighbour.createJob({ id: 'j' });
      await bus.registerWorker(
        { id: 'w1', address: '127.0.0.1:1', cores: 1, startedAt: 0, meta: {} },
        60_000,
      );
      for (const id of ['j', 'k']) {
        await bus.createJob({ id, spec: { n: 1 } });
        await bus.transitionJob(id, ['queued'], 'running', { progress: 0 });
        await bus.updateJobProgress(id, { step: 3 });
        await bus.setAssignment(id, {
          generation: 1,
          shards: [0, 1].map((s) => ({
            shardId: s,
            workerId: 'w1',
            units: [{ layer: 0, start: s, end: s + 1 }],
          })),
        });
        await bus.reassignShard(id, 1, 'w1', 'w2');
        await bus.putSpins(id, 0, 1, new Uint8Array(10));
        await bus.putSpins(id, 1, 1, new Uint8Array(10));
        for (const step of [1, 2, 3]) await bus.putCheckpoint(id, 0, step, new Uint8Array(4500));
        await bus.putCheckpoint(id, 1, 1, new Uint8Array(10));
        // refused writes (an earlier step; a replaced writer's generation) leave no chunks
        expect(await bus.putCheckpoint(id, 0, 2, new Uint8Array(4500))).toBe(false);
        await expect(bus.putCheckpoint(id, 0, 4, new Uint8Array(4500), 1)).rejects.toThrow(
          StaleWriterError,
        );
        await bus.appendEvent(id, { type: 'eval', at: 1 });
      }
      const all = await scanKeys(db, '*');
      for (const key of all) {
        expect(key.startsWith(`${prefix}:`) || key.startsWith(`${other}:`)).toBe(true);
      }
      // Replaced checkpoints left no chunks: job j has 5 of its current one on shard 0, 1 on 1.
      const keys = new Keys(prefix);
      const chunks = all.filter((k) => k.startsWith(`${prefix}:job:j:ckpt:`));
      expect(chunks).toHaveLength(6);
      // A writer that died midway leaves chunks behind; deleting the job takes them too.
      await db.set(keys.checkpointChunk('j', 0, 'deadbeef', 0), 'x');

      expect(await bus.deleteJob('j')).toBe(true);
      expect(await scanKeys(db, keys.jobAll('j'))).toEqual([]);
      expect(await scanKeys(db, keys.jobAll('k'))).not.toEqual([]);
      expect(await bus.deleteJob('k')).toBe(true);
      expect(await bus.removeWorker('w1')).toBe(true);
      // What is left of the prefix is not any job's: the creation counter only.
      expect(await scanKeys(db, keys.all())).toEqual([keys.jobSeq()]);
      expect((await neighbour.getJob('j'))!.state).toBe('queued');
    } finally {
      await bus.close();
      await neighbour.close();
      await db.flushdb();
      await db.quit();
    }
  });

  it('rereads a checkpoint that was replaced between its pointer and its chunks', async () => {
    const prefix = `race-${process.pid}`;
    const reader = await connect(prefix, { checkpointChunkBytes: 1000 });
    const writer = await connect(prefix, { checkpointChunkBytes: 1000 });
    try {
      await writer.createJob({ id: 'j' });
      await writer.putCheckpoint('j', 0, 1, new Uint8Array(3500).fill(1));
      // Let the writer replace the checkpoint (and delete the old chunks) right after the reader
      // has followed the pointer and before it fetches the chunks: the race a reader must survive.
      const conn = (reader as unknown as { redis: Redis }).redis;
      const mgetBuffer = conn.mgetBuffer.bind(conn) as (keys: string[]) => Promise<unknown>;
      let raced = 0;
      (conn as unknown as { mgetBuffer: unknown }).mgetBuffer = async (keys: string[]) => {
        if (raced++ === 0) await writer.putCheckpoint('j', 0, 2, new Uint8Array(2500).fill(2));
        return mgetBuffer(keys);
      };
      const got = await reader.getCheckpoint('j', 0);
      expect(raced).toBe(2);
      expect(got).toEqual({ step: 2, data: new Uint8Array(2500).fill(2) });
    } finally {
      await reader.close();
      await writer.close();
      await removePrefix(admin!, prefix);
    }
  });

  it('authenticates with a password and says clearly when it is wrong', async () => {
    const secured = await startRedisServer({ password: 'correct horse' });
    try {
      const url = `redis://127.0.0.1:${secured.port}`;
      const wrong = RedisBus.connect({ url, password: 'battery staple', connectTimeoutMs: 2000 });
      await expect(wrong).rejects.toThrow(BusConnectionError);
      await expect(
        RedisBus.connect({ url, password: 'battery staple', connectTimeoutMs: 2000 }),
      ).rejects.toThrow(/cannot connect to Redis at 127\.0\.0\.1:\d+: WRONGPASS/);
      await expect(RedisBus.connect({ url, connectTimeoutMs: 2000 })).rejects.toThrow(/NOAUTH/);

      const bus = await RedisBus.connect({ url, password: 'correct horse', prefix: 'auth' });
      await bus.createJob({ id: 'j' });
      expect((await bus.getJob('j'))!.state).toBe('queued');
      await bus.close();
      // The same through the environment, the password in the URL and as its own variable.
      const viaUrl = await RedisBus.fromEnv({
        REDIS_URL: `redis://:correct%20horse@127.0.0.1:${secured.port}`,
        SPINMESH_REDIS_PREFIX: 'auth',
      });
      expect((await viaUrl.getJob('j'))!.id).toBe('j');
      await viaUrl.close();
      const viaEnv = await RedisBus.fromEnv({
        REDIS_URL: url,
        REDIS_PASSWORD: 'correct horse',
        SPINMESH_REDIS_PREFIX: 'auth',
      });
      expect(await viaEnv.deleteJob('j')).toBe(true);
      await viaEnv.close();
    } finally {
      await secured.stop();
    }
  });

  it('speaks TLS to a server with a private CA, and refuses one it cannot verify', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spinmesh-tls-'));
    const certs = makeTestCertificates(dir);
    const secure = await startRedisServer({
      tls: { certFile: certs.serverCertFile, keyFile: certs.serverKeyFile, caFile: certs.caFile },
    });
    try {
      // As a deployment would: a rediss:// URL and the CA file from the environment.
      const viaEnv = await RedisBus.fromEnv({
        REDIS_URL: secure.url,
        REDIS_TLS_CA: certs.caFile,
        SPINMESH_REDIS_PREFIX: 'tls',
      });
      await viaEnv.createJob({ id: 'j' });
      await viaEnv.close();
      // With a client certificate, given as files.
      const withCert = await RedisBus.connect({
        host: '127.0.0.1',
        port: secure.port,
        prefix: 'tls',
        tls: { caFile: certs.caFile, certFile: certs.clientCertFile, keyFile: certs.clientKeyFile },
      });
      expect(await withCert.deleteJob('j')).toBe(true);
      await withCert.close();
      // Without the CA the server's certificate does not check out.
      await expect(RedisBus.connect({ url: secure.url, connectTimeoutMs: 2000 })).rejects.toThrow(
        /cannot connect to Redis at 127\.0\.0\.1:\d+ \(TLS\): .*certificate/,
      );
    } finally {
      await secure.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fails fast and clearly when nothing listens', async () => {
    const probe = await startRedisServer();
    const port = probe.port;
    await probe.stop();
    await expect(
      RedisBus.connect({ host: '127.0.0.1', port, connectTimeoutMs: 1000 }),
    ).rejects.toThrow(/cannot connect to Redis at 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
  });

  it('reads its options from the environment', () => {
    expect(redisBusOptionsFromEnv({})).toEqual({});
    expect(
      redisBusOptionsFromEnv({
        REDIS_URL: 'rediss://redis.internal:6380/2',
        REDIS_USERNAME: 'spinmesh',
        REDIS_PASSWORD: 's3cret',
        REDIS_TLS_CA: '/etc/ssl/redis-ca.pem',
        SPINMESH_REDIS_PREFIX: 'prod',
        UNRELATED: 'x',
      }),
    ).toEqual({
      url: 'rediss://redis.internal:6380/2',
      username: 'spinmesh',
      password: 's3cret',
      tls: { caFile: '/etc/ssl/redis-ca.pem' },
      prefix: 'prod',
    });
    expect(redisBusOptionsFromEnv({ REDIS_URL: '', SPINMESH_REDIS_PREFIX: '' })).toEqual({});
  });

  it('refuses bad options before connecting', async () => {
    await expect(RedisBus.connect({ url: 'http://x' })).rejects.toThrow(
      /url must start with redis/,
    );
    await expect(RedisBus.connect({ prefix: 'a:b' })).rejects.toThrow(InvalidArgumentError);
    await expect(RedisBus.connect({ port: 70000 })).rejects.toThrow(/port/);
    await expect(RedisBus.connect({ tls: { caFile: '/nonexistent/ca.pem' } })).rejects.toThrow(
      /tls.caFile cannot be read/,
    );
  });
});
