// `npm run bench -- straggler [--quick] [--target=-4.0] [--limit-s=N] [--modes=cd,pcd]
// [--steps=N] [--repeat=3]`: what bounded and unbounded staleness buy when one worker is slow.
// With --rebalance: what rebalancing buys lockstep instead, on RBM 784-500 PCD-10 (_rebalance.ts).
// Bars-and-stripes 4x4, RBM 16-16, 2 worker processes (each pinned to its own core with taskset,
// OPENBLAS_NUM_THREADS=1), one of them started with SPINMESH_DEBUG_SLOWDOWN=2 (it stays busy as
// long again as its process worked, computing or handling messages: half speed).
// For staleness 0 (lockstep), 4 and 'unbounded': the wall time until the exact log-likelihood of
// the model reaches the target (default -4.0 nats; the optimum is -3.401), the final exact
// log-likelihood, and the ratio of the unbounded run's time to the lockstep run's. Each setting
// runs `--repeat` times (3; --quick: 1), lockstep, 4 and unbounded in turn, because the step
// rate of this 2-core machine drifts between runs; the figures are medians (a run that missed
// the target counts as slower than any), each repeat's ratio is listed too.
// Each repeat also runs lockstep with no straggler (both workers at full speed): the time any
// remedy that keeps lockstep's learning per step could at best reach (`floor_ratio`, that time
// over the straggler's lockstep time), so the ratio above reads against what was possible.
// Each run also reports, per shard, the share of its time in the trainer and waiting for its
// peer's spins (WorkerStatus, at the last poll; `time_share`, the straggler's shard marked).
//
// How the time is measured: the coordinator evaluates the model exactly (2^16 states enumerated)
// from the shards' checkpoints, which they all write every 10 steps; each evaluation event
// (WatchJob) carries the step of the checkpoints it was assembled from; its control loop runs
// every 20 ms, so it evaluates most checkpoints (best effort: one replaced before the coordinator
// reads it is skipped, which coarsens the resolution of fast runs). The workers' Status is
// polled every 50 ms, which gives the wall time at which every shard had completed a step. The
// time to target is the wall time, counted from the first poll at which both shards run (data
// loaded, peers connected: start-up excluded), at which both shards had completed the step of the
// first evaluation at or above the target. Resolution: the 10-step checkpoint interval and the
// 50 ms poll. Not reached within the time limit (or by the end of the job): null.
//
// Training setups (both centred, momentum 0.5, batch = the 30 patterns, one step per epoch):
//  - cd (the sound one for asynchronous runs): CD-10, learning rate 0.1 decaying linearly to 0
//    over the run (the setup of test/cluster.test.ts's unbounded-staleness check).
//    With CD every chain starts from the batch, whose states a shard always waits for, so
//    staleness lets only the weights lag (SHARDING.md, "Staleness"); a shard cannot run more than
//    about one step ahead of its slowest peer whatever the bound.
//  - pcd: PCD-3, 100 persistent chains, learning rate 0.1 decaying linearly to 0 (single-process,
//    this reaches -3.9 nats by step 1200 of 2000): with an exact positive phase a shard
//    may run ahead up to the bound on stale chain spins of its peer, which biases the negative
//    phase (docs/benchmarks.md, "Staleness, measured"). Measured and reported as is.
import { barsAndStripes, basLogLikelihoodOptimum } from '@spinmesh/model';
import { JobState, WorkerState } from '@spinmesh/proto';
import { loadKernels } from '@spinmesh/kernels';
import { availableParallelism } from 'node:os';
import {
  loadAverage,
  nowMs,
  runClusterJob,
  startBenchCluster,
  type ClusterJobResult,
  type StatusSample,
} from './_cluster.js';
import { environment, log, numArg, parseArgs } from './_common.js';
import { rebalanceBench } from './_rebalance.js';

type Staleness = number | 'unbounded';

/**
 * The median of the values, a miss (null) counting as worse than any time, so the median is null
 * when half or more missed; `digits` rounds it.
 */
function median(values: (number | null)[], digits = 3): number | null {
  const sorted = [...values].sort((a, b) => (a ?? Infinity) - (b ?? Infinity));
  const m = sorted[Math.floor((sorted.length - 1) / 2)] ?? null;
  return m === null ? null : Number(m.toFixed(digits));
}
const STALENESS: Staleness[] = [0, 4, 'unbounded'];
/** The runs of one repeat: the straggler at each staleness, then lockstep without it. */
const SETTINGS: { staleness: Staleness; straggler: boolean }[] = [
  ...STALENESS.map((staleness) => ({ staleness, straggler: true })),
  { staleness: 0, straggler: false },
];
const CHECKPOINT_EVERY = 10;

