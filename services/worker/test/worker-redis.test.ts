// Worker processes on a real Redis (REDIS_URL, a key prefix of their own): the same sharded job
// as over the in-process bus gives the single-process result bit for bit, and once the job is
// deleted and the workers have drained, no key is left under the prefix.
import { execFileSync } from 'node:child_process';

import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { Keys, RedisBus } from '@spinmesh/bus';

import {
  Control,
  WorkerProcs,
  assembleFromBus,
  assignments,
  basSpec,
  compare,
  createJob,
  root,
  singleProcessReference,
  waitDone,
} from './cluster-helpers.js';
import { startRedisServer, type RedisServer } from '../../../test/support/redis-server.js';

const PREFIX = `wtest-${process.pid}`;
let redis: RedisServer;
let bus: RedisBus;
let procs: WorkerProcs;
let control: Control;

beforeAll(async () => {
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-b', 'services/worker'], {
    cwd: root,
    stdio: 'inherit',
  });
  redis = await startRedisServer();
  bus = await RedisBus.connect({ url: redis.url, prefix: PREFIX });
  procs = new WorkerProcs({ REDIS_URL: redis.url, SPINMESH_REDIS_PREFIX: PREFIX });
  control = new Control('');
});

afterEach(async (ctx) => {
  if (ctx.task.result?.state === 'fail') {
    for (const w of procs.all) {
      console.error(`--- ${w.id} ---\n${w.logs.map((l) => JSON.stringify(l)).join('\n')}`);
      console.error(w.stderr.join(''));
    }
  }
  await procs.killAll();
});

afterAll(async () => {
  control?.close();
  await procs?.killAll();
  await bus?.close();
  await redis?.stop();
});

async function keys(): Promise<string[]> {
  const r = new Redis({ port: redis.port, host: '127.0.0.1' });
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, ks] = await r.scan(cursor, 'MATCH', new Keys(PREFIX).all(), 'COUNT', 1000);
    out.push(...ks);
    cursor = next;
  } while (cursor !== '0');
  await r.quit();
  return out.sort();
}

it('trains over 2 worker processes on a RedisBus and leaves no key behind', async () => {
  const ws = await Promise.all([procs.start('rw-0'), procs.start('rw-1')]);
  expect((await bus.listWorkers()).map((w) => w.id)).toEqual(['rw-0', 'rw-1']);
  const job = await createJob(bus, 'bas-redis', basSpec(20), 2);
  await bus.setAssignment(job.id, {
    generation: 1,
    shards: ws.map((w, s) => ({
      shardId: s,
      workerId: w.id,
      units: job.spec.network.layers.map((l, layer) => ({
        layer,
        start: job.layout[s]![l.name]![0],
        end: job.layout[s]![l.name]![1],
      })),
    })),
  });
  const as = assignments(
    job,
    ws.map((w) => w.address),
    1,
    { checkpointEvery: 10 },
  );
  await Promise.all(as.map((a, s) => control.assign(ws[s]!.address, a)));
  await waitDone(
    control,
    ws.map((w) => w.address),
    30_000,
  );
  const got = await assembleFromBus(bus, job);
  expect(compare(got, singleProcessReference(job))).toEqual({ identical: true, maxDiff: 0 });
  expect((await bus.getSpins(job.id, 0))?.step).toBeGreaterThan(0);

  for (const w of ws) await control.stop(w.address, job.id, true);
  for (const w of ws) w.child.kill('SIGTERM');
  expect((await Promise.all(ws.map((w) => w.exited))).map((e) => e.code)).toEqual([0, 0]);
  expect(await bus.listWorkers()).toEqual([]);
  expect(await bus.deleteJob(job.id)).toBe(true);
  // Only the cluster-wide job sequence counter stays: nothing of the job or the workers.
  expect(await keys()).toEqual([new Keys(PREFIX).jobSeq()]);
});
