// Hostile input against the internal services, on real processes: callers without the cluster
// secret (anonymous, or holding the API token) get UNAUTHENTICATED from BusService, WorkerControl
// and PeerService and change nothing; a coordinator with an in-process bus and no secret closes
// its bus to everyone; forged job records do not hold up the queue; a worker that would listen
// beyond loopback without a secret refuses to start; and a request over SPINMESH_MAX_MESSAGE_BYTES
// gets RESOURCE_EXHAUSTED, on the bus as on the API, while the server goes on serving.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RemoteBus } from '@spinmesh/bus';
import {
  BusServiceClient,
  JobServiceClient,
  JobState,
  PeerServiceClient,
  ServiceNames,
  ServingStatus,
  WorkerControlClient,
  tokenMetadata,
  type BusReply,
  type GetJobResponse,
  type Job,
  type ListJobsResponse,
  type SubmitJobResponse,
  type WatchJobResponse,
} from '@spinmesh/proto';

import { LocalCluster, SERVICE_MAINS } from '../src/local-cluster.js';
import { startServerProcess, type ServerProcess } from '../../../test/support/server-process.js';
import { healthOf, unary } from './helpers.js';

const S = grpc.status;
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TOKEN = 'api-token-of-the-tests';
/** A guess at the secret: it must never come back in a message. */
const GUESS = 'guessed-secret-1f3a';
const LIMIT = 2 * 1024 * 1024;

const spec = (name: string): string =>
  JSON.stringify({
    name,
    seed: 3,
    network: { rbm: { visible: 16, hidden: 8 } },
    data: { kind: 'bas', size: 4 },
    epochs: 3,
    train: { batchSize: 10, learningRate: 0.05, k: 1, negative: 'pcd', chains: 10 },
    evaluate: { every: 3, exact: true },
    workers: 1,
    checkpointEverySteps: 5,
  });

/** The caller kinds that hold no secret: nobody, and a holder of the API token. */
const OUTSIDERS: [string, () => grpc.Metadata][] = [
  ['anonymous', () => new grpc.Metadata()],
  ['token holder', () => tokenMetadata(TOKEN)],
  [
    'token holder with a guessed secret',
    () => {
      const md = tokenMetadata(TOKEN);
      md.set('spinmesh-cluster-secret', GUESS);
      return md;
    },
  ],
];

/** The environment of a child: this one's, without a secret or Redis of its own. */
function childEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra };
  for (const k of ['SPINMESH_CLUSTER_SECRET', 'REDIS_URL', 'SPINMESH_API_TOKEN'])
    if (!(k in extra)) delete env[k];
  return env;
}

/** The error a unary call ends with; null when it succeeded. */
function callError(start: (cb: (err: grpc.ServiceError | null) => void) => unknown) {
  return new Promise<grpc.ServiceError | null>((resolve) => start((err) => resolve(err)));
}

function busCall(
  client: BusServiceClient,
  method: string,
  args: unknown[],
  md: grpc.Metadata,
  payload: Buffer = Buffer.alloc(0),
): Promise<grpc.ServiceError | null> {
  return callError((cb) =>
    client.call(
      { method, args: JSON.stringify(args), payload },
      md,
      (err: grpc.ServiceError | null, _r?: BusReply) => cb(err),
    ),
  );
}

function expectRefused(err: grpc.ServiceError | null, what: string): void {
  expect(err, what).not.toBeNull();
  expect(err!.code, `${what}: ${err!.details}`).toBe(S.UNAUTHENTICATED);
  expect(err!.details, what).not.toContain(GUESS);
  expect(err!.details, what).not.toContain(TOKEN);
}

