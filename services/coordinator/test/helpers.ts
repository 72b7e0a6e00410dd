// Shared fixtures of the coordinator's tests: a coordinator on 127.0.0.1:0 with a silent logger,
// and promise wrappers of the JobService client.
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { PortableKernels } from '@spinmesh/kernels';
import {
  HealthClient,
  JobServiceClient,
  ModelServiceClient,
  PLAINTEXT,
  type CancelJobResponse,
  type GetJobResponse,
  type HealthCheckResponse,
  type Job,
  type ServingStatus,
  type SubmitJobResponse,
  type WatchJobResponse,
} from '@spinmesh/proto';
import { CONFIG_DEFAULTS, type CoordinatorConfig } from '../src/config.js';
import { startCoordinator, type CoordinatorServer, type StartOptions } from '../src/server.js';

export const silent = pino({ level: 'silent' });

/** A small valid spec (RBM 16-8 on 4x4 bars and stripes) that the malformed and hostile corpora vary. */
export const basSpec = {
  name: 'bas',
  seed: 1,
  network: { rbm: { visible: 16, hidden: 8 } },
  data: { kind: 'bas', size: 4 },
  epochs: 2,
  train: { batchSize: 10, learningRate: 0.05, k: 1, negative: 'pcd', chains: 10 },
  evaluate: { every: 1, exact: true },
  workers: 1,
  staleness: 0,
  checkpointEverySteps: 10,
};

export function testConfig(extra: Partial<CoordinatorConfig> = {}): CoordinatorConfig {
  return {
    ...CONFIG_DEFAULTS,
    listen: '127.0.0.1:0',
    redis: null,
    clusterSecret: null,
    apiToken: null,
    tls: PLAINTEXT,
    pollIntervalMs: 50,
    progressIntervalMs: 0,
    ...extra,
  };
}

export async function coordinator(
  extra: Partial<CoordinatorConfig> = {},
  options: StartOptions = {},
): Promise<CoordinatorServer> {
  return startCoordinator(testConfig(extra), silent, {
    kernels: new PortableKernels(),
    ...options,
  });
}

export function jobClient(address: string): JobServiceClient {
  return new JobServiceClient(address, grpc.credentials.createInsecure());
}

export type Callback<T> = (err: grpc.ServiceError | null, res: T | undefined) => void;

/** A unary call as a promise; rejects with the ServiceError. */
export function unary<T>(start: (cb: Callback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    start((err, res) => (err ? reject(err) : resolve(res!)));
  });
}

export async function submit(c: JobServiceClient, spec: unknown, jobId = ''): Promise<Job> {
  const text = typeof spec === 'string' ? spec : JSON.stringify(spec);
  return (await unary<SubmitJobResponse>((cb) => c.submitJob({ spec: text, jobId }, cb))).job!;
}

export async function getJob(c: JobServiceClient, jobId: string): Promise<Job> {
  return (await unary<GetJobResponse>((cb) => c.getJob({ jobId }, cb))).job!;
}

export async function cancel(c: JobServiceClient, jobId: string): Promise<Job> {
  return (await unary<CancelJobResponse>((cb) => c.cancelJob({ jobId }, cb))).job!;
}

export async function healthOf(address: string, service: string): Promise<ServingStatus> {
  const h = new HealthClient(address, grpc.credentials.createInsecure());
  try {
    return (await unary<HealthCheckResponse>((cb) => h.check({ service }, cb))).status;
  } finally {
    h.close();
  }
}

/** Collects a watch stream until it ends (or until `until` says so, then cancels it). */
export function watch(
  c: JobServiceClient,
  jobId: string,
  until?: (events: WatchJobResponse[]) => boolean,
  afterEventId = '',
): Promise<{ events: WatchJobResponse[]; error: grpc.ServiceError | null }> {
  return new Promise((resolve) => {
    const events: WatchJobResponse[] = [];
    const stream = c.watchJob({ jobId, afterEventId });
    let done = false;
    const finish = (error: grpc.ServiceError | null): void => {
      if (done) return;
      done = true;
      resolve({ events, error });
    };
    stream.on('data', (e: WatchJobResponse) => {
      events.push(e);
      if (until?.(events)) {
        stream.cancel();
        finish(null);
      }
    });
    stream.on('error', (err: grpc.ServiceError) =>
      finish(err.code === grpc.status.CANCELLED ? null : err),
    );
    stream.on('end', () => finish(null));
  });
}

/** The gRPC error of a promise that must fail. */
export async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('the call succeeded');
}

/** Every job and model call that takes a job id, by name, for the corpora of bad ids. */
export function jobIdCalls(
  jobs: JobServiceClient,
  models: ModelServiceClient,
): [string, (jobId: string) => Promise<unknown>][] {
  return [
    ['GetJob', (jobId) => unary((cb) => jobs.getJob({ jobId }, cb))],
    ['CancelJob', (jobId) => unary((cb) => jobs.cancelJob({ jobId }, cb))],
    [
      'WatchJob',
      (jobId) =>
        new Promise((resolve, reject) => {
          const s = jobs.watchJob({ jobId, afterEventId: '' });
          s.on('data', () => undefined);
          s.on('error', reject);
          s.on('end', resolve);
        }),
    ],
    [
      'Sample',
      (jobId) =>
        unary((cb) =>
          models.sample({ jobId, count: 1, sweeps: 1, temperature: 0, seed: 0, layer: '' }, cb),
        ),
    ],
    [
      'Complete',
      (jobId) =>
        unary((cb) =>
          models.complete(
            {
              jobId,
              cues: { rows: 1, dims: 1, values: [1] },
              known: Buffer.alloc(0),
              sweeps: 0,
              seed: 0,
              trajectory: false,
              layer: '',
            },
            cb,
          ),
        ),
    ],
    [
      'Evaluate',
      (jobId) =>
        unary((cb) =>
          models.evaluate(
            {
              jobId,
              data: '',
              exact: true,
              aisRuns: 0,
              aisSteps: 0,
              pseudo: false,
              recon: false,
              probe: false,
              recallFlip: 0,
              limit: 0,
              seed: 0,
            },
            cb,
          ),
        ),
    ],
    [
      'GetModel',
      (jobId) =>
        new Promise((resolve, reject) => {
          const s = models.getModel({ jobId, format: 0, chunkBytes: 0 });
          s.on('data', () => undefined);
          s.on('error', reject);
          s.on('end', resolve);
        }),
    ],
  ];
}