function trainOf(mode: string, steps: number): Record<string, unknown> {
  const common = {
    batchSize: 30,
    learningRate: 0.1,
    momentum: 0.5,
    centring: true,
    statistics: 'samples',
  };
  const schedule = { type: 'linear', steps, end: 0 };
  if (mode === 'cd') return { ...common, negative: 'cd', k: 10, schedule };
  return { ...common, negative: 'pcd', chains: 100, k: 3, schedule };
}

interface RunFigures {
  staleness: Staleness;
  straggler: boolean;
  time_to_target_s: number | null;
  target_step: number | null;
  final_exact_ll: number | null;
  best_exact_ll: number | null;
  state: string;
  steps_done: number;
  training_seconds: number | null;
  job_seconds: number;
  steps_per_s: number | null;
  shard_steps_at_end: number[];
  peer_spin_staleness_mean: number | null;
  peer_spin_staleness_max: number | null;
  /**
   * Each shard's run at the last poll, as shares of its time (WorkerStatus): in the trainer and
   * waiting for the peer's spins; `slow` marks the straggler's shard.
   */
  time_share: { shard: number; slow: boolean; computing: number; waiting: number }[];
  evaluations: [number, number][];
  load_after: string;
}

/** The first sample at which every shard had completed `step`, or null. */
function reachedAt(samples: StatusSample[], step: number): number | null {
  for (const s of samples) if (Math.min(...s.statuses.map((x) => x.step)) >= step) return s.t;
  return null;
}

function figures(
  st: Staleness,
  straggler: boolean,
  r: ClusterJobResult,
  target: number,
  totalSteps: number,
): RunFigures {
  const running = (s: StatusSample): boolean =>
    s.statuses.every(
      (x) =>
        x.state === WorkerState.WORKER_STATE_RUNNING || x.state === WorkerState.WORKER_STATE_DONE,
    );
  const started = r.samples.find(running)?.t ?? null;
  const evals: [number, number][] = [];
  for (const e of r.events) {
    const ll = e.evaluation?.exactLogLikelihood;
    if (ll !== undefined) evals.push([e.evaluation!.epoch, ll]); // one step per epoch
  }
  const hit = evals.find(([, ll]) => ll >= target);
  let tTarget: number | null = null;
  if (hit && started !== null) {
    // The final evaluation (step = total) may come after the last poll: the job's end then.
    const t = reachedAt(r.samples, hit[0]) ?? (hit[0] >= totalSteps ? r.endedAt : null);
    if (t !== null) tTarget = (t - started) / 1000;
  }
  const last = r.samples.at(-1);
  const steps = last ? Math.min(...last.statuses.map((x) => x.step)) : 0;
  const stal = last?.statuses.map((x) => x.staleness).filter((x) => x !== undefined) ?? [];
  const count = stal.reduce((a, x) => a + x.count, 0);
  const first = started !== null ? r.samples.find(running)! : null;
  const trainingSeconds = last && first ? (last.t - first.t) / 1000 : null;
  const stepsFirst = first ? Math.min(...first.statuses.map((x) => x.step)) : 0;
  return {
    staleness: st,
    straggler,
    time_to_target_s: tTarget === null ? null : Number(tTarget.toFixed(3)),
    target_step: hit ? hit[0] : null,
    final_exact_ll:
      r.job.state === JobState.JOB_STATE_COMPLETED
        ? (r.job.evaluation?.exactLogLikelihood ?? null)
        : (evals.at(-1)?.[1] ?? null),
    best_exact_ll: evals.length > 0 ? Math.max(...evals.map(([, ll]) => ll)) : null,
    state: JobState[r.job.state] ?? String(r.job.state),
    steps_done: steps,
    training_seconds: trainingSeconds === null ? null : Number(trainingSeconds.toFixed(3)),
    job_seconds: Number(((r.endedAt - r.submittedAt) / 1000).toFixed(3)),
    steps_per_s:
      trainingSeconds && trainingSeconds > 0
        ? Number(((steps - stepsFirst) / trainingSeconds).toFixed(1))
        : null,
    shard_steps_at_end: last?.statuses.map((x) => x.step) ?? [],
    peer_spin_staleness_mean:
      count > 0 ? Number((stal.reduce((a, x) => a + x.sumSteps, 0) / count).toFixed(3)) : null,
    peer_spin_staleness_max: stal.length > 0 ? Math.max(...stal.map((x) => x.maxSteps)) : null,
    time_share: [...(last?.statuses ?? [])]
      .sort((x, y) => x.shardId - y.shardId)
      .map((x) => ({
        shard: x.shardId,
        // Worker 0 is the straggler (startBenchCluster's first environment).
        slow: straggler && x.workerId.endsWith('-0'),
        computing: x.runSeconds > 0 ? Number((x.computeSeconds / x.runSeconds).toFixed(3)) : 0,
        waiting: x.runSeconds > 0 ? Number((x.waitSeconds / x.runSeconds).toFixed(3)) : 0,
      })),
    evaluations: evals
      .filter((_, i) => i % 5 === 0 || i === evals.length - 1)
      .map(([s, ll]) => [s, Number(ll.toFixed(4))]),
    load_after: loadAverage(),
  };
}

