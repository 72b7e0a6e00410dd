// The cluster across hosts: the coordinator (with its Redis) and three workers, each in its own
// network namespace with its own address on a veth link to a shared bridge, started as the real
// built services with `ip netns exec`. A job must give the single-process model bit for bit; a
// second one, with one worker's link cut for longer than the heartbeat TTL after the first
// checkpoint, must recover (the spare takes the shard) and still give it; so must a third, with
// no spare, once the link is back. Needs root (CI runs as root): without namespaces the test
// fails, saying why.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisBus } from '@spinmesh/bus';
import { SERVICE_MAINS, readModel } from '@spinmesh/coordinator';
import { JobState, type Job, type WatchJobResponse, type WorkerChange } from '@spinmesh/proto';
import {
  COMPLETED,
  FAST,
  Jobs,
  alive,
  basJob,
  compareNetworks,
  decode,
  reference,
} from './cluster-helpers.js';
import { findRedisServer } from './support/redis-server.js';
import { HostNetwork, type Host, type HostProcess } from './support/netns.js';

const WORKERS = ['w1', 'w2', 'w3'];
const REDIS_PORT = 6379;
const COORDINATOR_PORT = 7070;
const WORKER_PORT = 7071;
/** Worker heartbeats: its registration on the bus lives 3 of them (docs/configuration.md). */
const HEARTBEAT_MS = Number(FAST.worker.SPINMESH_HEARTBEAT_MS);
const REGISTRATION_TTL_MS = 3 * HEARTBEAT_MS;
const HEARTBEAT_TIMEOUT_MS = Number(FAST.coordinator.SPINMESH_HEARTBEAT_TIMEOUT_MS);
/**
 * The least time a cut link stays down: past both ways of noticing a lost worker, its expired
 * registration and the coordinator's failing Status calls, with room to spare. The link also
 * stays down until the spare has taken the shard, however long that takes: recovery must not
 * wait for the lost worker to come back.
 */
const MIN_OUTAGE_MS = 2 * Math.max(REGISTRATION_TTL_MS, HEARTBEAT_TIMEOUT_MS);

const secret = randomBytes(18).toString('base64url');
const redisPassword = randomBytes(18).toString('base64url');
const prefix = `spinmesh-xhost-${process.pid}`;

let net: HostNetwork;
let coordinatorHost: Host;
let coordinator: HostProcess;
const workers = new Map<string, HostProcess>();
let jobs: Jobs;
let bus: RedisBus;
let tornDown: Promise<{ pids: number[]; network: string[] }> | null = null;

/** The worker's id on the bus, from its host's name. */
const workerId = (name: string): string => `xhost-${name}`;

function startWorker(name: string, redisUrl: string): HostProcess {
  const host = net.host(name);
  const p = net.start(name, host, [process.execPath, SERVICE_MAINS.worker], {
    ...process.env,
    ...FAST.worker,
    REDIS_URL: redisUrl,
    REDIS_PASSWORD: redisPassword,
    SPINMESH_REDIS_PREFIX: prefix,
    SPINMESH_CLUSTER_SECRET: secret,
    SPINMESH_KERNELS: 'portable',
    SPINMESH_WORKER_ID: workerId(name),
    // Its namespace's address, not loopback; what it advertises is left to the worker.
    SPINMESH_WORKER_LISTEN: `${host.address}:${WORKER_PORT}`,
    SPINMESH_LOG_LEVEL: 'info',
    SPINMESH_STOP_ON_STDIN_CLOSE: '1',
    OPENBLAS_NUM_THREADS: '1',
  });
  workers.set(name, p);
  return p;
}

