// The hostile-input corpus against real service processes: a coordinator configured as in a
// deployment (API token, cluster secret, a data root) with a worker, and a coordinator in its
// default set-up. Every request must get a right status with a short message that quotes no
// secret and no file; afterwards the servers answer health, their peak memory stayed under a
// stated bound, no job was lost, the queue still moves, and strace saw no file opened outside
// the data root. Prints one summary line (`hostile summary {...}`); `npm run hostile` runs it alone.
import * as grpc from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { JobServiceClient, JobState, type Job } from '@spinmesh/proto';
import { corpus, baseSpec, runCase, type Class } from './hostile/corpus.js';
import {
  ROOT,
  haveStrace,
  resetPeaks,
  startTraced,
  type Opened,
  type TracedService,
} from './hostile/processes.js';
import { healthStatus } from './hostile/wire.js';

/** Peak resident memory each service must stay under through the whole corpus. */
const RSS_BOUND_BYTES = { coordinator: 1024 << 20, worker: 512 << 20 };
/** The estimated bytes all queued jobs may hold together on the configured coordinator. */
const QUEUED_BYTES = 256 << 20;
/** The data size limit the configured services run with (the corpus has a file above it). */
const MAX_DATA_BYTES = 1 << 20;
/** A message longer than this is echoing input. */
const MAX_DETAILS = 1024;

const TOKEN = `tok-${randomBytes(12).toString('hex')}`;
const SECRET = `sec-${randomBytes(12).toString('hex')}`;
const ENV_CANARY = `envcanary-${randomBytes(12).toString('hex')}`;
const FILE_CANARY = `filecanary-${randomBytes(12).toString('hex')}`;
/** What must never appear in an answer: secrets, the environment, and files' contents. */
const CANARIES = [TOKEN, SECRET, ENV_CANARY, FILE_CANARY, 'root:x:0:0', 'PATH=', '[stack]'];

let dir = '';
let root = '';
let outside = '';
const services: TracedService[] = [];
let coord: TracedService;
let coord0: TracedService;
let worker: TracedService;
let jobs: JobServiceClient;

const md = (): grpc.Metadata => {
  const m = new grpc.Metadata();
  m.set('authorization', `Bearer ${TOKEN}`);
  return m;
};

async function listAll(): Promise<Job[]> {
  const r = await unary<{ jobs: Job[] }>((cb) =>
    jobs.listJobs({ pageSize: 1000, pageToken: '', states: [] }, md(), cb),
  );
  return r.jobs;
}

/** Submits a spec and waits for its watch stream to end; the job's final state. */
async function runJob(id: string, spec: Record<string, unknown>): Promise<JobState> {
  await unary((cb) => jobs.submitJob({ spec: JSON.stringify(spec), jobId: id }, md(), cb));
  const { error } = await watchWithToken(id);
  if (error) throw error;
  const r = await unary<{ job?: Job }>((cb) => jobs.getJob({ jobId: id }, md(), cb));
  return r.job!.state;
}

