// `npm run bench -- straggler --rebalance [--quick] [--steps=N] [--repeat=3]
// [--tiles=replicated|owned] [--product-block=N]`: what rebalancing buys a lockstep job with a
// straggler where computation dominates. RBM 784-500, PCD-10, batch and chains 100, on the first
// steps x 100 rows of Fashion-MNIST (one epoch; beyond 600 steps, steps / 600 epochs of all
// 60,000), replicated tiles (the job spec's default) unless --tiles says, 2 worker processes
// pinned to their own cores, one started with SPINMESH_DEBUG_SLOWDOWN=2 (half speed: it keeps its
// core busy as long again as it worked, before its frames leave). Each repeat runs the job twice:
// static lockstep (the coordinator's rebalancing off: SPINMESH_MAX_REBALANCES=0) and with
// rebalancing (the coordinator's defaults but SPINMESH_REBALANCE_MIN_SAVING_S=0, since even the
// full job is shorter than the jobs the 10 s default is meant for). Measured: the wall time from
// the first poll at which both shards run (data loaded, peers connected) to the job's completion
// event, for the same fixed number of steps; a rebalance's restart (checkpoints re-cut, peers
// reconnected, shards held at its step) is inside it. `ratio_rebalanced_vs_lockstep` is
// the median over the repeats of each repeat's ratio (ideal 2/3 with owned tiles and no cost but
// computing: balanced, the pair runs at 1.5 times the straggler's lone speed instead of twice
// its half share). `ms_per_step` gives each run's steady pace (steps from one checkpoint
// interval after the last start to the end), which the fixed costs of the first steps and of a
// move do not dilute.
// The final models of each pair are compared parameter by parameter. With replicated tiles the
// job sets train.productBlock (default 64: fields cut at multiples of 64 units, and layouts with
// them), so the moved run computes every field as the static one did and the models are equal
// bit for bit with OpenBLAS too; --product-block=0 shows the run without (a slab of another width
// rounds its columns otherwise, and the runs part once a draw falls within rounding of its
// probability). Owned tiles sum a field's parts in another grouping after a move, so they are
// not equal: `max_diff` says how far the two models ended apart.
import { RemoteBus } from '@spinmesh/bus';
import { readModel } from '@spinmesh/coordinator';
import { loadKernels, type Kernels } from '@spinmesh/kernels';
import { decodeModel } from '@spinmesh/model';
import { JobState, WorkerState } from '@spinmesh/proto';
import { availableParallelism } from 'node:os';
import {
  loadAverage,
  runClusterJob,
  startBenchCluster,
  type ClusterJobResult,
} from './_cluster.js';
import { environment, log, numArg, tilesArg, type Args } from './_common.js';
import { fmnistWorkload } from './_workloads.js';

const CHECKPOINT_EVERY = 20;
/** Steps of one epoch over the 60,000 training rows, batch 100. */
const EPOCH_STEPS = 600;

interface RebalanceRun {
  repeat: number;
  rebalancing: boolean;
  state: string;
  /** Wall time of the fixed steps, from both shards running to the job's completion. */
  seconds: number | null;
  job_seconds: number;
  rebalances: {
    step: number;
    before: number[];
    after: number[];
    seconds_per_step: number[];
    /** From the rebalance (the checkpoints re-cut) until every shard runs again (data reloaded, peers reconnected). */
    restart_s: number | null;
  }[];
  generation: number;
  /** Ms per step from one checkpoint interval after the last (re)start to the end; null: too short. */
  ms_per_step: number | null;
  /** Every second or so: [seconds since both shards ran, steps every shard has done, generation]. */
  timeline: [number, number, number][];
  load_after: string;
}

function medianOf(values: (number | null)[], digits = 3): number | null {
  const v = values.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m =
    v.length % 2 === 1 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  return Number(m.toFixed(digits));
}

/** Seconds from a rebalance until the first poll at which every shard runs under `generation`. */
function restartSeconds(
  r: ClusterJobResult,
  at: number | undefined,
  generation: number,
): number | null {
  if (at === undefined) return null;
  const back = r.samples.find(
    (s) =>
      s.t > at &&
      s.statuses.every(
        (x) => x.generation >= generation && x.state === WorkerState.WORKER_STATE_RUNNING,
      ),
  );
  return back ? Number(((back.t - at) / 1000).toFixed(3)) : null;
}

/** Ms per step of the last generation, from one checkpoint interval into it to its last poll. */
function steadyPace(r: ClusterJobResult): number | null {
  const running = r.samples.filter((s) =>
    s.statuses.every((x) => x.state === WorkerState.WORKER_STATE_RUNNING),
  );
  const last = running.at(-1);
  if (!last) return null;
  const generation = Math.max(...last.statuses.map((x) => x.generation));
  const mine = running.filter((s) => s.statuses.every((x) => x.generation === generation));
  const step = (s: (typeof mine)[number]): number => Math.min(...s.statuses.map((x) => x.step));
  const from = mine[0] ? step(mine[0]) + CHECKPOINT_EVERY : Infinity;
  const a = mine.find((s) => step(s) >= from);
  if (!a || step(last) - step(a) < CHECKPOINT_EVERY) return null;
  return Number(((last.t - a.t) / (step(last) - step(a))).toFixed(2));
}