beforeAll(async () => {
  net = HostNetwork.create(['coord', ...WORKERS]);
  coordinatorHost = net.host('coord');
  const redisUrl = `redis://${coordinatorHost.address}:${REDIS_PORT}`;
  // Redis runs in the coordinator's namespace, on its address, as a deployment would have it
  // beside the coordinator; the workers reach it across the bridge.
  const redis = net.start(
    'redis',
    coordinatorHost,
    [
      findRedisServer(),
      ...['--bind', coordinatorHost.address, '--port', String(REDIS_PORT)],
      // No persistence: nothing is written to its directory.
      ...['--save', '', '--appendonly', 'no', '--dir', '/tmp', '--loglevel', 'notice'],
      ...['--requirepass', redisPassword],
    ],
    process.env,
  );
  await redis.waitForLine(/Ready to accept connections/, 60_000);
  coordinator = net.start(
    'coordinator',
    coordinatorHost,
    [process.execPath, SERVICE_MAINS.coordinator],
    {
      ...process.env,
      ...FAST.coordinator,
      REDIS_URL: redisUrl,
      REDIS_PASSWORD: redisPassword,
      SPINMESH_REDIS_PREFIX: prefix,
      SPINMESH_CLUSTER_SECRET: secret,
      SPINMESH_KERNELS: 'portable',
      SPINMESH_COORDINATOR_LISTEN: `${coordinatorHost.address}:${COORDINATOR_PORT}`,
      SPINMESH_LOG_LEVEL: 'info',
      SPINMESH_STOP_ON_STDIN_CLOSE: '1',
    },
  );
  await coordinator.waitForLog((l) => l['msg'] === 'listening', 60_000);
  const listening = await Promise.all(
    WORKERS.map((name) =>
      startWorker(name, redisUrl).waitForLog((l) => l['msg'] === 'listening', 60_000),
    ),
  );
  // Each worker advertises its own namespace's address, the one it listens on.
  expect(listening.map((l) => l['address'])).toEqual(
    WORKERS.map((name) => `${net.host(name).address}:${WORKER_PORT}`),
  );
  jobs = new Jobs(`${coordinatorHost.address}:${COORDINATOR_PORT}`);
  bus = await RedisBus.connect({ url: redisUrl, password: redisPassword, prefix });
  // They registered before saying so, with those addresses.
  const registered = (await bus.listWorkers()).map((w) => [w.id, w.address]).sort();
  expect(registered).toEqual(
    WORKERS.map((name) => [workerId(name), `${net.host(name).address}:${WORKER_PORT}`]),
  );
}, 180_000);

/**
 * Closes the clients, stops every process and deletes the network; what is left of it
 * afterwards (processes alive, namespaces, links). Once, from the last test or afterAll.
 */
function tearDown(): Promise<{ pids: number[]; network: string[] }> {
  tornDown ??= (async () => {
    jobs?.close();
    await bus?.close().catch(() => undefined);
    if (!net) return { pids: [], network: [] };
    const pids = net.pids();
    await net.remove();
    return { pids: pids.filter(alive), network: net.leftovers() };
  })();
  return tornDown;
}

afterAll(async () => {
  await tearDown();
}, 60_000);

async function modelOf(jobId: string): Promise<ReturnType<typeof decode>> {
  const m = await readModel(bus, jobId);
  if (!m) throw new Error(`job ${jobId} has no model`);
  return decode(m.bytes);
}

/** The worker's host name from its bus id. */
const hostOf = (id: string): string => id.slice('xhost-'.length);

