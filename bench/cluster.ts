// `npm run bench -- cluster [--quick] [--dense-steps=N] [--fmnist-epochs=N] [--fmnist-limit=N]
// [--staleness=N|unbounded]`: what distribution costs. Each network is trained on a local
// cluster (a coordinator and K worker processes over loopback gRPC) with K = 1, 2 (and 4 where the
// machine has 4 cores), every worker pinned to its own core (`taskset`) with
// OPENBLAS_NUM_THREADS=1, so every K gives each worker the same resources and K=2 against K=1
// measures what the sharding and the spin traffic cost.
//
// Networks (PCD-1 unless said, centred, no periodic checkpoints; staleness 0, lockstep, unless
// --staleness says otherwise: then a shard may draw ahead on its peer's older chain states, which
// changes the result, see SHARDING.md, "Staleness"; the compute-only bound stays lockstep's):
//  - dense: a bipartite RBM of 2048 + 2048 units (4,096 units, every visible unit connected to
//    every hidden one), batch 64, 64 persistent chains, on a synthetic seeded random binary data
//    set (640 rows, noisy copies of 16 random prototypes) written to a temporary IDX file. A
//    lateral all-to-all layer of 4,096 units would not do: a lateral layer is swept unit by unit
//    and cannot be split across shards (packages/model/SHARDING.md, "Ownership"), so a cluster
//    could not distribute it at all;
//  - fmnist: Fashion-MNIST binarized at 0.5, RBM 784-500, batch 100, 100 persistent chains;
//  - fmnist_pcd10: the same with PCD-10 (one epoch of 30,000 rows), where sampling outweighs the
//    gradient. The headline figures are the worst over all three.
//
// Figures, from the workers' WorkerControl.Status (polled every 200 ms, 50 with --quick):
// steady-state spin updates per second = units sampled x rows per step, summed over the stages of a
// step (positive: batch x hidden; negative: chains x (visible + hidden)), times the steps completed
// between two polls that exclude start-up (the first 15 % of the steps, loading and connecting) and
// the final export, divided by the wall time between those polls; bytes on the wire per spin update
// and receiving peer = bytes of spin frames the workers sent in that window x 8 / (spin updates x
// receiving peers); in an RBM split into K shards every drawn spin goes to the K - 1 other shards.
// 1 bit of payload per spin is the floor. Where a step's wall time went in that window
// (ms_per_step), from the workers' own clocks (WorkerStatus compute_seconds, wait_seconds), averaged
// over the workers: in the trainer, waiting for peers' spins, and the rest (encoding, sending and
// receiving frames, RPCs, progress reports; or other processes on the worker's core).
//
// Compute only: the same layouts as ShardTrainers in this process with messages delivered at
// once (LoopbackCluster, one BLAS thread), each shard's busy time per step: the speedup 2
// workers could reach with no waiting and no transport (compute_only.bound_speedup_2_workers).
// Measured again with the weight correlations left out (compute_only.without_weight_gradients):
// the bound if the weight correlations cost nothing, which shows what the rest of a shard's work
// (drawing, and updating the 3/4 of the weights each shard of two holds) allows.
//
// Also, for comparison, the single-process Trainer (statistics 'samples', the same spec) in this
// process with OPENBLAS_NUM_THREADS=2 equivalent (NativeKernels threads = 2): one process on both
// cores, against which 2 workers (one core each) gain or lose.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { BUS_SECRET_METADATA } from '@spinmesh/bus';
import { LocalCluster } from '@spinmesh/coordinator';
import { loadKernels, type Kernels } from '@spinmesh/kernels';
import {
  LoopbackCluster,
  Network,
  Trainer,
  columnMeans,
  evenLayout,
  initVisibleBias,
  loadData,
  networkSource,
  validateJobSpec,
  writeIdx,
} from '@spinmesh/model';
import {
  JobServiceClient,
  JobState,
  WorkerControlClient,
  WorkerState,
  type Job,
  type WatchJobResponse,
  type WorkerStatus,
} from '@spinmesh/proto';
import { environment, log, numArg, parseArgs } from './_common.js';