/** JobService calls that carry the token. */
class Api {
  readonly client: JobServiceClient;
  constructor(address: string) {
    this.client = new JobServiceClient(address, grpc.credentials.createInsecure());
  }
  async submit(text: string): Promise<Job> {
    return (
      await unary<SubmitJobResponse>((cb) =>
        this.client.submitJob({ spec: text, jobId: '' }, tokenMetadata(TOKEN), cb),
      )
    ).job!;
  }
  async get(jobId: string): Promise<Job> {
    return (
      await unary<GetJobResponse>((cb) => this.client.getJob({ jobId }, tokenMetadata(TOKEN), cb))
    ).job!;
  }
  async list(): Promise<Job[]> {
    return (
      await unary<ListJobsResponse>((cb) =>
        this.client.listJobs(
          { pageSize: 100, pageToken: '', states: [] },
          tokenMetadata(TOKEN),
          cb,
        ),
      )
    ).jobs;
  }
  /** Follows a job's events until its stream ends (the job is final). */
  follow(jobId: string): Promise<WatchJobResponse[]> {
    return new Promise((resolve, reject) => {
      const events: WatchJobResponse[] = [];
      const stream = this.client.watchJob({ jobId, afterEventId: '' }, tokenMetadata(TOKEN));
      stream.on('data', (e: WatchJobResponse) => events.push(e));
      stream.on('end', () => resolve(events));
      stream.on('error', reject);
    });
  }
  close(): void {
    this.client.close();
  }
}

beforeAll(() => {
  // The children run the compiled services: build them (incremental; a no-op when up to date).
  execFileSync(
    process.execPath,
    ['node_modules/typescript/bin/tsc', '-b', 'services/coordinator'],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  );
});

/** Starts a coordinator process and reads its address from the `listening` log line. */
async function startCoordinatorProcess(
  env: Record<string, string>,
): Promise<{ proc: ServerProcess; address: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'spinmesh-internal-'));
  const proc = startServerProcess(
    process.execPath,
    [SERVICE_MAINS.coordinator],
    dir,
    childEnv({
      SPINMESH_COORDINATOR_LISTEN: '127.0.0.1:0',
      SPINMESH_METRICS_LISTEN: 'off',
      SPINMESH_KERNELS: 'portable',
      SPINMESH_LOG_LEVEL: 'info',
      ...env,
    }),
  );
  const address = await new Promise<string>((resolve, reject) => {
    let buffer = '';
    const onData = (chunk: Buffer): void => {
      buffer += chunk.toString('utf8');
      for (const line of buffer.split('\n')) {
        try {
          const o = JSON.parse(line) as { msg?: unknown; address?: unknown };
          if (o.msg === 'listening' && typeof o.address === 'string') {
            proc.child.stdout!.off('data', onData);
            resolve(o.address);
            return;
          }
        } catch {
          // not a whole log line yet
        }
      }
    };
    proc.child.stdout!.on('data', onData);
    proc.child.once('exit', () => reject(new Error(`the coordinator exited:\n${proc.output()}`)));
  });
  return { proc, address };
}

