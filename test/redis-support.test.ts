// The tests' Redis: a container where a local container runtime answers, else Debian's
// redis-server (test/support/redis-server.ts). Whichever this machine gets must answer; the
// choice must follow SPINMESH_TEST_REDIS; and a container asked for where there is no runtime
// fails with testcontainers' reason instead of falling back.
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  chooseRedisBackend,
  startRedisContainer,
  startRedisServer,
} from './support/redis-server.js';

describe("the tests' Redis", () => {
  it('follows SPINMESH_TEST_REDIS', async () => {
    expect(await chooseRedisBackend({ SPINMESH_TEST_REDIS: 'server' })).toEqual({
      kind: 'server',
      why: 'SPINMESH_TEST_REDIS=server',
    });
    expect((await chooseRedisBackend({ SPINMESH_TEST_REDIS: 'container' })).kind).toBe('container');
    await expect(chooseRedisBackend({ SPINMESH_TEST_REDIS: 'docker' })).rejects.toThrow(
      /SPINMESH_TEST_REDIS must be 'server' or 'container', got 'docker'/,
    );
  });

  it('is a container where a local runtime answers, else redis-server, and it answers', async () => {
    const auto = await chooseRedisBackend({});
    console.log(`the tests' Redis here: ${auto.kind} (${auto.why})`);
    if (auto.kind === 'server') {
      expect(auto.why).toMatch(/no container runtime|not local/);
      // no runtime: asking for a container fails with the reason, it does not fall back
      if (/no container runtime/.test(auto.why))
        await expect(startRedisContainer()).rejects.toThrow(/container runtime/);
    }
    const redis = await startRedisServer();
    const client = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await client.connect();
      expect(await client.ping()).toBe('PONG');
    } finally {
      client.disconnect();
      await redis.stop();
    }
  }, 120_000);
});
