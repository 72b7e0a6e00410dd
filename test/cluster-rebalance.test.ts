// Rebalancing end to end: a lockstep job on two real worker processes, one of them slowed down
// (SPINMESH_DEBUG_SLOWDOWN=3), is moved by the coordinator to a layout that gives the slow worker
// fewer units, and still ends with the single-process model bit for bit (portable kernels); and
// a coordinator killed in the middle of such a move resumes the job, restarted, from a step whose
// checkpoints are all of the layout it recorded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBus, RemoteBus } from '@spinmesh/bus';
import { LocalCluster, SERVICE_MAINS, readModel } from '@spinmesh/coordinator';
import { existsSync } from 'node:fs';
import {
  COMPLETED,
  FAST,
  Jobs,
  alive,
  basJob,
  compareNetworks,
  decode,
  listening,
  reference,
} from './cluster-helpers.js';
import { startRedisServer, type RedisServer } from './support/redis-server.js';

/** A lockstep job of two shards; 16-32 so that 2:1 and 3:1 splits differ from the even one in every layer. */
function lockstepJob(): Record<string, unknown> {
  return basJob(1200, {
    workers: 2,
    staleness: 0,
    checkpointEverySteps: 40,
    network: { rbm: { visible: 16, hidden: 32 } },
    evaluate: { every: 300, exact: true },
  });
}

/**
 * A local cluster (portable kernels) of two workers, the second slowed down three times, whose
 * coordinator moves jobs on any predicted saving (they are short). The coordinator reads
 * `coordinatorEnv` at each start: the caller may change it between starts.
 */
async function withStraggler(
  env: Record<string, string>,
  extra: Record<string, string>,
): Promise<{ cluster: LocalCluster; coordinatorEnv: Record<string, string> }> {
  const coordinatorEnv = { ...FAST.coordinator, SPINMESH_REBALANCE_MIN_SAVING_S: '0', ...extra };
  // LocalCluster reads workerEnv when it starts each worker: one object, refilled per worker.
  const workerEnv: Record<string, string> = {};
  const cluster = await LocalCluster.start({
    workers: 0,
    kernels: 'portable',
    env: { ...process.env, SPINMESH_LOG_LEVEL: 'info', ...env },
    coordinatorEnv,
    workerEnv,
    stopGraceMs: 5000,
  });
  Object.assign(workerEnv, FAST.worker);
  cluster.startWorker();
  Object.assign(workerEnv, FAST.worker, { SPINMESH_DEBUG_SLOWDOWN: '3' });
  cluster.startWorker();
  return { cluster, coordinatorEnv };
}