export async function run(argv: string[]): Promise<Record<string, unknown>> {
  const args = parseArgs('straggler', argv, [
    'quick',
    'target',
    'limit-s',
    'modes',
    'steps',
    'repeat',
    'rebalance',
    'tiles',
    'product-block',
    'timeout-s',
  ]);
  if (args.has('rebalance')) return rebalanceBench(args);
  for (const only of ['tiles', 'product-block'])
    if (args.has(only)) throw new Error(`--${only}: only with --rebalance`);
  const quick = args.has('quick');
  const target = numArg(args, 'target', -4.0);
  const steps = numArg(args, 'steps', quick ? 600 : 2000);
  const limitS = numArg(args, 'limit-s', quick ? 30 : 120);
  const repeats = numArg(args, 'repeat', quick ? 1 : 3);
  if (!(Number.isInteger(repeats) && repeats >= 1))
    throw new Error(`--repeat: must be an integer >= 1, got ${repeats}`);
  const modesArg = args.get('modes');
  const modes = typeof modesArg === 'string' ? modesArg.split(',') : ['cd', 'pcd'];
  for (const m of modes)
    if (m !== 'cd' && m !== 'pcd') throw new Error(`--modes: unknown mode '${m}' (cd, pcd)`);
  const k = loadKernels();
  log(`kernels: ${k.describe()}; ${availableParallelism()} cores; load ${loadAverage()}`);
  const optimum = basLogLikelihoodOptimum(4);
  const byMode: Record<string, unknown> = {};
  let pinningNote = '';
  for (const mode of modes) {
    log(`\n== ${mode}: ${steps} steps, target ${target} nats, limit ${limitS} s per run`);
    const runs: Run[] = [];
    for (let repeat = 0; repeat < repeats; repeat++)
      for (const { staleness: st, straggler } of SETTINGS) {
        const r = await stragglerRun(mode, st, straggler, {
          steps,
          limitS,
          target,
          repeat,
          repeats,
        });
        pinningNote = r.pinningNote;
        runs.push(r.run);
      }
    byMode[mode] = modeSummary(mode, runs, steps, repeats);
  }
  // The headline figures are the sound setup's (CD) when it ran, else the first mode's.
  const head = (byMode['cd'] ?? byMode[modes[0]!]) as Record<string, unknown>;
  return {
    ...environment(k),
    network: '16-16 RBM',
    data: `bars-and-stripes 4x4 (${barsAndStripes(4).rows} patterns)`,
    optimum,
    workers: 2,
    straggler: 'one worker with SPINMESH_DEBUG_SLOWDOWN=2 (half speed)',
    pinning: pinningNote,
    target_exact_ll: target,
    steps,
    time_limit_s: limitS,
    checkpoint_and_evaluation_every_steps: CHECKPOINT_EVERY,
    headline_mode: byMode['cd'] ? 'cd' : modes[0],
    time_to_target_s: head['time_to_target_s'],
    final_exact_ll: head['final_exact_ll'],
    ratio_unbounded_vs_lockstep: head['ratio_unbounded_vs_lockstep'],
    lockstep_without_straggler_s: head['lockstep_without_straggler_s'],
    floor_ratio: head['floor_ratio'],
    goal: { ratio_unbounded_vs_lockstep: 0.6 },
    modes: byMode,
    load_end: loadAverage(),
  };
}

type Run = RunFigures & { repeat: number };

