// The cluster runtime end to end: a coordinator process and worker processes over loopback gRPC,
// with the coordinator's in-process bus or a real redis-server, training bars-and-stripes 4x4
// with a 16-16 RBM. Staleness 0 must give the single-process result bit for bit (portable
// kernels: every sum is computed in the same order whatever the sharding), also across a worker
// killed with SIGKILL, a worker frozen past its heartbeat and resumed, and a coordinator killed
// and restarted; unbounded staleness must land within 0.1 nats of the lockstep log-likelihood
// (CD), staleness 2 within 2 (persistent chains). Afterwards no process, port or key is left.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBus, RemoteBus, type Bus } from '@spinmesh/bus';
import { readModel, type LocalCluster } from '@spinmesh/coordinator';
import { JobState, type Evaluation, type Job, type WatchJobResponse } from '@spinmesh/proto';
import { startRedisServer, type RedisServer } from './support/redis-server.js';
import { runJob } from '@spinmesh/model';
import {
  COMPLETED,
  Jobs,
  alive,
  basJob,
  compareNetworks,
  decode,
  listening,
  portable,
  reference,
  startCluster,
} from './cluster-helpers.js';

/** Every process and address the tests started, checked at the end. */
const started = { pids: new Set<number>(), addresses: new Set<string>() };

function remember(cluster: LocalCluster, events: WatchJobResponse[] = []): void {
  for (const p of cluster.processes.values()) if (p.child.pid) started.pids.add(p.child.pid);
  started.addresses.add(cluster.address);
  for (const e of events) for (const s of e.workers?.shards ?? []) started.addresses.add(s.address);
}

async function modelOf(bus: Bus, jobId: string): Promise<ReturnType<typeof decode>> {
  const m = await readModel(bus, jobId);
  if (!m) throw new Error(`job ${jobId} has no model`);
  return decode(m.bytes);
}

/**
 * A cluster of 3 workers on the coordinator's in-process bus for the tests of one describe
 * block: started before them, stopped (its logs kept for a failure) after.
 */
function inProcessCluster(): { cluster: LocalCluster; jobs: Jobs; bus: RemoteBus } {
  const fx = {} as { cluster: LocalCluster; jobs: Jobs; bus: RemoteBus };
  beforeAll(async () => {
    fx.cluster = await startCluster(3);
    fx.jobs = new Jobs(fx.cluster.address);
    fx.bus = await RemoteBus.connect({ address: fx.cluster.address, secret: fx.cluster.secret });
  });
  afterAll(async () => {
    fx.jobs?.close();
    await fx.bus?.close();
    if (fx.cluster) {
      remember(fx.cluster);
      await fx.cluster.stop();
    }
  });
  return fx;
}