function timelineOf(r: ClusterJobResult, started: number | undefined): [number, number, number][] {
  if (started === undefined) return [];
  const out: [number, number, number][] = [];
  let next = started;
  for (const s of r.samples) {
    if (s.t < next) continue;
    next = s.t + 1000;
    const step = Math.min(...s.statuses.map((x) => x.step));
    const generation = Math.max(...s.statuses.map((x) => x.generation));
    out.push([Number(((s.t - started) / 1000).toFixed(2)), step, generation]);
  }
  return out;
}

/** Largest |a - b| over two models' parameters, and whether they are bit-identical. */
function compareParameters(
  a: Float32Array[],
  b: Float32Array[],
): { identical: boolean; max_diff: number } {
  let identical = a.length === b.length;
  let maxDiff = 0;
  a.forEach((x, i) => {
    const y = b[i];
    if (!y || y.length !== x.length) {
      identical = false;
      maxDiff = Infinity;
      return;
    }
    for (let j = 0; j < x.length; j++) {
      if (!Object.is(x[j], y[j])) identical = false;
      maxDiff = Math.max(maxDiff, Math.abs(x[j]! - y[j]!));
    }
  });
  return { identical, max_diff: maxDiff };
}

/** The run's moves, from its `rebalanced` events (movedAt[i]: when the i-th was seen). */
function movesOf(r: ClusterJobResult, movedAt: readonly number[]): RebalanceRun['rebalances'] {
  return r.events
    .filter((e) => e.workers?.kind === 'rebalanced')
    .map((e, i) => {
      const j = JSON.parse(e.json) as {
        restoreFromStep: number;
        before: number[];
        after: number[];
        secondsPerStep: number[];
        generation: number;
      };
      return {
        step: j.restoreFromStep,
        before: j.before,
        after: j.after,
        seconds_per_step: j.secondsPerStep.map((x) => Number(x.toFixed(4))),
        restart_s: restartSeconds(r, movedAt[i], j.generation + 1),
      };
    });
}

async function oneRun(
  spec: Record<string, unknown>,
  rebalancing: boolean,
  repeat: number,
  k: Kernels,
  timeoutMs: number,
): Promise<{ run: RebalanceRun; parameters: Float32Array[] | null; pinning: string }> {
  const coordinatorEnv: Record<string, string> = rebalancing
    ? { SPINMESH_REBALANCE_MIN_SAVING_S: '0' }
    : { SPINMESH_MAX_REBALANCES: '0' };
  // Worker 0 (cpu0) is the straggler.
  const { cluster, pinning, failures } = await startBenchCluster(
    [{ SPINMESH_DEBUG_SLOWDOWN: '2' }, {}],
    true,
    coordinatorEnv,
  );
  let r: ClusterJobResult;
  let parameters: Float32Array[] | null = null;
  const label = rebalancing ? 'rebalancing' : 'static lockstep';
  const movedAt: number[] = [];
  try {
    r = await runClusterJob(cluster, failures, spec, {
      pollMs: 200,
      timeoutMs,
      onEvent: (e, t) => {
        if (e.workers?.kind === 'rebalanced') {
          movedAt.push(t);
          log(`  ${label}: ${e.workers.message}`);
        } else if (e.progress && e.progress.step % 100 < 5)
          log(`  ${label}: step ${e.progress.step}/${e.progress.totalSteps}`);
      },
    });
    if (r.job.state === JobState.JOB_STATE_COMPLETED) {
      const bus = await RemoteBus.connect({ address: cluster.address, secret: cluster.secret });
      try {
        const m = await readModel(bus, r.job.jobId);
        if (m)
          parameters = decodeModel(m.bytes, k)
            .network.parameters()
            .map((p) => p.data);
      } finally {
        await bus.close();
      }
    }
  } finally {
    await cluster.stop();
  }
  const started = r.samples.find((s) =>
    s.statuses.every((x) => x.state === WorkerState.WORKER_STATE_RUNNING),
  )?.t;
  const completed = r.job.state === JobState.JOB_STATE_COMPLETED;
  const rebalances = movesOf(r, movedAt);
  const run: RebalanceRun = {
    repeat,
    rebalancing,
    state: JobState[r.job.state] ?? String(r.job.state),
    seconds:
      completed && started !== undefined ? Number(((r.endedAt - started) / 1000).toFixed(3)) : null,
    job_seconds: Number(((r.endedAt - r.submittedAt) / 1000).toFixed(3)),
    rebalances,
    generation: r.job.generation,
    ms_per_step: steadyPace(r),
    timeline: timelineOf(r, started),
    load_after: loadAverage(),
  };
  log(
    `[${repeat + 1}] ${label}: ${run.seconds ?? 'did not complete'} s; ` +
      `${rebalances.length} rebalance(s) ${rebalances.map((x) => `at ${x.step}: ${x.before.join('/')} -> ${x.after.join('/')}`).join(', ')}; load ${run.load_after}`,
  );
  return { run, parameters, pinning: pinning.note };
}