function unary<T>(
  start: (cb: (err: grpc.ServiceError | null, res?: T) => void) => unknown,
): Promise<T> {
  return new Promise((resolve, reject) => {
    start((err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/** Follows a job's events until its stream ends (after the event of a final state). */
function watchWithToken(id: string): Promise<{ error: grpc.ServiceError | null }> {
  return new Promise((resolve) => {
    const stream = jobs.watchJob({ jobId: id, afterEventId: '' }, md());
    stream.on('data', () => undefined);
    stream.on('error', (error: grpc.ServiceError) => resolve({ error }));
    stream.on('end', () => resolve({ error: null }));
  });
}

function writeFixtures(): void {
  dir = realpathSync(mkdtempSync(join(tmpdir(), 'spinmesh-hostile-')));
  root = join(dir, 'data');
  outside = join(dir, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.csv'), `${FILE_CANARY},b,c,d\n1,0,1,0\n`);
  symlinkSync(join(outside, 'secret.csv'), join(root, 'link-out.csv'));
  const fifo = spawnSync('mkfifo', [join(root, 'fifo.csv')]);
  if (fifo.status !== 0) throw new Error('mkfifo failed');
  writeFileSync(
    join(root, 'big.csv'),
    `a,b,c,d\n${'1,0,1,0\n'.repeat((MAX_DATA_BYTES >> 3) + 10)}`,
  );
  writeFileSync(join(root, 'leaky.csv'), `${FILE_CANARY},b,c,d\n1,0,${FILE_CANARY},1\n`);
  // An IDX file whose header is wrong and whose bytes carry the canary.
  writeFileSync(join(root, 'leaky.idx'), Buffer.from(`\x00\x00\x08\x03${FILE_CANARY}`, 'latin1'));
  // A valid IDX: 2 images of 2x2 unsigned bytes.
  writeFileSync(
    join(root, 'good.idx'),
    Buffer.from([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0, 255, 255, 0, 255, 0, 0, 255]),
  );
}

/**
 * Opens a service makes after start-up on its own account: its code (lazily loaded modules,
 * model threads), Node's, what its metrics read about itself, name resolution, and what glibc
 * and libuv read when a thread starts (the main stack's bounds from /proc/self/maps, memory
 * from /proc/meminfo). The data reader opens with O_NOFOLLOW|O_NONBLOCK; a runtime open never
 * does, so /proc/self/maps opened that way would still count as read for a request.
 */
function isRuntimeOpen(o: Opened): boolean {
  const p = o.path;
  if (p.startsWith(ROOT) && !p.startsWith(join(ROOT, 'examples'))) return true;
  if (p.startsWith(dirname(process.execPath)) || p.startsWith('/usr/lib/')) return true;
  if (/^\/proc\/(self|\d+)\/(stat|status|limits|fd|io|statm|cgroup|task)(\/|$)/.test(p))
    return true;
  if (p.startsWith('/sys/fs/cgroup/') || p.startsWith('/sys/devices/system/cpu/')) return true;
  if (
    [
      '/dev/null',
      '/proc/meminfo',
      '/etc/resolv.conf',
      '/etc/nsswitch.conf',
      '/etc/hosts',
      '/etc/gai.conf',
      '/etc/host.conf',
      '/etc/localtime',
    ].includes(p)
  )
    return true;
  return /^\/proc\/(self|\d+)\/maps$/.test(p) && !/O_NOFOLLOW|O_NONBLOCK/.test(o.flags);
}

beforeAll(async () => {
  if (!haveStrace())
    throw new Error(
      'strace is missing (scripts/setup.sh installs it): the test needs it to watch opens',
    );
  writeFixtures();
  resetPeaks();
  coord = await startTraced(
    'coordinator',
    'coordinator',
    {
      SPINMESH_COORDINATOR_LISTEN: '127.0.0.1:0',
      SPINMESH_API_TOKEN: TOKEN,
      SPINMESH_CLUSTER_SECRET: SECRET,
      SPINMESH_DATA_ROOTS: root,
      SPINMESH_DATA_FILE_MAX_BYTES: String(MAX_DATA_BYTES),
      SPINMESH_COORDINATOR_POLL_MS: '50',
      // As the corpus ran it: a 4 MiB message limit, which the 6 MiB spec passes.
      SPINMESH_MAX_MESSAGE_BYTES: String(4 << 20),
      // The coordinator holds queued jobs' data: its memory bound is this plus its own.
      SPINMESH_MAX_QUEUED_BYTES: String(QUEUED_BYTES),
      HOSTILE_CANARY: ENV_CANARY,
    },
    join(dir, 'trace-coordinator'),
    2 * RSS_BOUND_BYTES.coordinator,
  );
  services.push(coord);
  worker = await startTraced(
    'worker',
    'worker',
    {
      SPINMESH_WORKER_LISTEN: '127.0.0.1:0',
      SPINMESH_BUS_ADDRESS: coord.address,
      SPINMESH_CLUSTER_SECRET: SECRET,
      SPINMESH_DATA_ROOTS: root,
      SPINMESH_DATA_FILE_MAX_BYTES: String(MAX_DATA_BYTES),
      HOSTILE_CANARY: ENV_CANARY,
    },
    join(dir, 'trace-worker'),
    2 * RSS_BOUND_BYTES.worker,
  );
  services.push(worker);
  coord0 = await startTraced(
    'default coordinator',
    'coordinator',
    { SPINMESH_COORDINATOR_LISTEN: '127.0.0.1:0', HOSTILE_CANARY: ENV_CANARY },
    join(dir, 'trace-default'),
    2 * RSS_BOUND_BYTES.coordinator,
  );
  services.push(coord0);
  jobs = new JobServiceClient(coord.address, grpc.credentials.createInsecure());
}, 180_000);

afterAll(async () => {
  jobs?.close();
  for (const s of services) await s.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the hostile-input corpus against real service processes', () => {
  it('answers every request rightly, leaks nothing, and leaves the cluster whole', async () => {
    // A job that completes before the corpus: the model operations' target, and a job that
    // must still be there afterwards.
    expect(await runJob('sentinel', { ...baseSpec(), name: 'sentinel' })).toBe(
      JobState.JOB_STATE_COMPLETED,
    );
    const before = new Set((await listAll()).map((j) => j.jobId));

    const cases = corpus({
      coordinator: coord.address,
      defaultCoordinator: coord0.address,
      worker: worker.address,
      token: TOKEN,
      wrongSecret: `wrong-${randomBytes(8).toString('hex')}`,
      root,
      outside,
      modelJob: 'sentinel',
    });
    const failures: string[] = [];
    const byClass = new Map<Class, { cases: number; right: number }>();
    let requests = 0;
    let right = 0;
    let hangs = 0;
    let leaks = 0;
    let internalRefused = 0;
    let internal = 0;
    for (const c of cases) {
      const { outcomes, healthDuring } = await runCase(c, coord.address);
      requests += outcomes.length;
      const last = outcomes.at(-1)!;
      const ok = c.expect.includes(last.code);
      const tally = byClass.get(c.cls) ?? { cases: 0, right: 0 };
      tally.cases++;
      if (ok) {
        right++;
        tally.right++;
      } else
        failures.push(
          `${c.cls} / ${c.what}: ${grpc.status[last.code]} ${last.details.slice(0, 200)}`,
        );
      byClass.set(c.cls, tally);
      if (c.cls === 'internal') {
        internal++;
        if (ok) internalRefused++;
      }
      for (const o of outcomes) {
        if (o.code === grpc.status.DEADLINE_EXCEEDED) {
          hangs++;
          failures.push(`${c.cls} / ${c.what}: no answer within the deadline`);
        }
        const said = `${o.details}\n${o.echoed}`;
        const leaked = CANARIES.filter((k) => said.includes(k));
        if (leaked.length > 0) {
          leaks++;
          failures.push(`${c.cls} / ${c.what}: the answer carries ${leaked.length} secret(s)`);
        }
        if (o.details.length > MAX_DETAILS)
          failures.push(`${c.cls} / ${c.what}: a message of ${o.details.length} characters`);
      }
      if (healthDuring !== null && healthDuring !== 1)
        failures.push(`${c.cls} / ${c.what}: health did not answer SERVING while it was in flight`);
      for (const s of services)
        if (!s.alive()) failures.push(`${c.cls} / ${c.what}: the ${s.name} ${s.ending()}`);
      if (services.some((s) => !s.alive())) break;
    }
    const crashes = services.filter((s) => !s.alive()).length;

    // Afterwards: health, no job lost, the queue still moves (each asked only of a live server).
    const health = await Promise.all(services.map((s) => healthStatus(s.address)));
    const after = coord.alive() ? new Set((await listAll()).map((j) => j.jobId)) : new Set();
    const lost = [...before].filter((id) => !after.has(id));
    const stillRuns =
      coord.alive() && worker.alive()
        ? await runJob('after-the-corpus', { ...baseSpec(), name: 'after' })
        : null;

    const outsideOpens: string[] = [];
    for (const s of [coord, worker, coord0])
      for (const o of s.openedSinceReady())
        if (!o.path.startsWith(`${root}/`) && !isRuntimeOpen(o))
          outsideOpens.push(`${s.name}: ${o.path} (${o.flags})`);
    const peak = {
      coordinator: coord.peakRssBytes(),
      worker: worker.peakRssBytes(),
      default_coordinator: coord0.peakRssBytes(),
    };
    const summary = {
      requests,
      cases: cases.length,
      right_status: right,
      crashes,
      hangs,
      peak_rss_mib: Object.fromEntries(
        Object.entries(peak).map(([k, v]) => [k, Math.round(v / (1 << 20))]),
      ),
      leaks,
      files_opened_outside_roots: outsideOpens.length,
      internal_calls_refused: `${internalRefused}/${internal}`,
      jobs_lost: lost.length,
      health_after: health.every((h) => h === 1) ? 'SERVING' : health.join(','),
      by_class: Object.fromEntries([...byClass].map(([k, v]) => [k, `${v.right}/${v.cases}`])),
    };
    console.log(`hostile summary ${JSON.stringify(summary)}`);
    for (const f of [...failures, ...outsideOpens.map((o) => `opened outside the data root: ${o}`)])
      console.log(`hostile failure: ${f}`);

    expect(failures).toEqual([]);
    expect(outsideOpens).toEqual([]);
    expect(crashes).toBe(0);
    expect(lost).toEqual([]);
    expect(health).toEqual(services.map(() => 1));
    expect(stillRuns).toBe(JobState.JOB_STATE_COMPLETED);
    expect(peak.coordinator).toBeLessThan(RSS_BOUND_BYTES.coordinator);
    expect(peak.default_coordinator).toBeLessThan(RSS_BOUND_BYTES.coordinator);
    expect(peak.worker).toBeLessThan(RSS_BOUND_BYTES.worker);
  }, 900_000);
});
