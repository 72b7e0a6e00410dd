// Fixtures of the cluster integration tests: jobs on bars-and-stripes 4x4, their single-process
// reference, a real local cluster (coordinator and worker processes), JobService calls as
// promises, and checks that nothing is left behind (processes, ports).
import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { LocalCluster, SERVICE_MAINS, type LocalClusterOptions } from '@spinmesh/coordinator';
import { PortableKernels } from '@spinmesh/kernels';
import { decodeModel, runJob, type Network } from '@spinmesh/model';
import {
  JobServiceClient,
  JobState,
  type GetJobResponse,
  type Job,
  type SubmitJobResponse,
  type WatchJobResponse,
} from '@spinmesh/proto';

export const portable = new PortableKernels();

/**
 * A job on 4x4 bars-and-stripes (30 patterns: one batch of 30 rows is one step per epoch) with a
 * 16-16 RBM and centred PCD. Sampled statistics: what a cluster runs, and what runJob runs too
 * once told, so the single-process result is the reference.
 */
export function basJob(
  epochs: number,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    name: 'bas-cluster',
    seed: 7,
    network: { rbm: { visible: 16, hidden: 16 } },
    data: { kind: 'bas', size: 4 },
    epochs,
    train: {
      batchSize: 30,
      negative: 'pcd',
      chains: 100,
      k: 1,
      learningRate: 0.1,
      momentum: 0.5,
      centring: true,
      statistics: 'samples',
    },
    evaluate: { every: epochs, exact: true },
    checkpointEverySteps: 50,
    ...extra,
  };
}

/** The single-process run of a spec (portable kernels): its network and last exact LL. */
export async function reference(
  spec: Record<string, unknown>,
): Promise<{ network: Network; ll: number }> {
  const r = await runJob(spec, portable);
  return { network: r.network, ll: r.evaluations.at(-1)!.exactLogLikelihood! };
}

/** Whether two networks have bit-identical parameters (and the largest difference). */
export function compareNetworks(a: Network, b: Network): { identical: boolean; maxDiff: number } {
  let identical = true;
  let maxDiff = 0;
  const pb = b.parameters();
  a.parameters().forEach((p, i) => {
    const q = pb[i]!;
    if (q.name !== p.name || q.data.length !== p.data.length) {
      identical = false;
      maxDiff = Infinity;
      return;
    }
    for (let j = 0; j < p.data.length; j++) {
      if (!Object.is(p.data[j], q.data[j])) identical = false;
      maxDiff = Math.max(maxDiff, Math.abs(p.data[j]! - q.data[j]!));
    }
  });
  return { identical, maxDiff };
}

export function decode(bytes: Uint8Array): Network {
  return decodeModel(bytes, portable).network;
}

/** Settings that make the tests' clusters notice a dead worker within about a second. */
export const FAST = {
  coordinator: {
    SPINMESH_HEARTBEAT_TIMEOUT_MS: '1500',
    SPINMESH_COORDINATOR_POLL_MS: '100',
    SPINMESH_RPC_TIMEOUT_MS: '2000',
    SPINMESH_PROGRESS_INTERVAL_MS: '200',
  },
  worker: { SPINMESH_HEARTBEAT_MS: '200', SPINMESH_PROGRESS_MS: '200' },
};

/** Starts a local cluster of real processes with the portable kernels and fast failure detection. */
export async function startCluster(
  workers: number,
  options: Partial<LocalClusterOptions> = {},
): Promise<LocalCluster> {
  for (const main of Object.values(SERVICE_MAINS))
    if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build first`);
  return LocalCluster.start({
    workers,
    kernels: 'portable',
    env: { ...process.env, SPINMESH_LOG_LEVEL: 'info', ...(options.env ?? {}) },
    coordinatorEnv: { ...FAST.coordinator, ...(options.coordinatorEnv ?? {}) },
    workerEnv: { ...FAST.worker, ...(options.workerEnv ?? {}) },
    stopGraceMs: 5000,
    ...(options.onExit ? { onExit: options.onExit } : {}),
  });
}

type Callback<T> = (err: grpc.ServiceError | null, res: T | undefined) => void;

/** A unary call as a promise; rejects with the ServiceError. */
function unary<T>(start: (cb: Callback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    start((err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/** A JobService client with promise methods. */
export class Jobs {
  readonly client: JobServiceClient;
  constructor(address: string, credentials = grpc.credentials.createInsecure()) {
    this.client = new JobServiceClient(address, credentials);
  }

  async submit(spec: unknown): Promise<Job> {
    const c = this.client;
    const text = JSON.stringify(spec);
    return (await unary<SubmitJobResponse>((cb) => c.submitJob({ spec: text, jobId: '' }, cb)))
      .job!;
  }

  async get(jobId: string): Promise<Job> {
    const c = this.client;
    return (await unary<GetJobResponse>((cb) => c.getJob({ jobId }, cb))).job!;
  }

  /**
   * Follows a job's events until its stream ends (the job is final) and returns them with the
   * final record; `onEvent` sees each one as it comes. A broken stream (a coordinator restart)
   * is resumed after the last event seen.
   */
  async follow(
    jobId: string,
    onEvent: (e: WatchJobResponse) => void = () => undefined,
    timeoutMs = 120_000,
  ): Promise<{ job: Job; events: WatchJobResponse[] }> {
    const events: WatchJobResponse[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const after = events.at(-1)?.eventId ?? '';
      const ended = await new Promise<boolean>((resolve) => {
        const stream = this.client.watchJob({ jobId, afterEventId: after });
        stream.on('data', (e: WatchJobResponse) => {
          events.push(e);
          onEvent(e);
        });
        stream.on('end', () => resolve(true));
        stream.on('error', () => resolve(false));
      });
      if (ended) return { job: await this.get(jobId), events };
      if (Date.now() > deadline) throw new Error(`job ${jobId} did not end in ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  close(): void {
    this.client.close();
  }
}

export const COMPLETED = JobState.JOB_STATE_COMPLETED;

/** Whether a process id is alive. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Whether something accepts connections on host:port. */
export function listening(address: string): Promise<boolean> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const s = createConnection({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
