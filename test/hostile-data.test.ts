// Hostile data paths against real processes (a coordinator and a worker of a local cluster, each
// confined to its own data roots): escapes by `..`, absolute paths, symlinks, /proc, /dev, a FIFO,
// a directory and an oversized file are refused with INVALID_ARGUMENT naming the field, through
// SubmitJob (cluster, one-look and sequence jobs) and ModelService's Evaluate; no message carries
// a byte of any file or of the server's environment; the coordinator answers health throughout
// and its memory stays bounded; and a worker refuses data outside its own roots.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalCluster } from '@spinmesh/coordinator';
import {
  HealthClient,
  JobState,
  ModelServiceClient,
  ServingStatus,
  type EvaluateRequest,
  type EvaluateResponse,
  type HealthCheckResponse,
  type SubmitJobResponse,
} from '@spinmesh/proto';
import { COMPLETED, Jobs, basJob, startCluster } from './cluster-helpers.js';

const CANARY = `canary-${process.pid}-9d2f71b4`;
/** Resident memory the coordinator must stay under after every hostile request, in bytes. */
const RSS_BOUND = 1 << 30;

let tmp: string;
let root: string;
let outside: string;
let cluster: LocalCluster;
let jobs: Jobs;
let models: ModelServiceClient;
let health: HealthClient;
/** Every error message the servers sent, checked for secrets at the end. */
const messages: string[] = [];

function unary<T>(start: (cb: (err: grpc.ServiceError | null, res?: T) => void) => void) {
  return new Promise<T>((resolve, reject) =>
    start((err, res) => (err ? reject(err) : resolve(res!))),
  );
}

async function refused(p: Promise<unknown>): Promise<grpc.ServiceError> {
  let err: grpc.ServiceError | null = null;
  try {
    await p;
  } catch (e) {
    err = e as grpc.ServiceError;
  }
  expect(err, 'the request was accepted').not.toBeNull();
  messages.push(err!.details);
  return err!;
}

function submit(spec: unknown): Promise<SubmitJobResponse> {
  return unary<SubmitJobResponse>((cb) =>
    jobs.client.submitJob({ spec: JSON.stringify(spec), jobId: '' }, cb),
  );
}

function evaluate(req: Partial<EvaluateRequest>): Promise<EvaluateResponse> {
  return unary<EvaluateResponse>((cb) =>
    models.evaluate(
      {
        jobId: '',
        data: '',
        exact: false,
        aisRuns: 0,
        aisSteps: 0,
        pseudo: false,
        recon: true,
        probe: false,
        recallFlip: 0,
        limit: 0,
        seed: 0,
        ...req,
      },
      cb,
    ),
  );
}

function healthy(): Promise<ServingStatus> {
  return unary<HealthCheckResponse>((cb) => health.check({ service: '' }, cb)).then(
    (r) => r.status,
  );
}

function coordinatorRss(): number {
  const pid = cluster.processes.get('coordinator')!.child.pid!;
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'spinmesh-hostile-data-'));
  root = join(tmp, 'root');
  outside = join(tmp, 'outside');
  const workerRoot = join(tmp, 'worker-root');
  for (const d of [join(root, 'sub'), outside, workerRoot]) mkdirSync(d, { recursive: true });
  // 16 columns: the visible layer of basJob's RBM.
  writeFileSync(join(root, 'ok.csv'), `${Array(16).fill('1').join(',')}\n`.repeat(4));
  writeFileSync(join(root, 'secret.csv'), `TOKEN=${CANARY}\n`);
  writeFileSync(join(root, 'big.csv'), '0,'.repeat(8192));
  writeFileSync(join(outside, 'secret.csv'), `${CANARY}\n`);
  symlinkSync(join(outside, 'secret.csv'), join(root, 'link.csv'));
  execFileSync('mkfifo', [join(root, 'fifo.csv')]);
  cluster = await startCluster(1, {
    env: { SPINMESH_TEST_CANARY: CANARY },
    coordinatorEnv: {
      SPINMESH_DATA_ROOTS: root,
      SPINMESH_DATA_FILE_MAX_BYTES: '4096',
      SPINMESH_MAX_RECOVERIES: '0',
    },
    workerEnv: { SPINMESH_DATA_ROOTS: workerRoot },
  });
  jobs = new Jobs(cluster.address);
  models = new ModelServiceClient(cluster.address, grpc.credentials.createInsecure());
  health = new HealthClient(cluster.address, grpc.credentials.createInsecure());
}, 120_000);

afterAll(async () => {
  jobs?.close();
  models?.close();
  health?.close();
  await cluster?.stop();
  rmSync(tmp, { recursive: true, force: true });
  // No message, of any request, carried a file's bytes or the servers' secrets.
  for (const m of messages) {
    expect(m).not.toContain(CANARY);
    expect(m).not.toContain(cluster.secret);
  }
}, 60_000);

