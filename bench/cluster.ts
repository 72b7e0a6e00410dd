// `npm run bench -- cluster [--quick] [--dense-steps=N] [--fmnist-epochs=N] [--fmnist-limit=N]
// [--staleness=N|unbounded] [--tiles=owned|replicated]`: what distribution costs. Each network
// (in the weight design SHARDING.md recommends for it, "Owned tiles": owned for the dense one at
// staleness 0, replicated for the others; --tiles sets one for all) is trained on a local
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
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
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
} from '@spinmesh/model';
import { JobState, WorkerState, type WorkerStatus } from '@spinmesh/proto';
import { environment, log, numArg, parseArgs, tilesArg } from './_common.js';
import {
  loadAverage,
  rbmPayloadPerStep,
  rbmSpinsPerStep,
  runClusterJob,
  startBenchCluster,
  tasksetPath,
  type ClusterJobResult,
  type StatusSample,
} from './_cluster.js';
import { denseWorkload, fmnistWorkload, writeSyntheticIdx, type Workload } from './_workloads.js';

// ---------------------------------------------------------------------------------------------

interface KRun {
  spin_updates_per_s: number | null;
  wire_bits_per_spin_update: number | null;
  /** Message bytes all workers sent a step (frames and acknowledgements as the links count them). */
  wire_bytes_per_step: number | null;
  /** wire_bytes_per_step over the design's payload (rbmPayloadPerStep): 1 is the floor. */
  wire_overhead: number | null;
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
  const spec = validateJobSpec(w.spec(K));
  const payload = rbmPayloadPerStep(w, K, spec.tiles, spec.train.centring === true);
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
      wire_bytes_per_step: null,
      wire_overhead: null,
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
    wire_bytes_per_step: K > 1 ? Math.round(sent / steps) : null,
    // what the frames' headers and the acknowledgements add to the design's payload
    wire_overhead: K > 1 ? Number((sent / steps / payload).toFixed(4)) : null,
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
    tiles: spec.tiles,
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

const FLAGS = [
  'quick',
  'dense-steps',
  'fmnist-epochs',
  'fmnist-limit',
  'timeout-s',
  'staleness',
  'tiles',
];

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('cluster', argv, FLAGS);
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
    const tiles = tilesArg(args.get('tiles'));
    const common = { seed: 1, staleness, checkpointEverySteps: 0, ...(tiles ? { tiles } : {}) };
    // Each network in the design SHARDING.md ("Owned tiles", when to choose) recommends for it:
    // owned tiles where the gradient dwarfs the fields (the dense network), replicated ones for
    // 784-500 (and for every asynchronous run); --tiles sets one design for all.
    const denseTiles = tiles ?? (staleness === 0 ? 'owned' : 'replicated');
    const dense = denseWorkload(denseData, denseRows, denseSteps, { ...common, tiles: denseTiles });
    const fmnist = fmnistWorkload(1, fmnistLimit, fmnistEpochs, common);
    // How the speedup grows when sampling outweighs the gradient (each shard still computes 3/4
    // of the gradient, but only 1/2 of the sampling).
    const fmnist10 = fmnistWorkload(10, quick ? 3000 : 30000, 1, common);