describe('rebalancing a lockstep job with a straggler', () => {
  let cluster: LocalCluster;
  let jobs: Jobs;
  let bus: RemoteBus;
  const addresses = new Set<string>();

  beforeAll(async () => {
    for (const main of Object.values(SERVICE_MAINS))
      if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build first`);
    ({ cluster } = await withStraggler({}, {}));
    jobs = new Jobs(cluster.address);
    bus = await RemoteBus.connect({ address: cluster.address, secret: cluster.secret });
    addresses.add(cluster.address);
  });

  afterAll(async () => {
    jobs?.close();
    await bus?.close();
    const pids = cluster ? [...cluster.processes.values()].map((p) => p.child.pid) : [];
    await cluster?.stop();
    for (const pid of pids) if (pid !== undefined) expect(alive(pid)).toBe(false);
    for (const a of addresses) expect(await listening(a)).toBe(false);
  });

  it('moves units to the fast worker at a step it asks every shard to checkpoint, and the model is the undisturbed one', async () => {
    const spec = lockstepJob();
    const ref = await reference(spec);
    const { jobId } = await jobs.submit(spec);
    const { job, events } = await jobs.follow(jobId, undefined, 300_000);
    for (const e of events) for (const s of e.workers?.shards ?? []) addresses.add(s.address);
    expect(job.state, job.error).toBe(COMPLETED);
    const moves = events
      .filter((e) => e.workers?.kind === 'rebalanced')
      .map(
        (e) =>
          JSON.parse(e.json) as {
            before: number[];
            after: number[];
            generation: number;
            restoreFromStep: number;
          },
      );
    expect(moves.length).toBeGreaterThan(0);
    expect(moves.length).toBeLessThanOrEqual(3);
    const first = moves[0]!;
    expect(first.before).toEqual([24, 24]);
    // the slowed worker (the second started) has shard 1 or 0, whichever it was given: it loses units
    const assigned = events.find((e) => e.workers?.kind === 'assigned')!.workers!;
    const slowShard = assigned.shards.find((s) => s.workerId.endsWith('-1'))!.shardId;
    expect(first.after[slowShard]!).toBeLessThan(24);
    expect(first.after[0]! + first.after[1]!).toBe(48);
    // every move restores the step it asked every shard to checkpoint (right after deciding,
    // not at the next periodic checkpoint) and is not counted as a recovery
    const restores = events.filter((e) => e.workers?.kind === 'assigned').slice(1);
    expect(restores.length).toBe(moves.length);
    restores.forEach((r, i) => {
      const at = r.workers!.restoreFromStep;
      expect(at).toBe(moves[i]!.restoreFromStep);
      expect(at % 40).not.toBe(0);
    });
    expect(events.some((e) => e.workers?.kind === 'worker-lost')).toBe(false);
    const m = await readModel(bus, jobId);
    expect(compareNetworks(decode(m!.bytes), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    console.log(
      `rebalanced ${moves.length}x: ${moves.map((x) => `${x.before.join('/')} -> ${x.after.join('/')}`).join(', ')}; model bit-identical`,
    );
  });
});

describe('a coordinator killed while it moves a job to another layout', () => {
  let redis: RedisServer;
  const prefix = `spinmesh-move-${process.pid}`;
  let cluster: LocalCluster;
  let jobs: Jobs;
  let bus: RedisBus;
  // Read when the coordinator (re)starts: one object, changed between its two starts. The first
  // kills itself (SIGKILL) in its first move once it has re-cut shard 0's checkpoint, while
  // shard 1's is still in the old layout and the new layout is not recorded.
  let coordinatorEnv: Record<string, string>;

  beforeAll(async () => {
    redis = await startRedisServer();
    ({ cluster, coordinatorEnv } = await withStraggler(
      { REDIS_URL: redis.url, SPINMESH_REDIS_PREFIX: prefix },
      { SPINMESH_DEBUG_STOP_IN_MOVE: '1' },
    ));
    jobs = new Jobs(cluster.address);
    bus = await RedisBus.connect({ url: redis.url, prefix });
  });

  afterAll(async () => {
    jobs?.close();
    await bus?.close();
    await cluster?.stop();
    await redis?.stop();
  });

  it('restarted, it restores the last step whose checkpoints are whole, and ends at the undisturbed model', async () => {
    const spec = lockstepJob();
    const ref = await reference(spec);
    const coordinator = cluster.processes.get('coordinator')!;
    const { jobId } = await jobs.submit(spec);
    await coordinator.exited;
    expect(coordinator.child.signalCode).toBe('SIGKILL');
    coordinatorEnv['SPINMESH_DEBUG_STOP_IN_MOVE'] = '0';
    await cluster.startCoordinator(); // same address, same Redis
    const { job, events } = await jobs.follow(jobId, undefined, 300_000);
    expect(job.state, job.error).toBe(COMPLETED);
    const m = await readModel(bus, jobId);
    expect(compareNetworks(decode(m!.bytes), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    const restores = events
      .filter((e) => e.workers?.kind === 'assigned')
      .map((e) => e.workers!.restoreFromStep);
    console.log(
      `coordinator killed mid-move and restarted: assignments restoring ${restores.join(', ')}; model bit-identical`,
    );
  }, 400_000);
});