/** [what, path, expected message after the field]; paths relative to the data root. */
const HOSTILE: [string, () => string, RegExp][] = [
  ['a .. escape', () => '../outside/secret.csv', /^is outside the data roots$/],
  ['an absolute path outside', () => join(outside, 'secret.csv'), /^is outside the data roots$/],
  [
    'a path outside that does not exist',
    () => join(outside, 'x.csv'),
    /^is outside the data roots$/,
  ],
  ['a symlink out of the root', () => 'link.csv', /^is outside the data roots$/],
  ['/proc/self/environ', () => '/proc/self/environ', /^is outside the data roots$/],
  ['/proc/self/maps', () => '/proc/self/maps', /^is outside the data roots$/],
  ['/proc/self/fd/1', () => '/proc/self/fd/1', /^is outside the data roots$/],
  ['/etc/passwd', () => '/etc/passwd', /^is outside the data roots$/],
  ['/dev/zero', () => '/dev/zero', /^is outside the data roots$/],
  ['/dev/urandom', () => '/dev/urandom', /^is outside the data roots$/],
  ['a FIFO inside the root', () => 'fifo.csv', /^is not a regular file/],
  ['a directory inside the root', () => 'sub', /^is not a regular file/],
  [
    'a file over the size limit',
    () => 'big.csv',
    /^is larger than the data size limit \(4096 bytes\)$/,
  ],
];

describe('a coordinator confined to its data roots', () => {
  it.each(HOSTILE)('SubmitJob refuses %s, naming the field', async (_what, path, why) => {
    const e = await refused(submit(basJob(2, { data: { kind: 'csv', path: path() } })));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details.startsWith('spec.data.path ')).toBe(true);
    expect(e.details.slice('spec.data.path '.length)).toMatch(why);
    expect(coordinatorRss()).toBeLessThan(RSS_BOUND);
  });

  it('refuses every other data field the same way', async () => {
    const cases: [unknown, string][] = [
      [{ data: { kind: 'idx', images: '/dev/zero' } }, 'spec.data.images'],
      [{ data: { kind: 'idx', images: 'ok.csv', labels: 'x' } }, 'spec.data'],
      [{ data: { kind: 'fashion-mnist', dir: outside } }, 'spec.data.dir'],
      [{ data: { kind: 'fashion-mnist', dir: '/proc/self' } }, 'spec.data.dir'],
      [
        { evaluate: { test: { kind: 'csv', path: '/proc/self/environ' } } },
        'spec.evaluate.test.path',
      ],
    ];
    for (const [extra, field] of cases) {
      const spec = basJob(2, extra as Record<string, unknown>);
      const e = await refused(submit(spec));
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details.startsWith(`${field} `)).toBe(true);
    }
    // A one-look job (the coordinator stores it itself) and a sequence job (trained on a thread).
    const hebbian = await refused(
      submit({
        rule: 'hebbian',
        network: { hopfield: 16 },
        data: { kind: 'csv', path: '/proc/self/environ' },
      }),
    );
    expect(hebbian.details).toBe('spec.data.path is outside the data roots');
    const sequence = await refused(
      submit({
        rule: 'stdp',
        network: { dybm: { units: 2, delays: 2 } },
        data: { kind: 'csv', path: '../outside/secret.csv' },
        evaluate: { cue: 1 },
      }),
    );
    expect(sequence.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(sequence.details).toBe('spec.data.path is outside the data roots');
  });

  it('names the line and column of a file it cannot parse, never its bytes', async () => {
    const e = await refused(submit(basJob(2, { data: { kind: 'csv', path: 'secret.csv' } })));
    expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(e.details).toMatch(/^spec\.data cannot be loaded: secret\.csv: /);
  });

  it('answers health while a FIFO is submitted, and refuses the FIFO at once', async () => {
    const [fifo, status] = await Promise.all([
      refused(submit(basJob(2, { data: { kind: 'csv', path: 'fifo.csv' } }))),
      healthy(),
    ]);
    expect(fifo.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(status).toBe(ServingStatus.SERVING);
    expect(await healthy()).toBe(ServingStatus.SERVING);
  });

  it('Evaluate refuses the same paths, naming its data field', async () => {
    // A model to evaluate: a bars-and-stripes job the worker can read (it needs no file).
    const done = await jobs.follow((await submit(basJob(4))).job!.jobId);
    expect(done.job.state).toBe(COMPLETED);
    for (const [, path, why] of HOSTILE) {
      const e = await refused(
        evaluate({ jobId: done.job.jobId, data: JSON.stringify({ kind: 'csv', path: path() }) }),
      );
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.details.startsWith('data.path ')).toBe(true);
      expect(e.details.slice('data.path '.length)).toMatch(why);
    }
    const leak = await refused(
      evaluate({
        jobId: done.job.jobId,
        data: JSON.stringify({ kind: 'csv', path: 'secret.csv' }),
      }),
    );
    expect(leak.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await healthy()).toBe(ServingStatus.SERVING);
    expect(coordinatorRss()).toBeLessThan(RSS_BOUND);
  }, 180_000);
});

describe('a worker confined to its own data roots', () => {
  it('fails a shard whose data lie outside them, naming the field and nothing of the file', async () => {
    // The coordinator may read it; the worker, confined elsewhere, may not.
    const { job } = await submit(basJob(4, { data: { kind: 'csv', path: join(root, 'ok.csv') } }));
    const end = await jobs.follow(job!.jobId);
    expect(end.job.state).toBe(JobState.JOB_STATE_FAILED);
    messages.push(end.job.error);
    expect(end.job.error).toContain('spec.data.path is outside the data roots');
    expect(await healthy()).toBe(ServingStatus.SERVING);
  }, 180_000);
});