describe('a coordinator with an in-process bus and no SPINMESH_CLUSTER_SECRET', () => {
  let proc: ServerProcess;
  let address: string;
  let api: Api;
  let bus: BusServiceClient;
  /** What it wrote until it listened. */
  let startLog: string;

  beforeAll(async () => {
    ({ proc, address } = await startCoordinatorProcess({
      SPINMESH_API_TOKEN: TOKEN,
      SPINMESH_MAX_MESSAGE_BYTES: String(LIMIT),
    }));
    startLog = proc.output();
    api = new Api(address);
    bus = new BusServiceClient(address, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
    });
  });

  afterAll(async () => {
    api?.close();
    bus?.close();
    await proc?.stop();
  });

  it('says once that its bus refuses every worker', () => {
    const lines = startLog.split('\n');
    const said = lines.filter((l) => l.includes('SPINMESH_CLUSTER_SECRET is not set'));
    expect(said).toHaveLength(1);
    expect(JSON.parse(said[0]!)).toMatchObject({ level: 'warn', service: 'coordinator' });
  });

  it('refuses every bus call from callers without the secret, and nothing changes', async () => {
    const job = await api.submit(spec('kept'));
    const forged = { id: 'forged-by-outsider', name: 'x', workers: 1 };
    for (const [who, md] of OUTSIDERS) {
      for (const [method, args] of [
        ['deleteJob', [job.jobId]],
        ['createJob', [forged]],
        ['getJob', [job.jobId]],
        ['listJobs', []],
        ['transitionJob', [job.jobId, ['queued'], 'cancelled']],
        ['registerWorker', [{ id: 'w', address: '127.0.0.1:1', cores: 1, startedAt: 1 }, 1000]],
        ['ping', []],
      ] as const) {
        expectRefused(await busCall(bus, method, [...args], md()), `${who}: ${method}`);
      }
    }
    const after = await api.get(job.jobId);
    expect(after.state).toBe(JobState.JOB_STATE_QUEUED);
    expect((await api.list()).map((j) => j.jobId)).toEqual([job.jobId]);
    // Nobody outside knows the secret it made up: the right secret of no one fails too.
    await expect(RemoteBus.connect({ address, secret: 'any-secret-at-all' })).rejects.toMatchObject(
      { code: S.UNAUTHENTICATED },
    );
  });

  it('answers a request over SPINMESH_MAX_MESSAGE_BYTES with RESOURCE_EXHAUSTED, bus included, and goes on serving', async () => {
    const big = 'x'.repeat(LIMIT + 1024);
    const submitted = await callError((cb) =>
      api.client.submitJob({ spec: big, jobId: '' }, tokenMetadata(TOKEN), cb),
    );
    expect(submitted?.code, submitted?.details).toBe(S.RESOURCE_EXHAUSTED);
    for (const [who, md] of OUTSIDERS) {
      const err = await busCall(
        bus,
        'putCheckpoint',
        ['j', 0, 1, null, 0],
        md(),
        Buffer.alloc(LIMIT + 1024),
      );
      expect(err?.code, `${who}: ${err?.details}`).toBe(S.RESOURCE_EXHAUSTED);
    }
    expect(await healthOf(address, '')).toBe(ServingStatus.SERVING);
    expect(await healthOf(address, ServiceNames.jobs)).toBe(ServingStatus.SERVING);
    const job = await api.submit(spec('after-the-big-ones'));
    expect((await api.get(job.jobId)).state).toBe(JobState.JOB_STATE_QUEUED);
    expect(proc.exited()).toBe(false);
  });
});

