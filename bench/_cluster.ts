// Shared by the cluster and straggler benchmarks: a local cluster with its workers pinned to
// cores, a job run on it with its workers' counters polled, and the figures both derive.
import { execFileSync } from 'node:child_process';
import { availableParallelism, loadavg } from 'node:os';
import * as grpc from '@grpc/grpc-js';
import { BUS_SECRET_METADATA } from '@spinmesh/bus';
import { LocalCluster } from '@spinmesh/coordinator';
import {
  JobServiceClient,
  WorkerControlClient,
  type Job,
  type WatchJobResponse,
  type WorkerStatus,
} from '@spinmesh/proto';

/** How the workers were pinned: to which cores, or why not. */
export interface Pinning {
  pinned: boolean;
  note: string;
}

let tasksetChecked: string | null | undefined;

/** The path of taskset, or null when it is not installed. */
export function tasksetPath(): string | null {
  if (tasksetChecked !== undefined) return tasksetChecked;
  tasksetChecked = null;
  for (const p of ['/usr/bin/taskset', '/bin/taskset', '/usr/local/bin/taskset'])
    try {
      execFileSync(p, ['--version'], { stdio: 'ignore' });
      tasksetChecked = p;
      break;
    } catch {
      // not there
    }
  return tasksetChecked;
}

/**
 * Pins every thread of a process to one core (`taskset -a -p -c`); threads it starts later
 * inherit the mask. Returns false when taskset is missing.
 */