describe('the cluster across network namespaces', () => {
  it('three workers on three hosts give the single-process model bit for bit', async () => {
    const spec = basJob(300, { workers: 3 });
    const ref = await reference(spec);
    const { jobId } = await jobs.submit(spec);
    const { job, events } = await jobs.follow(jobId, () => undefined, 300_000);
    expect(job.state, `${job.error}\n${net.tails()}`).toBe(COMPLETED);
    // The shards ran on the three hosts, reached at their own addresses.
    const assigned = events.find((e) => e.workers?.kind === 'assigned')!.workers!;
    expect(assigned.shards.map((s) => [hostOf(s.workerId), s.address]).sort()).toEqual(
      WORKERS.map((name) => [name, `${net.host(name).address}:${WORKER_PORT}`]),
    );
    expect(compareNetworks(await modelOf(jobId), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    console.log(
      `3 workers in 3 namespaces: exact LL ${ref.ll.toFixed(6)}, parameters bit-identical to ` +
        'one process',
    );
  }, 320_000);

  it('a worker whose link is cut past the heartbeat TTL: the spare takes its shard, the model is undisturbed', async () => {
    // Two shards on three workers: the third is the spare.
    const spec = basJob(1500, { workers: 2, checkpointEverySteps: 100 });
    const ref = await reference(spec);
    const r = await cutOneLink(spec, 'assigned');
    const { job, events, victim } = r;
    expect(job.state, `${job.error}\n${net.tails()}`).toBe(COMPLETED);
    expect(r.lost.map((w) => w.workerId)).toContain(victim);
    // Every shard restarted from a common checkpoint, on workers other than the cut one.
    const moved = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
    expect(moved.generation).toBeGreaterThanOrEqual(2);
    expect(moved.restoreFromStep).toBeGreaterThan(0);
    expect(moved.restoreFromStep % 100).toBe(0);
    expect(moved.shards.map((s) => s.workerId)).not.toContain(victim);
    expect(compareNetworks(await modelOf(job.jobId), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    await cameBack(job.jobId, victim);
    console.log(
      `${r.summary}; the spare took shard 1, every shard restored from step ` +
        `${moved.restoreFromStep} (generation ${moved.generation}); model bit-identical to the ` +
        'undisturbed run',
    );
  }, 320_000);

  it('with no spare, the job waits for the cut worker; its link restored, the job resumes with the undisturbed model', async () => {
    // Three shards on three workers: the cut worker's shard has nowhere to go until it is back.
    const spec = basJob(1500, { workers: 3, checkpointEverySteps: 100 });
    const ref = await reference(spec);
    const r = await cutOneLink(spec, 'requeued');
    const { job, events, victim } = r;
    expect(job.state, `${job.error}\n${net.tails()}`).toBe(COMPLETED);
    expect(r.lost.map((w) => w.workerId)).toContain(victim);
    const { JOB_STATE_QUEUED: Q, JOB_STATE_RUNNING: R } = JobState;
    const moves = events.filter((e) => e.state).map((e) => [e.state!.from, e.state!.to]);
    expect(moves.slice(1, 4)).toEqual([
      [Q, R],
      [R, Q],
      [Q, R],
    ]);
    // Resumed from a common checkpoint on the three workers, the cut one among them again.
    const resumed = events.filter((e) => e.workers?.kind === 'assigned').at(-1)!.workers!;
    expect(resumed.generation).toBeGreaterThanOrEqual(2);
    expect(resumed.restoreFromStep).toBeGreaterThan(0);
    expect(resumed.restoreFromStep % 100).toBe(0);
    expect(resumed.shards.map((s) => s.workerId)).toContain(victim);
    expect(compareNetworks(await modelOf(job.jobId), ref.network)).toEqual({
      identical: true,
      maxDiff: 0,
    });
    expect(job.evaluation?.exactLogLikelihood).toBe(ref.ll);
    await cameBack(job.jobId, victim);
    console.log(
      `${r.summary}; requeued, resumed on the three workers from step ` +
        `${resumed.restoreFromStep} (generation ${resumed.generation}); model bit-identical to ` +
        'the undisturbed run',
    );
  }, 320_000);
});

/**
 * Runs a job and, once every shard has written its first checkpoint (the shards' events say
 * when), takes the link of shard 1's worker down; it comes back up when the job's event
 * `restoreOn` follows the cut ('assigned': the shard has moved to a spare; 'requeued': no worker
 * for it, the job waits), and not before MIN_OUTAGE_MS. Follows the job to its end.
 */
async function cutOneLink(
  spec: Record<string, unknown>,
  restoreOn: 'assigned' | 'requeued',
): Promise<{
  job: Job;
  events: WatchJobResponse[];
  victim: string;
  lost: WorkerChange[];
  summary: string;
}> {
  const shards = Number(spec['workers']);
  const { jobId } = await jobs.submit(spec);
  let victim = '';
  let cut: Host | null = null;
  let cutAt = 0;
  let cutAtStep = 0;
  let lostAt = 0;
  let eventAt = 0;
  let ended = false;
  let restoredMidJob = false;
  const checkpointed = new Set<number>();
  let restored: Promise<number> | null = null;

  /** Restores the link once it has been down MIN_OUTAGE_MS; resolves with the outage. */
  const restoreLater = async (): Promise<number> => {
    const left = cutAt + MIN_OUTAGE_MS - Date.now();
    if (left > 0) await new Promise((r) => setTimeout(r, left)); // the deliberate outage
    net.setLink(cut!, true);
    restoredMidJob = !ended;
    return Date.now() - cutAt;
  };

  const onEvent = (e: WatchJobResponse): void => {
    if (e.workers?.kind === 'assigned' && victim === '')
      victim = e.workers.shards.find((s) => s.shardId === 1)!.workerId;
    const shardEvent = e.json ? (JSON.parse(e.json) as Record<string, unknown>) : {};
    if (shardEvent['type'] === 'shard.checkpoint') checkpointed.add(Number(shardEvent['shard']));
    if (cut === null && checkpointed.size === shards) {
      cut = net.host(hostOf(victim));
      cutAt = Date.now();
      cutAtStep = Number(shardEvent['step']);
      net.setLink(cut, false);
    }
    if (cut !== null && lostAt === 0 && e.workers?.kind === 'worker-lost') lostAt = Date.now();
    if (cut !== null && restored === null && e.workers?.kind === restoreOn) {
      eventAt = Date.now();
      restored = restoreLater();
    }
  };

  let result: Awaited<ReturnType<Jobs['follow']>>;
  try {
    result = await jobs.follow(jobId, onEvent, 300_000);
  } finally {
    ended = true;
    // Never leave a link down for the tests after this one.
    if (cut !== null && !net.linkUp(cut)) net.setLink(cut, true);
  }
  expect(cut, 'the link was never cut').not.toBeNull();
  expect(lostAt, 'the coordinator never said the worker was lost').toBeGreaterThan(0);
  expect(restored, `no '${restoreOn}' event after the cut`).not.toBeNull();
  const outageMs = await restored!;
  expect(outageMs).toBeGreaterThan(REGISTRATION_TTL_MS);
  expect(outageMs).toBeGreaterThan(HEARTBEAT_TIMEOUT_MS);
  const lost = result.events.flatMap((e) => (e.workers?.kind === 'worker-lost' ? [e.workers] : []));
  const why = lost.find((w) => w.workerId === victim)?.message ?? '?';
  return {
    ...result,
    victim,
    lost,
    summary:
      `link of ${victim} cut at step ~${cutAtStep} for ${outageMs} ms (registration TTL ` +
      `${REGISTRATION_TTL_MS} ms, heartbeat timeout ${HEARTBEAT_TIMEOUT_MS} ms; lost after ` +
      `${lostAt - cutAt} ms: ${why}; '${restoreOn}' after ${eventAt - cutAt} ms; link back ` +
      (restoredMidJob ? 'while the job ran)' : 'after the job)'),
  };
}

/**
 * With its link back, the cut worker's old run has ended (refused by its peers and the bus, or
 * stopped by the coordinator) without the process failing, and the worker, having found its
 * registration expired, registered again: the cluster has its three workers.
 */
async function cameBack(jobId: string, victim: string): Promise<void> {
  const cutWorker = workers.get(hostOf(victim))!;
  await cutWorker.waitForLog(
    (l) =>
      l['job'] === jobId &&
      l['generation'] === 1 &&
      /^(shard stopped|a newer generation replaced this run)/.test(String(l['msg'])),
    60_000,
  );
  await cutWorker.waitForLog((l) => l['msg'] === 'membership expired: registering again', 60_000);
  expect(alive(cutWorker.child.pid!)).toBe(true);
  for (let t = Date.now(); (await bus.listWorkers()).length < WORKERS.length;) {
    if (Date.now() - t > 60_000)
      throw new Error(`the cut worker did not come back:\n${net.tails()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('afterwards', () => {
  it('leaves no process, namespace or link behind', async () => {
    // Torn down here rather than only in afterAll, so that what is left can fail a test.
    expect(net.pids().length).toBe(2 + WORKERS.length);
    expect(await tearDown()).toEqual({ pids: [], network: [] });
  });
});