/** The rebalancing figures (see the file header). */
export async function rebalanceBench(args: Args): Promise<Record<string, unknown>> {
  const quick = args.has('quick');
  const steps = numArg(args, 'steps', quick ? 200 : 600);
  const repeats = numArg(args, 'repeat', quick ? 1 : 3);
  // Up to one epoch of the 60,000 training rows, or whole epochs of them.
  const valid =
    steps >= 2 * CHECKPOINT_EVERY && (steps <= EPOCH_STEPS || steps % EPOCH_STEPS === 0);
  if (!(Number.isInteger(steps) && valid))
    throw new Error(
      `--steps: must be an integer in ${2 * CHECKPOINT_EVERY}..${EPOCH_STEPS} or a multiple of ${EPOCH_STEPS}, got ${steps}`,
    );
  const epochs = Math.max(1, steps / EPOCH_STEPS);
  const rows = Math.min(steps, EPOCH_STEPS) * 100;
  if (!(Number.isInteger(repeats) && repeats >= 1))
    throw new Error(`--repeat: must be an integer >= 1, got ${repeats}`);
  const k = loadKernels();
  log(`kernels: ${k.describe()}; ${availableParallelism()} cores; load ${loadAverage()}`);
  const tiles = tilesArg(args.get('tiles')) ?? 'replicated';
  const w = fmnistWorkload(10, rows, epochs, {
    seed: 1,
    staleness: 0,
    checkpointEverySteps: CHECKPOINT_EVERY,
    tiles,
  });
  const productBlock = numArg(args, 'product-block', tiles === 'owned' ? 0 : 64);
  const base = w.spec(2);
  const spec = { ...base, train: { ...(base.train as object), productBlock } };
  const timeoutMs = numArg(args, 'timeout-s', 900) * 1000;
  log(`\n== rebalance: ${w.title}, ${steps} steps, checkpoints every ${CHECKPOINT_EVERY}`);
  const runs: RebalanceRun[] = [];
  const ratios: (number | null)[] = [];
  const models: { identical: boolean; max_diff: number }[] = [];
  let pinning = '';
  for (let repeat = 0; repeat < repeats; repeat++) {
    const fixed = await oneRun(spec, false, repeat, k, timeoutMs);
    const moved = await oneRun(spec, true, repeat, k, timeoutMs);
    pinning = moved.pinning;
    runs.push(fixed.run, moved.run);
    const [t0, t1] = [fixed.run.seconds, moved.run.seconds];
    ratios.push(t0 !== null && t1 !== null && t0 > 0 ? Number((t1 / t0).toFixed(3)) : null);
    if (fixed.parameters && moved.parameters)
      models.push(compareParameters(fixed.parameters, moved.parameters));
  }
  const of = (rebalancing: boolean): (number | null)[] =>
    runs.filter((x) => x.rebalancing === rebalancing).map((x) => x.seconds);
  const paceOf = (rebalancing: boolean): (number | null)[] =>
    runs.filter((x) => x.rebalancing === rebalancing).map((x) => x.ms_per_step);
  return {
    ...environment(k),
    network: 'RBM 784-500',
    workload: w.title,
    tiles,
    product_block: productBlock,
    data: `Fashion-MNIST, first ${rows} training rows, binarized (${epochs} epoch${epochs > 1 ? 's' : ''})`,
    workers: 2,
    straggler: 'one worker with SPINMESH_DEBUG_SLOWDOWN=2 (half speed)',
    pinning,
    steps,
    checkpoint_every_steps: CHECKPOINT_EVERY,
    repeats,
    lockstep_s: medianOf(of(false)),
    rebalanced_s: medianOf(of(true)),
    lockstep_ms_per_step: medianOf(paceOf(false), 2),
    rebalanced_ms_per_step: medianOf(paceOf(true), 2),
    ratio_rebalanced_vs_lockstep: medianOf(ratios),
    ratios_rebalanced_vs_lockstep: ratios,
    goal: { ratio_rebalanced_vs_lockstep: 0.75, ideal: Number((2 / 3).toFixed(3)) },
    models_equal: models.length === repeats && models.every((m) => m.identical),
    model_comparisons: models.map((m) => ({
      identical: m.identical,
      max_diff: Number.isFinite(m.max_diff) ? Number(m.max_diff.toExponential(3)) : null,
    })),
    runs,
    load_end: loadAverage(),
  };
}