export function pinProcess(pid: number, core: number): boolean {
  const ts = tasksetPath();
  if (ts === null) return false;
  execFileSync(ts, ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
  return true;
}

/** The environment of a benchmark cluster's children: quiet logs, fast control loop. */
export const CLUSTER_ENV = {
  coordinator: { SPINMESH_COORDINATOR_POLL_MS: '100', SPINMESH_PROGRESS_INTERVAL_MS: '200' },
  worker: { SPINMESH_PROGRESS_MS: '500', SPINMESH_LOG_LEVEL: 'warn' },
};

/**
 * Starts a local cluster with no workers, then `workerEnvs.length` workers, worker i with the
 * extra variables workerEnvs[i] and, when `pin`, pinned to core i (mod the cores there are).
 */
export async function startBenchCluster(
  workerEnvs: Record<string, string>[],
  pin: boolean,
  coordinatorEnv: Record<string, string> = {},
): Promise<{ cluster: LocalCluster; pinning: Pinning; failures: string[] }> {
  const failures: string[] = [];
  // LocalCluster spreads opts.workerEnv when it starts a worker: one object, refilled per worker.
  const workerEnv: Record<string, string> = {};
  const cluster = await LocalCluster.start({
    workers: 0,
    // The coordinator's 'listening' line is at level info: LocalCluster waits for it.
    env: { ...process.env, SPINMESH_LOG_LEVEL: 'info', OPENBLAS_NUM_THREADS: '1' },
    coordinatorEnv: { ...CLUSTER_ENV.coordinator, ...coordinatorEnv },
    workerEnv,
    stopGraceMs: 5000,
    onExit: (name, code, signal) =>
      failures.push(`${name} exited on its own (code ${code}, signal ${signal})`),
  });
  const cores = availableParallelism();
  let pinning: Pinning = { pinned: false, note: 'not pinned (not asked)' };
  try {
    const pinnedTo: string[] = [];
    for (const [i, env] of workerEnvs.entries()) {
      for (const k of Object.keys(workerEnv)) delete workerEnv[k];
      Object.assign(workerEnv, CLUSTER_ENV.worker, env);
      const name = cluster.startWorker();
      const pid = cluster.processes.get(name)!.child.pid;
      if (!pin || pid === undefined) continue;
      if (!pinProcess(pid, i % cores)) {
        pinning = { pinned: false, note: 'taskset (util-linux) not found: workers NOT pinned' };
        pin = false;
        continue;
      }
      pinnedTo.push(`${name}->cpu${i % cores}`);
    }
    if (pin)
      pinning = {
        pinned: true,
        note: `taskset -a -p -c: ${pinnedTo.join(', ')}${workerEnvs.length > cores ? ` (more workers than ${cores} cores: shared)` : ''}`,
      };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return { cluster, pinning, failures };
}

type Callback<T> = (err: grpc.ServiceError | null, res: T | undefined) => void;

function unary<T>(start: (cb: Callback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    start((err, res) => (err ? reject(err) : resolve(res!)));
  });
}

/** One poll of every worker of a job. */
export interface StatusSample {
  /** ms (performance.timeOrigin + performance.now()) halfway through the poll. */
  t: number;
  statuses: WorkerStatus[];
}

export interface ClusterJobResult {
  job: Job;
  events: WatchJobResponse[];
  samples: StatusSample[];
  /** When the job was submitted (same clock as the samples). */
  submittedAt: number;
  /** When the job's final event arrived. */
  endedAt: number;
}

export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Submits a job to a cluster, follows its events (WatchJob) and polls WorkerControl.Status of
 * its workers every `pollMs` while it runs. Rejects when a child exits, the job does not end
 * within `timeoutMs` (it is cancelled then) or a call fails.
 */
export async function runClusterJob(
  cluster: LocalCluster,
  failures: string[],
  spec: Record<string, unknown>,
  opts: {
    pollMs: number;
    timeoutMs: number;
    onEvent?: (e: WatchJobResponse, t: number) => void;
    /** Called after each poll; returning true cancels the job (a time limit reached). */
    onSample?: (s: StatusSample) => boolean | void;
  },
): Promise<ClusterJobResult> {
  const jobs = new JobServiceClient(cluster.address, grpc.credentials.createInsecure());
  const controls = new Map<string, WorkerControlClient>();
  const md = new grpc.Metadata();
  md.set(BUS_SECRET_METADATA, cluster.secret);
  let stream: grpc.ClientReadableStream<WatchJobResponse> | null = null;
  try {
    const submittedAt = nowMs();
    const submitted = await unary<{ job?: Job }>((cb) =>
      jobs.submitJob({ spec: JSON.stringify(spec), jobId: '' }, cb),
    );
    const jobId = submitted.job!.jobId;
    const events: WatchJobResponse[] = [];
    let addresses: string[] = [];
    let ended = false;
    let endedAt = 0;
    let streamError: Error | null = null;
    stream = jobs.watchJob({ jobId, afterEventId: '' });
    stream.on('data', (e: WatchJobResponse) => {
      const t = nowMs();
      events.push(e);
      if (e.workers?.kind === 'assigned')
        addresses = [...e.workers.shards]
          .sort((a, b) => a.shardId - b.shardId)
          .map((s) => s.address);
      opts.onEvent?.(e, t);
    });
    stream.on('end', () => {
      ended = true;
      endedAt = nowMs();
    });
    stream.on('error', (err: Error) => {
      if (!ended) streamError = err;
    });
    const status = (address: string): Promise<WorkerStatus> => workerStatus(controls, md, address);
    const samples: StatusSample[] = [];
    const deadline = submittedAt + opts.timeoutMs;
    let cancelled = false;
    while (!ended) {
      if (failures.length > 0)
        throw new Error(`${failures.join('; ')}\n${cluster.tails().slice(-4000)}`);
      if (streamError) throw streamError;
      if (!cancelled && nowMs() > deadline) {
        cancelled = true;
        await unary((cb) => jobs.cancelJob({ jobId }, cb));
      }
      const job = addresses;
      if (job.length > 0) {
        const t0 = nowMs();
        try {
          const statuses = await Promise.all(job.map(status));
          const s = { t: (t0 + nowMs()) / 2, statuses };
          if (statuses.every((x) => x.jobId === jobId)) {
            samples.push(s);
            if (!cancelled && opts.onSample?.(s) === true) {
              cancelled = true;
              await unary((cb) => jobs.cancelJob({ jobId }, cb));
            }
          }
        } catch {
          // A worker between states (or stopping at the end): skip this poll.
        }
      }
      await new Promise((r) => setTimeout(r, opts.pollMs));
    }
    const job = (await unary<{ job?: Job }>((cb) => jobs.getJob({ jobId }, cb))).job!;
    return { job, events, samples, submittedAt, endedAt };
  } finally {
    stream?.cancel();
    for (const c of controls.values()) c.close();
    jobs.close();
  }
}

/** Spin updates of one step of an RBM trained with an exact positive phase and CD-k / PCD-k. */
export function rbmSpinsPerStep(
  visible: number,
  hidden: number,
  batch: number,
  chains: number,
  k: number,
): number {
  return batch * hidden + k * chains * (visible + hidden);
}

/**
 * The payload bytes all K shards of an evenly split RBM (PCD-k, exact positive phase) send a
 * step, by design (SHARDING.md). Replicated: every spin drawn, 1 bit, to each of the K - 1
 * peers. Owned: at each hidden stage every shard sends each peer the partial fields of its
 * hidden units (float32) and then its hidden spins (1 bit); the visible layer's final model
 * states go to the peers only for centring's correction.
 */
export function rbmPayloadPerStep(
  w: { visible: number; hidden: number; batch: number; chains: number; k: number },
  K: number,
  tiles: 'owned' | 'replicated',
  centring: boolean,
): number {
  const peers = K - 1;
  if (tiles === 'replicated')
    return (rbmSpinsPerStep(w.visible, w.hidden, w.batch, w.chains, w.k) * peers) / 8;
  const hiddenRows = w.batch + w.k * w.chains;
  return (
    hiddenRows * w.hidden * peers * (4 + 1 / 8) +
    (centring ? (w.chains * w.visible * peers) / 8 : 0)
  );
}

export function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

/** WorkerControl.Status of the worker at `address`, through one client per address. */
function workerStatus(
  controls: Map<string, WorkerControlClient>,
  md: grpc.Metadata,
  address: string,
): Promise<WorkerStatus> {
  let c = controls.get(address);
  if (!c) {
    c = new WorkerControlClient(address, grpc.credentials.createInsecure());
    controls.set(address, c);
  }
  const client = c;
  return unary<WorkerStatus>((cb) => client.status({}, md, { deadline: Date.now() + 5000 }, cb));
}