/** One run: the mode's job with the straggler (or without), at staleness `st`, to its end or limit. */
async function stragglerRun(
  mode: string,
  st: Staleness,
  straggler: boolean,
  o: { steps: number; limitS: number; target: number; repeat: number; repeats: number },
): Promise<{ run: Run; pinningNote: string }> {
  const { steps, limitS, target, repeat, repeats } = o;
  const label = straggler ? `staleness ${st}` : 'lockstep, no straggler';
  const spec = {
    name: `bench-straggler-${mode}`,
    seed: 7,
    network: { rbm: { visible: 16, hidden: 16 } },
    data: { kind: 'bas', size: 4 },
    epochs: steps,
    train: trainOf(mode, steps),
    evaluate: { every: CHECKPOINT_EVERY, exact: true, recon: false },
    workers: 2,
    staleness: st,
    checkpointEverySteps: CHECKPOINT_EVERY,
  };
  // Worker 0 (pinned to cpu0) is the straggler; which shard it gets is the coordinator's
  // choice and does not matter (the two shards of an RBM split do the same work).
  const { cluster, pinning, failures } = await startBenchCluster(
    [straggler ? { SPINMESH_DEBUG_SLOWDOWN: '2' } : {}, {}],
    true,
    // A control-loop pass every 20 ms: an evaluation of nearly every 10-step checkpoint. The
    // layout stays as planned: rebalancing (--rebalance) is measured on its own.
    { SPINMESH_COORDINATOR_POLL_MS: '20', SPINMESH_MAX_REBALANCES: '0' },
  );
  let r: ClusterJobResult;
  try {
    let t0 = 0;
    r = await runClusterJob(cluster, failures, spec, {
      pollMs: 50,
      timeoutMs: limitS * 1000 + 30_000,
      onEvent: (e) => {
        const ll = e.evaluation?.exactLogLikelihood;
        if (ll !== undefined && e.evaluation!.epoch % 200 === 0)
          log(`  ${label}: step ${e.evaluation!.epoch} exact LL ${ll.toFixed(4)}`);
      },
      onSample: (s) => {
        if (t0 === 0 && s.statuses.every((x) => x.state === WorkerState.WORKER_STATE_RUNNING))
          t0 = s.t;
        // The time limit counts from the start of training, like the time to target.
        return t0 > 0 && nowMs() - t0 > limitS * 1000;
      },
    });
  } finally {
    await cluster.stop();
  }
  if (r.job.state !== JobState.JOB_STATE_COMPLETED && r.job.state !== JobState.JOB_STATE_CANCELLED)
    throw new Error(`${label}: job ended ${JobState[r.job.state]}: ${r.job.error}`);
  const f = figures(st, straggler, r, target, steps);
  const run = { ...f, repeat };
  log(
    `[${repeat + 1}/${repeats}] ${label}: time to ${target}: ${f.time_to_target_s ?? 'not reached'} s (step ${f.target_step ?? '-'}); ` +
      `final ${f.final_exact_ll?.toFixed(4) ?? '-'}; ${f.steps_per_s ?? '-'} steps/s; ` +
      `spin staleness mean ${f.peer_spin_staleness_mean ?? '-'} max ${f.peer_spin_staleness_max ?? '-'}; ` +
      `computing/waiting ${f.time_share.map((x) => `${x.slow ? 'slow ' : ''}shard ${x.shard} ${Math.round(x.computing * 100)}%/${Math.round(x.waiting * 100)}%`).join(', ')}; ` +
      `load ${f.load_after}`,
  );
  return { run, pinningNote: pinning.note };
}

/** A mode's figures over its repeats: medians by staleness and the ratios to lockstep. */
function modeSummary(
  mode: string,
  runs: Run[],
  steps: number,
  repeats: number,
): Record<string, unknown> {
  const key = (st: Staleness): string => String(st);
  const of = (st: Staleness, straggler = true): Run[] =>
    runs.filter((x) => x.staleness === st && x.straggler === straggler);
  // Per repeat, a run's time over the straggler's lockstep run's (null where one missed).
  const ratiosOf = (runsOf: Run[]): (number | null)[] =>
    Array.from({ length: repeats }, (_, i) => {
      const t0 = of(0).find((x) => x.repeat === i)!.time_to_target_s;
      const t = runsOf.find((x) => x.repeat === i)!.time_to_target_s;
      return t0 !== null && t !== null && t0 > 0 ? Number((t / t0).toFixed(3)) : null;
    });
  const ratios = ratiosOf(of('unbounded'));
  const floors = ratiosOf(of(0, false));
  return {
    train: trainOf(mode, steps),
    repeats,
    time_to_target_s: Object.fromEntries(
      STALENESS.map((st) => [key(st), median(of(st).map((x) => x.time_to_target_s))]),
    ),
    final_exact_ll: Object.fromEntries(
      STALENESS.map((st) => {
        const lls = of(st)
          .map((x) => x.final_exact_ll)
          .filter((x) => x !== null);
        return [key(st), lls.length > 0 ? median(lls, 4) : null];
      }),
    ),
    ratio_unbounded_vs_lockstep: median(ratios),
    ratios_unbounded_vs_lockstep: ratios,
    lockstep_without_straggler_s: median(of(0, false).map((x) => x.time_to_target_s)),
    floor_ratio: median(floors),
    floor_ratios: floors,
    runs,
  };
}