    const networks: Record<string, unknown> = {};
    const speedups: number[] = [];
    const bounds: number[] = [];
    const wireBits: number[] = [];
    const wireOverheads: number[] = [];
    const wireBytes: Record<string, number | null> = {};
    const single: Record<string, number | null> = {};
    const vsOneProcess: Record<string, number | null> = {};
    for (const w of [dense, fmnist, fmnist10]) {
      const b = await benchNetwork(w, { quick, cores, tmp, timeoutMs });
      single[w.key] = b.single;
      networks[w.key] = b.network;
      if (b.speedup !== null) speedups.push(b.speedup);
      bounds.push(b.bound);
      wireBits.push(...b.wireBits);
      wireOverheads.push(...b.wireOverheads);
      wireBytes[w.key] = b.wireBytes;
      vsOneProcess[w.key] = b.network.two_workers_vs_single_process_2_threads;
    }
    return {
      ...environment(k),
      taskset: ts ?? 'missing: workers not pinned',
      quick,
      staleness,
      tiles: tiles ?? 'recommended by network (networks.*.tiles)',
      checkpoint_every_steps: 0,
      lateral_note:
        'a lateral (all-to-all) layer is swept unit by unit and must lie within one shard (SHARDING.md), so the dense network is a bipartite 2048+2048 RBM',
      networks,
      // The figures issue 16 asks for: the worst network's 2-worker speedup and compute-only
      // bound, 2 workers against one process on both cores (dense), the bytes a step at K = 2.
      speedup_2_workers: speedups.length === 3 ? Math.min(...speedups) : null,
      speedup_vs_one_process: vsOneProcess['dense'] ?? null,
      compute_only_bound: Math.min(...bounds),
      wire_bytes_per_step: wireBytes,
      wire_bits_per_spin_update: wireBits.length > 0 ? Math.max(...wireBits) : null,
      wire_overhead: wireOverheads.length > 0 ? Math.max(...wireOverheads) : null,
      single_process_2_threads_spin_updates_per_s: single,
      load_end: loadAverage(),
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** One network: the single-process baseline, the compute-only bounds, and the cluster at each K. */
async function benchNetwork(
  w: Workload,
  o: { quick: boolean; cores: number; tmp: string; timeoutMs: number },
): Promise<{
  single: number | null;
  speedup: number | null;
  bound: number;
  wireBits: number[];
  wireOverheads: number[];
  wireBytes: number | null;
  network: { two_workers_vs_single_process_2_threads: number | null } & Record<string, unknown>;
}> {
  const { quick, cores } = o;
  log(`\n== ${w.key}: ${w.title}`);
  const sp = await singleProcess(
    w,
    2,
    quick ? Math.min(w.totalSteps, 60) : Math.ceil(w.totalSteps / 2),
  );
  const single = sp['spin_updates_per_s'] as number;
  log(`single process, 2 BLAS threads: ${(single / 1e6).toFixed(2)} M spin updates/s`);
  const bounds = await computeBounds(w, quick ? 20 : Math.min(200, Math.ceil(w.totalSteps / 2)));
  const byK: Record<string, unknown> = {};
  const wireBits: number[] = [];
  const wireOverheads: number[] = [];
  for (const K of [1, 2, 4]) {
    if (K > cores) {
      byK[String(K)] = {
        skipped: `${K} workers need ${K} cores to pin one per core; this machine has ${cores}`,
      };
      log(`K=${K}: skipped (${cores} cores)`);
      continue;
    }
    const m = await benchK(w, K, o);
    byK[String(K)] = m;
    if (m.wire_bits_per_spin_update !== null) wireBits.push(m.wire_bits_per_spin_update);
    if (m.wire_overhead !== null) wireOverheads.push(m.wire_overhead);
  }
  const r1 = (byK['1'] as KRun | undefined)?.spin_updates_per_s ?? null;
  const r2 = (byK['2'] as KRun | undefined)?.spin_updates_per_s ?? null;
  const speedup = r1 && r2 ? Number((r2 / r1).toFixed(3)) : null;
  const network = {
    network: w.title,
    tiles: validateJobSpec(w.spec(2)).tiles,
    spin_updates_per_step: rbmSpinsPerStep(w.visible, w.hidden, w.batch, w.chains, w.k),
    by_workers: byK,
    speedup_2_workers: speedup,
    compute_only: bounds,
    single_process_2_threads: sp,
    two_workers_vs_single_process_2_threads: r2 && single ? Number((r2 / single).toFixed(3)) : null,
  };
  const wireBytes = (byK['2'] as KRun | undefined)?.wire_bytes_per_step ?? null;
  const bound = (bounds as { bound_speedup_2_workers: number }).bound_speedup_2_workers;
  return { network, single, speedup, bound, wireBits, wireOverheads, wireBytes };
}

/** The compute-only bounds on the 2-worker speedup, with and without the weight gradients. */
async function computeBounds(w: Workload, boundSteps: number): Promise<Record<string, unknown>> {
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
  return {
    ms_per_step_1_shard: compute1[0],
    ms_per_step_2_shards: compute2,
    bound_speedup_2_workers: bound,
    without_weight_gradients: {
      ms_per_step_1_shard: free1[0],
      ms_per_step_2_shards: free2,
      bound_speedup_2_workers: freeBound,
    },
  };
}

/** The workload on a pinned local cluster of K workers. */
async function benchK(
  w: Workload,
  K: number,
  o: { quick: boolean; tmp: string; timeoutMs: number },
): Promise<KRun> {
  const { quick, tmp, timeoutMs } = o;
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
  return m;
}