describe('cluster on the in-process bus', () => {
  const fx = inProcessCluster();

  it('staleness 0 with 1, 2 and 3 workers gives the single-process model bit for bit', async () => {
    const specs = [1, 2, 3].map((K) => basJob(300, { workers: K }));
    const ref = await reference(specs[0]!);
    // All three at once: the first two run side by side, the third waits for workers.
    const ids = [];
    for (const s of specs) ids.push((await fx.jobs.submit(s)).jobId);
    const results = await Promise.all(ids.map((id) => fx.jobs.follow(id)));
    for (const [i, { job, events }] of results.entries()) {
      remember(fx.cluster, events);
      expect(job.state, job.error).toBe(COMPLETED);
      expect(job.workers).toBe(i + 1);
      expect(job.generation).toBe(1);
      expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
      const cmp = compareNetworks(await modelOf(fx.bus, job.jobId), ref.network);
      expect(cmp, `K = ${i + 1}`).toEqual({ identical: true, maxDiff: 0 });
      expect(events.at(-1)!.state?.to).toBe(COMPLETED);
      expect(events.some((e) => e.evaluation?.exactLogLikelihood === ref.ll)).toBe(true);
    }
    // The K = 3 job had to wait for the other two to free their workers, and said so.
    const waited = results[2]!.events.filter((e) => e.workers?.kind === 'waiting');
    expect(waited.length).toBeGreaterThan(0);
    expect(waited[0]!.workers!.needed).toBe(3);
    console.log(
      `staleness 0, K = 1, 2, 3: exact LL ${ref.ll.toFixed(6)}, parameters bit-identical`,
    );
  });

  it('a worker killed with SIGKILL mid-job: the job completes with the undisturbed model', async () => {
    const spec = basJob(1500, { workers: 2, checkpointEverySteps: 100 });
    const ref = await reference(spec);
    const { jobId } = await fx.jobs.submit(spec);
    let killed: Promise<void> | null = null;
    let killedAt = 0;
    let victim = '';
    const { job, events } = await fx.jobs.follow(jobId, (e) => {
      if (e.workers?.kind === 'assigned' && victim === '')
        victim = e.workers.shards.find((s) => s.shardId === 1)!.workerId;
      if (killed || !e.progress || e.progress.step < 400) return;
      // Kill the worker of shard 1 (there is a spare: 3 workers for 2 shards).
      const name = victim.slice(victim.lastIndexOf('-') + 1);
      killedAt = e.progress.step;
      killed = fx.cluster.kill(`worker-${name}`, 'SIGKILL');
    });
    remember(fx.cluster, events);
    await killed;
    expect(killed).not.toBeNull();
    expect(job.state, job.error).toBe(COMPLETED);
    const lost = events.filter((e) => e.workers?.kind === 'worker-lost');
    expect(lost.length).toBeGreaterThan(0);
    const reassigned = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
    expect(reassigned.generation).toBeGreaterThanOrEqual(2);
    expect(reassigned.restoreFromStep).toBeGreaterThan(0);
    expect(reassigned.restoreFromStep % 100).toBe(0);
    expect(job.progress?.restoredFromStep).toBe(reassigned.restoreFromStep);
    const cmp = compareNetworks(await modelOf(fx.bus, jobId), ref.network);
    expect(cmp).toEqual({ identical: true, maxDiff: 0 });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    console.log(
      `SIGKILL of a worker at step ~${killedAt}: restored every shard from step ` +
        `${reassigned.restoreFromStep} (generation ${reassigned.generation}); exact LL ` +
        `${job.evaluation?.exactLogLikelihood?.toFixed(6)} = undisturbed ${ref.ll.toFixed(6)}`,
    );
  });

  it('with no worker left for a shard the job waits in the queue, then resumes from its checkpoint', async () => {
    // Two live workers are left after the test above: a two-shard job has no spare.
    const spec = basJob(1500, { workers: 2, checkpointEverySteps: 100 });
    const ref = await reference(spec);
    const { jobId } = await fx.jobs.submit(spec);
    let victim = '';
    let killed: Promise<void> | null = null;
    let restarted = false;
    const { job, events } = await fx.jobs.follow(jobId, (e) => {
      if (e.workers?.kind === 'assigned' && victim === '') victim = e.workers.shards[0]!.workerId;
      if (!killed && e.progress && e.progress.step >= 400) {
        killed = fx.cluster.kill(`worker-${victim.slice(victim.lastIndexOf('-') + 1)}`, 'SIGKILL');
      }
      if (e.workers?.kind === 'requeued' && !restarted) {
        restarted = true;
        fx.cluster.startWorker(); // a worker comes back: the job must go on by itself
      }
    });
    remember(fx.cluster, events);
    expect(job.state, job.error).toBe(COMPLETED);
    const moves = events.filter((e) => e.state).map((e) => [e.state!.from, e.state!.to]);
    const { JOB_STATE_QUEUED: Q, JOB_STATE_RUNNING: R } = JobState;
    expect(moves.slice(0, 4)).toEqual([
      [JobState.JOB_STATE_UNSPECIFIED, Q],
      [Q, R],
      [R, Q],
      [Q, R],
    ]);
    const requeue = events.find((e) => e.workers?.kind === 'requeued')!.workers!;
    expect(requeue.message).toMatch(
      /^back to the queue: 1 shard without a worker and 0 idle live workers \(shard \d: worker local-\d+-\d is lost: /,
    );
    const resumed = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
    expect(resumed.restoreFromStep).toBeGreaterThan(0);
    expect(compareNetworks(await modelOf(fx.bus, jobId), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    console.log(
      `no spare worker: requeued, resumed from step ${resumed.restoreFromStep} on a new worker ` +
        `(generation ${resumed.generation}); model bit-identical to the undisturbed run`,
    );
  });

  it('a worker frozen past its heartbeat, then resumed: its shard moves on, the model is undisturbed', async () => {
    // A stall rather than a crash (SIGSTOP, as a long pause or a partition would): the frozen
    // worker's shard goes to the spare under a new generation; once the job has moved on, the
    // worker is let go on (SIGCONT) in the middle of its old run. Its frames are refused by the
    // peers, its checkpoints by the bus, and the coordinator stops it.
    fx.cluster.startWorker(); // a spare: 3 live workers for 2 shards
    for (let t = Date.now(); (await fx.bus.listWorkers()).length < 3;) {
      if (Date.now() - t > 60_000) throw new Error('the spare worker did not register');
      await new Promise((r) => setTimeout(r, 100));
    }
    const spec = basJob(1500, { workers: 2, checkpointEverySteps: 100 });
    const ref = await reference(spec);
    const { jobId } = await fx.jobs.submit(spec);
    let victim = '';
    let pid = 0;
    let frozenAt = 0;
    let resumedFrom: number | null = null;
    const { job, events } = await fx.jobs.follow(jobId, (e) => {
      if (e.workers?.kind === 'assigned' && victim === '')
        victim = e.workers.shards.find((s) => s.shardId === 1)!.workerId;
      if (!pid && e.progress && e.progress.step >= 400) {
        pid = fx.cluster.processes.get(`worker-${victim.slice(victim.lastIndexOf('-') + 1)}`)!.child
          .pid!;
        frozenAt = e.progress.step;
        process.kill(pid, 'SIGSTOP');
      }
      if (
        pid &&
        resumedFrom === null &&
        e.workers?.kind === 'assigned' &&
        e.workers.generation >= 2
      ) {
        resumedFrom = e.workers.restoreFromStep;
        process.kill(pid, 'SIGCONT');
      }
    });
    remember(fx.cluster, events);
    if (pid && resumedFrom === null) process.kill(pid, 'SIGCONT');
    expect(job.state, job.error).toBe(COMPLETED);
    expect(resumedFrom).toBeGreaterThan(0);
    const moved = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
    expect(moved.shards.map((s) => s.workerId)).not.toContain(victim);
    expect(compareNetworks(await modelOf(fx.bus, jobId), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    // Resumed, refused, and its old run ended (stopped by the coordinator, or by the bus's
    // refusal of its checkpoint), not crashed.
    const frozen = [...fx.cluster.processes.values()].find((p) => p.child.pid === pid)!;
    for (let t = Date.now(); !/shard stopped|replaced this run/.test(frozen.tail());) {
      if (Date.now() - t > 60_000)
        throw new Error(`the resumed worker's old run did not end:\n${frozen.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(alive(pid)).toBe(true);
    console.log(
      `worker frozen at step ~${frozenAt}, resumed after its shard moved on (generation ` +
        `${moved.generation}, from step ${resumedFrom}): model bit-identical to the undisturbed run`,
    );
  });

  /**
   * Bars and stripes on 2 workers for 2000 steps, learning rate 0.1 decaying linearly to 0: the
   * lockstep reference (single process) and the cluster's run at `staleness`.
   */
  async function asynchronous(
    train: Record<string, unknown>,
    staleness: number | 'unbounded',
    what: string,
  ): Promise<{ ll: number; lockstep: Awaited<ReturnType<typeof reference>>; jobId: string }> {
    const settings = {
      workers: 2,
      train: {
        batchSize: 30,
        learningRate: 0.1,
        momentum: 0.5,
        centring: true,
        statistics: 'samples',
        schedule: { type: 'linear', steps: 2000, end: 0 },
        ...train,
      },
    };
    const lockstep = await reference(basJob(2000, settings));
    const { jobId } = await fx.jobs.submit(basJob(2000, { ...settings, staleness }));
    const { job, events } = await fx.jobs.follow(jobId);
    remember(fx.cluster, events);
    expect(job.state, job.error).toBe(COMPLETED);
    // Progress says where the shards' time went: some computing, some waiting, within the whole.
    // The fractions are cumulative over each polled shard's run: an early event may come before
    // a shard has first waited (often under load), but by the end the shards have waited.
    const times = events.flatMap((e) => (e.progress?.computeFraction ? [e.progress] : []));
    expect(times.length).toBeGreaterThan(0);
    for (const p of times) {
      expect(p.computeFraction).toBeLessThan(1);
      expect(p.waitFraction).toBeGreaterThanOrEqual(0);
      expect(p.computeFraction + p.waitFraction).toBeLessThanOrEqual(1);
    }
    expect(times.at(-1)!.waitFraction).toBeGreaterThan(0);
    const ll = job.evaluation!.exactLogLikelihood!;
    console.log(
      `${what}: exact LL ${ll.toFixed(4)}, lockstep ${lockstep.ll.toFixed(4)} ` +
        `(difference ${(ll - lockstep.ll).toFixed(4)} nats)`,
    );
    return { ll, lockstep, jobId };
  }

  it('unbounded staleness lands within 0.1 nats of the lockstep log-likelihood', async () => {
    // CD-10. With CD every chain starts from the batch, whose states a shard always waits for,
    // so 'unbounded' lets the weights lag (asynchronous updates) but never mixes spins of
    // different steps in one chain. Over seeds 1-10 the lockstep run ends at -3.647 +- 0.028
    // nats (sd), so two independent runs differ by about 0.04 (sd): 0.1 is 2.5 sd of that.
    const r = await asynchronous({ negative: 'cd', k: 10 }, 'unbounded', 'CD-10, unbounded');
    expect(Math.abs(r.ll - r.lockstep.ll)).toBeLessThan(0.1);
  });

  it('persistent chains with staleness 2 land within 2 nats of lockstep', async () => {
    // PCD-3: a shard that runs ahead reads its peer's chain states from up to 2 steps back, and
    // the update pairs each final draw with the peer states it read (SHARDING.md, "Pairing");
    // the stamps travel with the spins (SpinFrame.reads: without them the receiving shard
    // refuses the frame and the job fails). How far below lockstep such a run lands depends on
    // the timing, which decides which stale states are read, so it varies from run to run and
    // with the machine's load (the spread seen is in docs/benchmarks.md, "Staleness, measured").
    // The bound is set to catch a run that does not learn (the untrained model is about 7 nats
    // below) without failing on that spread; pairing itself is checked deterministically in
    // shard-pairing.test.ts. Unbounded staleness is not tested with persistent chains:
    // its lag, and with it the bias of a Gibbs chain reading stale states, has no bound.
    const r = await asynchronous({ negative: 'pcd', chains: 100, k: 3 }, 2, 'PCD-3, staleness 2');
    // asynchronous: not the lockstep model
    const model = await modelOf(fx.bus, r.jobId);
    expect(compareNetworks(model, r.lockstep.network).identical).toBe(false);
    expect(Math.abs(r.ll - r.lockstep.ll)).toBeLessThan(2);
  });
});

describe('owned tiles on the in-process bus', () => {
  // A cluster of its own: the test kills a worker, and the others count theirs.
  const fx = inProcessCluster();

  it('owned tiles: a worker killed mid-job, the job completes with the undisturbed model', async () => {
    // Each weight held by one shard, partial fields on the wire, two row groups: the run is the
    // single-process one up to float summation order, and a recovery changes nothing of it.
    const spec = basJob(1500, { workers: 2, checkpointEverySteps: 100, tiles: 'owned' });
    const ref = await reference(spec);
    const first = await fx.jobs.follow((await fx.jobs.submit(spec)).jobId);
    remember(fx.cluster, first.events);
    expect(first.job.state, first.job.error).toBe(COMPLETED);
    const undisturbed = await modelOf(fx.bus, first.job.jobId);
    expect(compareNetworks(undisturbed, ref.network).maxDiff).toBeLessThan(0.05);
    const { jobId } = await fx.jobs.submit(spec);
    let killed: Promise<void> | null = null;
    let victim = '';
    const { job, events } = await fx.jobs.follow(jobId, (e) => {
      if (e.workers?.kind === 'assigned' && victim === '')
        victim = e.workers.shards.find((s) => s.shardId === 0)!.workerId;
      if (killed || !e.progress || e.progress.step < 400) return;
      killed = fx.cluster.kill(`worker-${victim.slice(victim.lastIndexOf('-') + 1)}`, 'SIGKILL');
    });
    remember(fx.cluster, events);
    await killed;
    expect(job.state, job.error).toBe(COMPLETED);
    const reassigned = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
    expect(reassigned.restoreFromStep).toBeGreaterThan(0);
    const cmp = compareNetworks(await modelOf(fx.bus, jobId), undisturbed);
    expect(cmp).toEqual({ identical: true, maxDiff: 0 });
    console.log(
      `owned tiles: SIGKILL at step >= 400, restored from step ${reassigned.restoreFromStep}: ` +
        `model bit-identical to the undisturbed owned run; exact LL ` +
        `${job.evaluation?.exactLogLikelihood?.toFixed(6)} (one process: ${ref.ll.toFixed(6)})`,
    );
  });
});

describe('cluster on Redis', () => {
  let redis: RedisServer;
  let cluster: LocalCluster;
  let jobs: Jobs;
  let bus: RedisBus;
  const prefix = `spinmesh-test-${process.pid}`;

  beforeAll(async () => {
    redis = await startRedisServer();
    cluster = await startCluster(2, {
      env: { REDIS_URL: redis.url, SPINMESH_REDIS_PREFIX: prefix },
    });
    jobs = new Jobs(cluster.address);
    bus = await RedisBus.connect({ url: redis.url, prefix });
  });

  afterAll(async () => {
    jobs?.close();
    await bus?.close();
    if (cluster) {
      remember(cluster);
      await cluster.stop();
    }
    await redis?.stop();
  });

  it('a coordinator killed and restarted mid-job resumes without disturbing the workers', async () => {
    const spec = basJob(1500, { workers: 2, checkpointEverySteps: 100 });
    const ref = await reference(spec);
    const { jobId } = await jobs.submit(spec);
    let stepAtKill = -1;
    await new Promise<void>((resolve, reject) => {
      const stream = jobs.client.watchJob({ jobId, afterEventId: '' });
      stream.on('data', (e: WatchJobResponse) => {
        if (stepAtKill < 0 && e.progress && e.progress.step >= 300) {
          stepAtKill = e.progress.step;
          stream.cancel();
          resolve();
        }
      });
      stream.on('error', () => (stepAtKill < 0 ? reject(new Error('watch failed')) : resolve()));
      stream.on('end', () => reject(new Error('the job ended before the kill')));
    });
    const old = cluster.processes.get('coordinator')!.child.pid!;
    started.pids.add(old);
    await cluster.kill('coordinator', 'SIGKILL');
    expect(alive(old)).toBe(false);
    await cluster.startCoordinator(); // same address, same Redis
    const { job, events } = await jobs.follow(jobId);
    remember(cluster, events);
    expect(job.state, job.error).toBe(COMPLETED);
    // The workers never noticed: one generation, no worker lost, the undisturbed model.
    expect(job.generation).toBe(1);
    expect(events.some((e) => e.workers?.kind === 'worker-lost')).toBe(false);
    const cmp = compareNetworks(await modelOf(bus, jobId), ref.network);
    expect(cmp).toEqual({ identical: true, maxDiff: 0 });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    console.log(
      `coordinator SIGKILL at step ~${stepAtKill} and restart: completed, generation 1, ` +
        `exact LL ${ref.ll.toFixed(6)} (undisturbed)`,
    );

    // Clean up the test's keys; afterwards nothing of the test may be left on the server.
    await cluster.stop();
    remember(cluster, events);
    expect(await bus.deleteJob(jobId)).toBe(true);
    await bus.listWorkers(); // prunes the membership set of expired workers
    const raw = new Redis(redis.url);
    try {
      const leftover = async (): Promise<string[]> => {
        const keys: string[] = [];
        let cursor = '0';
        do {
          const [next, batch] = await raw.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
          cursor = next;
          keys.push(...batch);
        } while (cursor !== '0');
        return keys.sort();
      };
      // What remains is the cluster's bookkeeping (job index, its counter, the membership set
      // when emptied lazily), none of it a job's or a live worker's.
      const rest = await leftover();
      expect(
        rest.every((k) =>
          [`${prefix}:jobs`, `${prefix}:jobs:seq`, `${prefix}:workers`].includes(k),
        ),
      ).toBe(true);
      if (rest.length > 0) await raw.del(...rest);
      await new Promise((r) => setTimeout(r, 1000)); // a leftover process would write again
      expect(await leftover()).toEqual([]);
    } finally {
      raw.disconnect();
    }
  });
});

/**
 * Two workers started with `options` before the tests of one describe block, stopped (their logs
 * kept for a failure) after.
 */
function twoWorkers(options: Parameters<typeof startCluster>[1]): {
  cluster: LocalCluster;
  jobs: Jobs;
} {
  const fx = {} as { cluster: LocalCluster; jobs: Jobs };
  beforeAll(async () => {
    fx.cluster = await startCluster(2, options);
    fx.jobs = new Jobs(fx.cluster.address);
  });
  afterAll(async () => {
    fx.jobs?.close();
    if (fx.cluster) {
      remember(fx.cluster);
      await fx.cluster.stop();
    }
  });
  return fx;
}

/**
 * Runs `spec` in one process and on the cluster: the job completes, evaluated at exactly
 * `epochs`, as one process is, with the same exact log-likelihoods, bit for bit (staleness 0).
 */
async function evaluatedAsOneProcess(
  fx: { cluster: LocalCluster; jobs: Jobs },
  spec: Record<string, unknown>,
  epochs: number[],
  timeoutMs: number,
): Promise<{ job: Job; events: WatchJobResponse[]; evaluations: Evaluation[] }> {
  const one = (await runJob(spec, portable)).evaluations;
  expect(one.map((e) => e.epoch)).toEqual(epochs);
  const { jobId } = await fx.jobs.submit(spec);
  const { job, events } = await fx.jobs.follow(jobId, () => undefined, timeoutMs);
  remember(fx.cluster, events);
  expect(job.state, job.error).toBe(COMPLETED);
  const evaluations = events.flatMap((e) => (e.evaluation ? [e.evaluation] : []));
  expect(evaluations.map((e) => e.epoch)).toEqual(epochs);
  expect(evaluations.map((e) => e.exactLogLikelihood)).toEqual(
    one.map((e) => e.exactLogLikelihood),
  );
  return { job, events, evaluations };
}

describe('evaluations when a job ends between two passes', () => {
  // A pass every 3 s: the whole job, evaluation step included, runs between two of them.
  const fx = twoWorkers({ coordinatorEnv: { SPINMESH_COORDINATOR_POLL_MS: '3000' } });

  it(
    'evaluates the steps it passed over, from their checkpoints, before the final one',
    {
      timeout: 120_000,
    },
    async () => {
      const spec = basJob(1600, {
        workers: 2,
        checkpointEverySteps: 300,
        evaluate: { every: 1500, exact: true },
      });
      await evaluatedAsOneProcess(fx, spec, [1500, 1600], 120_000);
    },
  );
});

describe('evaluations and progress at the edges', () => {
  // Slowed down (the slowdown changes no result) so that an evaluation interval lasts seconds:
  // each shard keeps only its newest evaluation snapshot, and the coordinator, polling every
  // 100 ms, must read it before the next replaces it, on a loaded machine too.
  const fx = twoWorkers({ workerEnv: { SPINMESH_DEBUG_SLOWDOWN: '2' } });

  it(
    'evaluates at exactly the epochs one process does, and the last record says total/total',
    {
      timeout: 300_000,
    },
    async () => {
      // 500 does not divide 1600, and 500 and 1000 are not multiples of the checkpoint period
      // (300): the shards stop there for a snapshot (1500 is a checkpoint step too).
      const spec = basJob(1600, {
        workers: 2,
        checkpointEverySteps: 300,
        evaluate: { every: 500, exact: true },
      });
      const { job, events, evaluations } = await evaluatedAsOneProcess(
        fx,
        spec,
        [500, 1000, 1500, 1600],
        300_000,
      );
      expect(job.progress).toMatchObject({ step: 1600, totalSteps: 1600, epoch: 1600 });
      expect(job.progress!.shardSteps).toEqual([1600, 1600]);
      const progress = events.flatMap((e) => (e.progress ? [e.progress] : []));
      expect(progress.at(-1)).toMatchObject({ step: 1600, totalSteps: 1600, epoch: 1600 });
      console.log(
        `evaluate.every 500 of 1600 epochs on 2 workers: evaluations at ` +
          `${evaluations.map((e) => e.epoch).join(', ')}, exact LL as in one process`,
      );
    },
  );

  it(
    'evaluations more frequent than checkpoints land on checkpoint steps that are multiples',
    {
      timeout: 300_000,
    },
    async () => {
      // every 30 epochs, checkpoints every 100 steps: no snapshots (one every 30 steps would hold
      // the shards to the coordinator's pace); evaluated from checkpoints at multiples of 300.
      const spec = basJob(1000, {
        workers: 2,
        checkpointEverySteps: 100,
        evaluate: { every: 30, exact: true },
      });
      const { jobId } = await fx.jobs.submit(spec);
      const { job, events } = await fx.jobs.follow(jobId, () => undefined, 300_000);
      remember(fx.cluster, events);
      expect(job.state, job.error).toBe(COMPLETED);
      const epochs = events.flatMap((e) => (e.evaluation ? [e.evaluation.epoch] : []));
      expect(epochs.at(-1)).toBe(1000);
      // How many of them the coordinator catches depends on its pace; where, does not.
      for (const e of epochs.slice(0, -1)) expect(e % 300).toBe(0);
    },
  );
});

describe('afterwards', () => {
  it('leaves no process and no listening port behind', async () => {
    expect(started.pids.size).toBeGreaterThanOrEqual(6);
    for (const pid of started.pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    for (const address of started.addresses) expect(await listening(address), address).toBe(false);
  });
});