// ---------------------------------------------------------------------------------------------
// Shared with straggler.ts: a pinned local cluster, its job service and its workers' counters.

/** How the workers were pinned: to which cores, or why not. */
export interface Pinning {
  pinned: boolean;
  note: string;
}

let tasksetChecked: string | null | undefined;

/** The path of taskset, or null when it is not installed. */
function tasksetPath(): string | null {
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
    const status = (address: string): Promise<WorkerStatus> => {
      let c = controls.get(address);
      if (!c) {
        c = new WorkerControlClient(address, grpc.credentials.createInsecure());
        controls.set(address, c);
      }
      const client = c;
      return unary<WorkerStatus>((cb) =>
        client.status({}, md, { deadline: Date.now() + 5000 }, cb),
      );
    };
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

export function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(2))
    .join(' ');
}

// ---------------------------------------------------------------------------------------------

interface Workload {
  key: string;
  /** Gibbs sweeps per step (PCD-k). */
  k: number;
  title: string;
  spec: (workers: number) => Record<string, unknown>;
  visible: number;
  hidden: number;
  batch: number;
  chains: number;
  totalSteps: number;
}

/** Synthetic binary data: noisy copies (10 % flips) of 16 random prototypes, seeded. */
function writeSyntheticIdx(path: string, rows: number, dims: number, seed: number): void {
  let s = seed >>> 0 || 1;
  const rand = (): number => {
    // xorshift32
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
  const P = 16;
  const protos = new Uint8Array(P * dims);
  for (let i = 0; i < protos.length; i++) protos[i] = rand() < 0.5 ? 1 : 0;
  const x = new Uint8Array(rows * dims);
  for (let r = 0; r < rows; r++) {
    const p = Math.floor(rand() * P);
    for (let j = 0; j < dims; j++) {
      const bit = protos[p * dims + j]! ^ (rand() < 0.1 ? 1 : 0);
      x[r * dims + j] = bit * 255;
    }
  }
  writeIdx(path, [rows, dims], x);
}

interface KRun {
  spin_updates_per_s: number | null;
  wire_bits_per_spin_update: number | null;
  steps: number;
  seconds: number;
  total_steps: number;
  job_seconds: number;
  bytes_sent: number;
  /**
   * A step's wall time in the steady-state window and, averaged over the workers, where it went
   * (WorkerStatus): in the trainer, waiting for peers' spins, and the rest (frames, RPCs).
   */
  ms_per_step: {
    wall: number;
    compute: number;
    waiting: number;
    other: number;
    /** compute and waiting of each worker (by shard). */
    by_shard: { compute: number; waiting: number }[];
  } | null;
  receiving_peers: number;
  pinning: string;
  load_before: string;
  load_after: string;
  note?: string;
}

function measure(
  w: Workload,
  K: number,
  r: ClusterJobResult,
): Omit<KRun, 'pinning' | 'load_before' | 'load_after'> {
  const spinsPerStep = rbmSpinsPerStep(w.visible, w.hidden, w.batch, w.chains, w.k);
  const total = w.totalSteps;
  const warm = Math.ceil(total * 0.15);
  const mean = (s: StatusSample): number =>
    s.statuses.reduce((a, x) => a + x.step, 0) / s.statuses.length;
  const bytes = (s: StatusSample): number => s.statuses.reduce((a, x) => a + x.bytesSent, 0);
  const usable = r.samples.filter(
    (s) =>
      s.statuses.every((x) => x.state === WorkerState.WORKER_STATE_RUNNING && x.step < total) &&
      Math.min(...s.statuses.map((x) => x.step)) >= warm,
  );
  const jobSeconds = (r.endedAt - r.submittedAt) / 1000;
  const base = {
    total_steps: total,
    job_seconds: Number(jobSeconds.toFixed(2)),
    receiving_peers: K - 1,
  };
  if (usable.length < 2)
    return {
      ...base,
      spin_updates_per_s: null,
      wire_bits_per_spin_update: null,
      steps: 0,
      seconds: 0,
      bytes_sent: 0,
      ms_per_step: null,
      note: `fewer than 2 status polls between step ${warm} and the end (${r.samples.length} polls): raise the steps`,
    };
  const a = usable[0]!;
  const b = usable[usable.length - 1]!;
  const steps = mean(b) - mean(a);
  const seconds = (b.t - a.t) / 1000;
  const spins = steps * spinsPerStep;
  const sent = bytes(b) - bytes(a);
  // Each worker's milliseconds in the window, per step, and their mean over the workers.
  const round = (x: number): number => Number(x.toFixed(3));
  const shards = [...b.statuses].sort((x, y) => x.shardId - y.shardId);
  const perStep = (x: WorkerStatus, k: 'computeSeconds' | 'waitSeconds'): number =>
    ((x[k] - (a.statuses.find((y) => y.workerId === x.workerId)?.[k] ?? 0)) * 1000) / steps;
  const byShard = shards.map((x) => ({
    compute: round(perStep(x, 'computeSeconds')),
    waiting: round(perStep(x, 'waitSeconds')),
  }));
  const wall = (seconds * 1000) / steps;
  const compute = byShard.reduce((n, x) => n + x.compute, 0) / byShard.length;
  const waiting = byShard.reduce((n, x) => n + x.waiting, 0) / byShard.length;
  return {
    ...base,
    ms_per_step: {
      wall: round(wall),
      compute: round(compute),
      waiting: round(waiting),
      other: round(wall - compute - waiting),
      by_shard: byShard,
    },
    spin_updates_per_s: Math.round(spins / seconds),
    wire_bits_per_spin_update: K > 1 ? Number(((sent * 8) / (spins * (K - 1))).toFixed(4)) : null,
    steps: Number(steps.toFixed(1)),
    seconds: Number(seconds.toFixed(3)),
    bytes_sent: sent,
  };
}

/** The single-process Trainer on the same spec, kernels with `threads` BLAS threads. */
async function singleProcess(
  w: Workload,
  threads: number,
  steps: number,
): Promise<Record<string, unknown>> {
  const k = loadKernels(undefined, { threads });
  const spec = validateJobSpec(w.spec(1));
  const data = await loadData(spec.data, spec.seed);
  const net = Network.create(spec.network, k, { seed: spec.seed, weightStd: 0.01 });
  initVisibleBias(net, columnMeans(data));
  const trainer = new Trainer(net, { ...spec.train, monitorEvery: 1e9 });
  const B = w.batch;
  const perEpoch = Math.floor(data.rows / B);
  const d = data.dims;
  const batchAt = (i: number): Float32Array => {
    const j = i % perEpoch;
    return data.x.subarray(j * B * d, (j + 1) * B * d);
  };
  const warm = Math.max(3, Math.ceil(steps * 0.15));
  for (let i = 0; i < warm; i++) trainer.trainBatch(batchAt(i), B, undefined, false);
  const t0 = performance.now();
  for (let i = warm; i < steps; i++) trainer.trainBatch(batchAt(i), B, undefined, false);
  const seconds = (performance.now() - t0) / 1000;
  const spins = (steps - warm) * rbmSpinsPerStep(w.visible, w.hidden, B, w.chains, w.k);
  return {
    spin_updates_per_s: Math.round(spins / seconds),
    steps: steps - warm,
    seconds: Number(seconds.toFixed(3)),
    threads: k.threads,
    kernels: k.describe(),
  };
}

/**
 * What the sharding alone costs: K shards of the job's layout in this process (LoopbackCluster,
 * messages delivered at once, one BLAS thread), each shard's time in advance() per step after
 * a 15 % warm-up. K workers can at best reach t(K = 1) / max over shards of t(K): the speedup
 * with no waiting and no transport at all.
 */
async function computeOnly(
  w: Workload,
  K: number,
  steps: number,
  gradients = true,
): Promise<number[]> {
  const native = loadKernels(undefined, { threads: 1 });
  const k = gradients ? native : withoutCorrelations(native);
  const spec = validateJobSpec(w.spec(K));
  const data = await loadData(spec.data, spec.seed);
  const net = Network.create(spec.network, k, { seed: spec.seed, weightStd: 0.01 });
  initVisibleBias(net, columnMeans(data));
  const c = new LoopbackCluster({
    network: spec.network,
    train: spec.train,
    layout: evenLayout(spec.network, K),
    kernels: k,
    data: { x: data.x, rows: data.rows },
    steps,
    params: networkSource(net),
    // A turn draws up to one step (both workloads: an exact positive stage, then k sweeps of
    // two stages), so a shard runs in stretches as a worker does, not stage by stage
    // interleaved with the other shard's (whose tiles would then evict its own from the cache).
    stagesPerTurn: 1 + 2 * w.k,
  });
  const busy = new Array<number>(K).fill(0);
  let counting = false;
  c.trainers.forEach((tr, s) => {
    const advance = tr!.advance.bind(tr);
    tr!.advance = (budget) => {
      const t0 = performance.now();
      const r = advance(budget);
      if (counting) busy[s]! += performance.now() - t0;
      return r;
    };
  });
  const warm = Math.max(2, Math.ceil(steps * 0.15));
  c.run({ until: (x) => x.trainers.every((t) => t!.position.applied >= warm) });
  const from = Math.min(...c.trainers.map((t) => t!.position.applied));
  counting = true;
  c.run();
  return busy.map((ms) => Number((ms / (steps - from)).toFixed(3)));
}

/**
 * The kernels with every weight correlation skipped: bitCorrelation, and the GEMMs S^T U (an
 * sgemm with a transposed first operand and more than one column; the drawing GEMMs never
 * transpose it). The gradients keep whatever they held, so what is trained is meaningless,
 * but every other kernel runs as before.
 */
function withoutCorrelations(k: Kernels): Kernels {
  return new Proxy(k, {
    get(target, prop) {
      if (prop === 'bitCorrelation') return (): void => {};
      if (prop === 'sgemm')
        return (...a: Parameters<Kernels['sgemm']>): void => {
          if (!(a[0] && a[3] > 1)) target.sgemm(...a);
        };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...x: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** --staleness: 0 (lockstep, the default), a positive integer or 'unbounded'. */
function stalenessArg(v: string | true | undefined): number | 'unbounded' {
  if (v === undefined) return 0;
  if (v === 'unbounded') return v;
  const n = v === true ? NaN : Number(v);
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`--staleness: must be 0, a positive integer or 'unbounded', got '${v}'`);
  return n;
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('cluster', argv, [
    'quick',
    'dense-steps',
    'fmnist-epochs',
    'fmnist-limit',
    'timeout-s',
    'staleness',
  ]);
  const quick = args.has('quick');
  const denseSteps = numArg(args, 'dense-steps', quick ? 60 : 800);
  const fmnistLimit = numArg(args, 'fmnist-limit', quick ? 10000 : 60000);
  const fmnistEpochs = numArg(args, 'fmnist-epochs', quick ? 2 : 6);
  const timeoutMs = numArg(args, 'timeout-s', 300) * 1000;
  const staleness = stalenessArg(args.get('staleness'));
  const cores = availableParallelism();
  const k = loadKernels();
  log(`kernels: ${k.describe()}; ${cores} cores; load ${loadAverage()}`);
  const ts = tasksetPath();
  log(ts ? `pinning workers with ${ts}` : 'taskset not found: workers will NOT be pinned');

  const tmp = mkdtempSync(join(tmpdir(), 'spinmesh-bench-cluster-'));
  try {
    const denseRows = 640;
    const denseData = join(tmp, 'dense-2048-images-idx2-ubyte');
    writeSyntheticIdx(denseData, denseRows, 2048, 12345);
    const common = {
      seed: 1,
      staleness,
      checkpointEverySteps: 0,
    };
    const dense: Workload = {
      key: 'dense',
      k: 1,
      title: 'RBM 2048-2048 (4,096 units), batch 64, 64 chains, PCD-1, synthetic binary data',
      visible: 2048,
      hidden: 2048,
      batch: 64,
      chains: 64,
      totalSteps: Math.ceil(denseSteps / (denseRows / 64)) * (denseRows / 64),
      spec: (workers) => ({
        name: 'bench-cluster-dense',
        network: { rbm: { visible: 2048, hidden: 2048 } },
        data: { kind: 'idx', images: denseData },
        epochs: Math.ceil(denseSteps / (denseRows / 64)),
        train: {
          batchSize: 64,
          negative: 'pcd',
          chains: 64,
          k: 1,
          learningRate: 0.01,
          momentum: 0.5,
          centring: true,
          statistics: 'samples',
        },
        evaluate: { every: 1_000_000, exact: false, recon: false },
        workers,
        ...common,
      }),
    };
    const fmnistOf = (k: number, limit: number, epochs: number): Workload => ({
      key: k === 1 ? 'fmnist' : `fmnist_pcd${k}`,
      k,
      title: `Fashion-MNIST binarized (first ${limit} rows), RBM 784-500, batch 100, 100 chains, PCD-${k}`,
      visible: 784,
      hidden: 500,
      batch: 100,
      chains: 100,
      totalSteps: epochs * Math.ceil(limit / 100),
      spec: (workers) => ({
        name: 'bench-cluster-fmnist',
        network: { rbm: { visible: 784, hidden: 500 } },
        data: { kind: 'fashion-mnist', split: 'train', limit, binarize: 'threshold' },
        epochs,
        train: {
          batchSize: 100,
          negative: 'pcd',
          chains: 100,
          k,
          learningRate: 0.05,
          momentum: 0.5,
          weightDecay: 1e-4,
          centring: true,
          statistics: 'samples',
        },
        evaluate: { every: 1_000_000, exact: false, recon: false },
        workers,
        ...common,
      }),
    });
    const fmnist = fmnistOf(1, fmnistLimit, fmnistEpochs);
    // How the speedup grows when sampling outweighs the gradient (each shard still computes 3/4
    // of the gradient, but only 1/2 of the sampling).
    const fmnist10 = fmnistOf(10, quick ? 3000 : 30000, 1);

    const Ks = [1, 2, 4];
    const networks: Record<string, unknown> = {};
    const speedups: number[] = [];
    const wireBits: number[] = [];
    const single: Record<string, number | null> = {};
    for (const w of [dense, fmnist, fmnist10]) {
      log(`\n== ${w.key}: ${w.title}`);
      const sp = await singleProcess(
        w,
        2,
        quick ? Math.min(w.totalSteps, 60) : Math.ceil(w.totalSteps / 2),
      );
      single[w.key] = sp['spin_updates_per_s'] as number;
      log(`single process, 2 BLAS threads: ${(single[w.key]! / 1e6).toFixed(2)} M spin updates/s`);
      const boundSteps = quick ? 20 : Math.min(200, Math.ceil(w.totalSteps / 2));
      const compute1 = await computeOnly(w, 1, boundSteps);
      const compute2 = await computeOnly(w, 2, boundSteps);
      const bound = Number((compute1[0]! / Math.max(...compute2)).toFixed(3));
      log(
        `compute only, one process: ${compute1[0]} ms/step (1 shard), ${compute2.join(' / ')} ms/step (2 shards): ` +
          `bound on the 2-worker speedup ${bound}`,
      );
      const free1 = await computeOnly(w, 1, boundSteps, false);
      const free2 = await computeOnly(w, 2, boundSteps, false);
      const freeBound = Number((free1[0]! / Math.max(...free2)).toFixed(3));
      log(
        `  without the weight gradients: ${free1[0]} ms/step (1 shard), ${free2.join(' / ')} ms/step (2 shards): ` +
          `bound ${freeBound}`,
      );
      const byK: Record<string, unknown> = {};
      for (const K of Ks) {
        if (K > cores) {
          byK[String(K)] = {
            skipped: `${K} workers need ${K} cores to pin one per core; this machine has ${cores}`,
          };
          log(`K=${K}: skipped (${cores} cores)`);
          continue;
        }
        const loadBefore = loadAverage();
        // The services read the synthetic data only from their data roots.
        const data = { SPINMESH_DATA_ROOTS: tmp };
        const { cluster, pinning, failures } = await startBenchCluster(
          Array.from({ length: K }, () => data),
          true,
          data,
        );
        let r: ClusterJobResult;
        try {
          r = await runClusterJob(cluster, failures, w.spec(K), {
            // --quick jobs last about a second: poll often enough for a steady-state window.
            pollMs: quick ? 50 : 200,
            timeoutMs,
            onEvent: (e) => {
              if (e.progress && e.progress.step % 50 < 10)
                log(`  K=${K} step ${e.progress.step}/${e.progress.totalSteps}`);
            },
          });
        } finally {
          await cluster.stop();
        }
        if (r.job.state !== JobState.JOB_STATE_COMPLETED)
          throw new Error(`K=${K} ${w.key}: job ended ${JobState[r.job.state]}: ${r.job.error}`);
        const m: KRun = {
          ...measure(w, K, r),
          pinning: pinning.note,
          load_before: loadBefore,
          load_after: loadAverage(),
        };
        byK[String(K)] = m;
        const t = m.ms_per_step;
        log(
          `K=${K}: ${m.spin_updates_per_s === null ? 'n/a' : (m.spin_updates_per_s / 1e6).toFixed(2)} M spin updates/s over ${m.steps} steps in ${m.seconds} s; ` +
            `${m.wire_bits_per_spin_update ?? '-'} wire bits/spin/peer; job ${m.job_seconds} s; load ${m.load_after}` +
            (t
              ? `\n      a step ${t.wall.toFixed(2)} ms: ${t.compute.toFixed(2)} computing, ${t.waiting.toFixed(2)} waiting for peers, ${t.other.toFixed(2)} the rest` +
                (K > 1
                  ? ` (mean over workers; computing + waiting by shard: ${t.by_shard.map((x) => `${x.compute.toFixed(2)} + ${x.waiting.toFixed(2)}`).join(', ')})`
                  : '')
              : ''),
        );
        if (m.wire_bits_per_spin_update !== null) wireBits.push(m.wire_bits_per_spin_update);
      }
      const r1 = (byK['1'] as KRun | undefined)?.spin_updates_per_s ?? null;
      const r2 = (byK['2'] as KRun | undefined)?.spin_updates_per_s ?? null;
      const speedup = r1 && r2 ? Number((r2 / r1).toFixed(3)) : null;
      if (speedup !== null) speedups.push(speedup);
      networks[w.key] = {
        network: w.title,
        spin_updates_per_step: rbmSpinsPerStep(w.visible, w.hidden, w.batch, w.chains, w.k),
        by_workers: byK,
        speedup_2_workers: speedup,
        compute_only: {
          ms_per_step_1_shard: compute1[0],
          ms_per_step_2_shards: compute2,
          bound_speedup_2_workers: bound,
          without_weight_gradients: {
            ms_per_step_1_shard: free1[0],
            ms_per_step_2_shards: free2,
            bound_speedup_2_workers: freeBound,
          },
        },
        single_process_2_threads: sp,
        two_workers_vs_single_process_2_threads:
          r2 && single[w.key] ? Number((r2 / single[w.key]!).toFixed(3)) : null,
      };
    }
    return {
      ...environment(k),
      taskset: ts ?? 'missing: workers not pinned',
      quick,
      staleness,
      checkpoint_every_steps: 0,
      lateral_note:
        'a lateral (all-to-all) layer is swept unit by unit and must lie within one shard (SHARDING.md), so the dense network is a bipartite 2048+2048 RBM',
      networks,
      speedup_2_workers: speedups.length === 3 ? Math.min(...speedups) : null,
      wire_bits_per_spin_update: wireBits.length > 0 ? Math.max(...wireBits) : null,
      single_process_2_threads_spin_updates_per_s: single,
      load_end: loadAverage(),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