describe('the embedded local cluster (in-process bus, its own secret, an API token)', () => {
  let cluster: LocalCluster;
  let api: Api;
  let secretBus: RemoteBus;
  let firstJob: Job;
  let workerAddress: string;

  beforeAll(async () => {
    cluster = await LocalCluster.start({
      workers: 1,
      kernels: 'portable',
      env: childEnv({ SPINMESH_LOG_LEVEL: 'info', SPINMESH_METRICS_LISTEN: 'off' }),
      coordinatorEnv: { SPINMESH_API_TOKEN: TOKEN, SPINMESH_COORDINATOR_POLL_MS: '100' },
      workerEnv: { SPINMESH_HEARTBEAT_MS: '200', SPINMESH_PROGRESS_MS: '200' },
      stopGraceMs: 5000,
    });
    api = new Api(cluster.address);
    secretBus = await RemoteBus.connect({ address: cluster.address, secret: cluster.secret });
    firstJob = await api.submit(spec('first'));
    const events = await api.follow(firstJob.jobId);
    const assigned = events.find((e) => e.workers?.kind === 'assigned');
    workerAddress = assigned!.workers!.shards[0]!.address;
  });

  afterAll(async () => {
    api?.close();
    await secretBus?.close();
    await cluster?.stop();
  });

  it('ran its first job', async () => {
    const job = await api.get(firstJob.jobId);
    expect(job.state, job.error).toBe(JobState.JOB_STATE_COMPLETED);
  });

  it("refuses outsiders on the coordinator's bus and on the worker's WorkerControl and PeerService", async () => {
    const bus = new BusServiceClient(cluster.address, grpc.credentials.createInsecure());
    const control = new WorkerControlClient(workerAddress, grpc.credentials.createInsecure());
    const peer = new PeerServiceClient(workerAddress, grpc.credentials.createInsecure());
    try {
      for (const [who, md] of OUTSIDERS) {
        for (const [method, args] of [
          ['deleteJob', [firstJob.jobId]],
          ['createJob', [{ id: 'forged-by-outsider', name: 'x', workers: 1 }]],
          ['getJob', [firstJob.jobId]],
        ] as const)
          expectRefused(await busCall(bus, method, [...args], md()), `${who}: bus ${method}`);
        expectRefused(
          await callError((cb) => control.status({}, md(), cb)),
          `${who}: WorkerControl/Status`,
        );
        expectRefused(
          await callError((cb) =>
            control.stop({ jobId: firstJob.jobId, checkpoint: false }, md(), cb),
          ),
          `${who}: WorkerControl/Stop`,
        );
        const exchange = await new Promise<grpc.ServiceError | null>((resolve) => {
          const stream = peer.exchange(md());
          stream.on('error', (err: grpc.ServiceError) => resolve(err));
          stream.on('end', () => resolve(null));
          stream.on('data', () => undefined);
        });
        expectRefused(exchange, `${who}: PeerService/Exchange`);
      }
    } finally {
      bus.close();
      control.close();
      peer.close();
    }
    expect((await api.get(firstJob.jobId)).state).toBe(JobState.JOB_STATE_COMPLETED);
    expect((await secretBus.listJobs()).jobs.map((j) => j.id)).toEqual([firstJob.jobId]);
    expect(await secretBus.getJob(firstJob.jobId)).not.toBeNull();
  });

  it('fails forged job records with a reason, and the jobs behind them run', async () => {
    // Records only a holder of the secret can write: malformed in ways SubmitJob never writes.
    const forged = [
      { id: 'forged-empty' },
      { id: 'forged-no-layout', name: 'x', workers: 1, spec: { network: {} }, totalSteps: 5 },
      {
        id: 'forged-workers',
        name: 'x',
        workers: 'all',
        spec: { network: {} },
        layout: [{}],
        totalSteps: 5,
        stepsPerEpoch: 1,
      },
      {
        id: 'forged-network',
        name: 'x',
        workers: 1,
        spec: { network: { rbm: 'none' } },
        layout: [{}],
        totalSteps: 5,
        stepsPerEpoch: 1,
      },
    ];
    for (const f of forged) await secretBus.createJob(f);
    const later = await api.submit(spec('behind-the-forged'));
    await api.follow(later.jobId);
    const done = await api.get(later.jobId);
    expect(done.state, done.error).toBe(JobState.JOB_STATE_COMPLETED);
    for (const f of forged) {
      const job = await api.get(f.id);
      expect(job.state, f.id).toBe(JobState.JOB_STATE_FAILED);
      expect(job.error, f.id).toMatch(/^the job (record is malformed|could not be started): /);
    }
  });
});

describe('a worker process without a secret', () => {
  const refusals: [string, Record<string, string>][] = [
    ['listening on 0.0.0.0', { SPINMESH_WORKER_LISTEN: '0.0.0.0:0' }],
    ['listening on [::]', { SPINMESH_WORKER_LISTEN: '[::]:0' }],
    ["on a coordinator's bus", { SPINMESH_BUS_ADDRESS: '127.0.0.1:1' }],
  ];
  for (const [what, env] of refusals) {
    it(`refuses to start ${what}, in one line, without a stack trace`, () => {
      const r = spawnSync(process.execPath, [SERVICE_MAINS.worker], {
        env: childEnv({ SPINMESH_METRICS_LISTEN: 'off', ...env }),
        encoding: 'utf8',
        timeout: 60_000,
      });
      const out = `${r.stdout}${r.stderr}`;
      expect(r.status, out).toBe(2);
      const lines = out.split('\n').filter((l) => l.trim() !== '');
      expect(lines, out).toHaveLength(1);
      expect(lines[0]).toMatch(/SPINMESH_CLUSTER_SECRET must be set/);
      expect(out).not.toMatch(/\n\s+at /);
    });
  }
});
