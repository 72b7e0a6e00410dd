// Rebalancing: when the workers of a lockstep job take unequal time per step (a straggler), the
// shards are given units in proportion to each worker's measured speed. Once decided, every shard
// is asked to checkpoint a step a little ahead of it to its move slot (WorkerControl.CheckpointAt,
// so the move need not wait for the next periodic checkpoint, which may be thousands of steps
// away); those checkpoints are re-cut for the new layout, which goes on the job record, and every
// shard is reassigned under a new generation to restore from that step. Not a failure: no
// recovery is counted. Exact: at staleness 0 every layout trains the same model.
import type { Assignment, WorkerInfo } from '@spinmesh/bus';
import { moveSlot, type ProgressRecord, type StoredJob } from '@spinmesh/cluster';
import { FormatError, SpecError, type ShardLayout } from '@spinmesh/model';

import type { ControlContext, PendingRebalance, Pool, ShardPace } from './control-context.js';
import type { ShardedTraining } from './kinds/index.js';
import { place } from './placement.js';

export type { ShardPace } from './control-context.js';

function unitCounts(layout: ShardLayout): number[] {
  return layout.map((u) => Object.values(u).reduce((n, [a, b]) => n + b - a, 0));
}

/**
 * The share x of `work` a shard does when it owns the share x of every layer: with owned tiles
 * its row band, x of every connection; with replicated ones its units' fields (x of them) and,
 * for the weights, every tile touching its units, the rows and the columns of its units
 * (x + x - x*x, or 2x - x^2, of a connection).
 */
export type WorkOfShare = (share: number) => number;
export const OWNED_WORK: WorkOfShare = (x) => x;

/**
 * Replicated tiles, where the share `perWeight` of a step's work is the weights' (correlations
 * and update: 2x - x^2 of it for a share x) and the rest the fields (x of it). Sampling-heavy
 * runs (PCD-10: about 0.09) split nearly in proportion; taking all the work as the weights'
 * gave a slow shard of such a run too few units.
 */
export function replicatedWork(perWeight: number): WorkOfShare {
  return (x) => (1 - perWeight) * x + perWeight * (2 * x - x * x);
}

/** The share x in [0, 1] with work(x) = y (work increasing; y clamped to work's range). */
function shareOf(work: WorkOfShare, y: number): number {
  let [lo, hi] = [0, 1];
  for (let i = 0; i < 60; i++) {
    const mid = (lo + hi) / 2;
    if (work(mid) < y) lo = mid;
    else hi = mid;
  }
  return (lo + hi) / 2;
}

/** Seconds of the job's pace a move's checkpoint is asked for ahead of the shards, at first. */
const MOVE_MARGIN_SECONDS = 0.05;
/**
 * How long a shard holds at a move's step before drawing on (a move takes well under a second
 * on one machine; one that fails or is given up costs this much).
 */
const MOVE_HOLD_MS = 3000;
/** How long the checkpoints of a move's step may take to come before the move is given up. */
const MOVE_WAIT_SECONDS = 30;
/**
 * How often the coordinator looks for them in the first MOVE_HURRY_MS (then at its poll
 * interval): the shards hold at the step, idle, until moved, and a checkpoint takes tens of ms
 * to write on one machine.
 */
const MOVE_POLL_MS = 20;
const MOVE_HURRY_MS = 5000;

/**
 * The units per shard that would make every shard take the same time per step, and that time.
 * A shard's time per step is taken as a cost per unit of work times the work of its share of
 * the units (`work`: in proportion to the share with owned tiles, more with replicated ones,
 * whose cross tiles both holders compute) plus a fixed cost (its messages, which a slow worker
 * also handles slowly): with the figures of the layout before the last move as well, both are
 * fitted per shard; with one layout's figures only, or a fit that makes no sense (noise), the
 * fixed cost is taken as 0.
 */
export function targetUnits(
  units: readonly number[],
  secondsPerStep: readonly number[],
  previous?: { units: readonly number[]; secondsPerStep: readonly number[] },
  work: WorkOfShare = OWNED_WORK,
): { units: number[]; secondsPerStep: number } {
  const all = units.reduce((x, y) => x + y, 0);
  const w = (u: number): number => work(u / all);
  const proportional = equalTime(
    work,
    units.map((u, s) => secondsPerStep[s]! / w(u)),
    units.map(() => 0),
  );
  if (!previous || previous.units.length !== units.length) return scaled(proportional, all);
  const a = units.map((u, s) =>
    u === previous.units[s]
      ? NaN
      : (secondsPerStep[s]! - previous.secondsPerStep[s]!) / (w(u) - w(previous.units[s]!)),
  );
  const c = a.map((x, s) => secondsPerStep[s]! - x * w(units[s]!));
  if (!(a.every((x) => x > 0) && c.every((x) => x >= 0))) return scaled(proportional, all);
  // Two noisy windows can fit a fixed cost that swallows nearly all of a shard's time, and then
  // a move that strips it of almost every unit: past halving or doubling a shard's share in one
  // move, the fit is not trusted.
  const fitted = equalTime(work, a, c);
  const sane = fitted.shares.every(
    (x, s) => x >= units[s]! / all / 2 && x <= (2 * units[s]!) / all,
  );
  return scaled(sane ? fitted : proportional, all);
}

/** Shares x_s (summing to 1) at which every shard's a_s work(x_s) + c_s is the same, and that time. */
function equalTime(
  work: WorkOfShare,
  a: readonly number[],
  c: readonly number[],
): { shares: number[]; secondsPerStep: number } {
  const sharesAt = (tau: number): number[] =>
    a.map((x, s) => shareOf(work, Math.max(0, (tau - c[s]!) / x)));
  let [lo, hi] = [0, Math.max(...a.map((x, s) => x * work(1) + c[s]!))];
  for (let i = 0; i < 100; i++) {
    const mid = (lo + hi) / 2;
    if (sharesAt(mid).reduce((n, x) => n + x, 0) < 1) lo = mid;
    else hi = mid;
  }
  const tau = (lo + hi) / 2;
  return { shares: sharesAt(tau), secondsPerStep: tau };
}

function scaled(
  t: { shares: number[]; secondsPerStep: number },
  all: number,
): { units: number[]; secondsPerStep: number } {
  return { units: t.shares.map((x) => x * all), secondsPerStep: t.secondsPerStep };
}

/**
 * Each shard's busy seconds per step in this generation, measured over at least `windowSteps`
 * steps from `windowSteps` into it (after a move, over twice as many from twice as far in);
 * null until there is such a window. The first steps after a start (peers connecting, code
 * warming up, the first checkpoints written) run slower, and unevenly: a window over them made
 * the slow shard look slower than it is and the move overshoot. After a move the restart's ramp
 * (new connections, a new trainer) lasted about 50 steps of RBM 784-500 PCD-10, on top of what
 * was left of the processes' own first ~100 steps, and a window over it, the slow shard 1.6
 * times its settled pace, brought a second move that undid most of the first; a second move
 * decided later costs little, since the first has already taken most of the gain.
 */
function measure(
  ctx: ControlContext,
  job: StoredJob,
  a: Assignment,
  paces: readonly (ShardPace | null)[],
): number[] | null {
  const rt = ctx.runtime(job.id);
  const every = ctx.settings.rebalance.windowSteps;
  if (paces.some((p) => p === null)) return null;
  const base = rt.paceBase;
  if (!base || base.generation !== a.generation) {
    const moved = rt.movedAt?.generation === a.generation ? rt.movedAt : undefined;
    // what the last move cost: from writing the checkpoints to every shard running again (its
    // first interval, so some of the ramp too)
    if (moved && !moved.timed && paces.every((p) => p!.steps >= every)) {
      rt.moveSeconds = (ctx.now() - moved.at) / 1000;
      moved.timed = true;
    }
    if (paces.every((p) => p!.steps >= (moved ? 2 : 1) * every))
      rt.paceBase = { generation: a.generation, paces: paces.map((p) => ({ ...p! })) };
    return null;
  }
  const span = (rt.movedAt?.generation === a.generation ? 2 : 1) * every;
  const window = paces.map((p, s) => ({
    steps: p!.steps - base.paces[s]!.steps,
    busySeconds: p!.busySeconds - base.paces[s]!.busySeconds,
  }));
  if (window.some((p) => p.steps < span || !(p.busySeconds > 0))) return null;
  return window.map((p) => p.busySeconds / p.steps);
}

/**
 * Looks at a running job's paces (one per shard, null: not known this pass) and rebalances it
 * when they differ enough: decides on a layout and asks every shard for a checkpoint of a step
 * just ahead, then, at the first pass where every shard has written it, moves the job to it.
 * @returns whether the job was reassigned (the pass is done with it)
 */
export async function rebalance(
  ctx: ControlContext,
  job: StoredJob,
  training: ShardedTraining,
  a: Assignment,
  paces: readonly (ShardPace | null)[],
  pool: Pool,
  live: ReadonlyMap<string, WorkerInfo>,
): Promise<boolean> {
  const r = training.rebalancing;
  const settings = ctx.settings.rebalance;
  const rt = ctx.runtime(job.id);
  const done = job.progress?.rebalances ?? 0;
  if (!r || rt.rebalanceOff || done >= settings.maxRebalances) return false;
  const pending = rt.rebalance;
  if (pending && pending.generation === a.generation)
    return moveAt(ctx, job, training, a, pending.plan, pool);
  const refusal = r.refusal(job);
  if (refusal !== null) {
    rt.rebalanceOff = true;
    ctx.log.info({ jobId: job.id }, `no rebalancing: ${refusal}`);
    return false;
  }
  const from = job.progress?.restoredFromStep ?? 0;
  const secondsPerStep = measure(ctx, job, a, paces);
  if (secondsPerStep === null) return false;
  const slowest = Math.max(...secondsPerStep);
  const fastest = Math.min(...secondsPerStep);
  if (slowest <= fastest * (1 + settings.threshold)) return false;
  const current = r.layout(job);
  const units = unitCounts(current);
  const target = targetUnits(units, secondsPerStep, rt.lastPaces, r.work(job));
  let layout: ShardLayout;
  try {
    layout = r.balanced(job, target.units);
  } catch (err) {
    if (!(err instanceof SpecError)) throw err;
    rt.rebalanceOff = true;
    ctx.log.warn({ jobId: job.id, err }, 'no rebalancing: no balanced layout');
    return false;
  }
  if (JSON.stringify(layout) === JSON.stringify(current)) return false;
  const ahead = from + Math.max(...paces.map((p) => p!.steps));
  const total = job.totalSteps ?? 0;
  // Lockstep goes at the slowest shard's pace; balanced, at the predicted common one.
  // A move is worth it only when it saves clearly more than the last one cost.
  const saving = (total - ahead) * (slowest - target.secondsPerStep);
  if (saving < Math.max(settings.minSavingSeconds, 2 * (rt.moveSeconds ?? 0))) return false;
  // When the last move did not make the slowest shard clearly faster, another would not either
  // (the figures are noisy, or something else holds the job back).
  const before = rt.lastPaces ? Math.max(...rt.lastPaces.secondsPerStep) : Infinity;
  if (slowest > before * (1 - settings.threshold / 2)) {
    rt.rebalanceOff = true;
    ctx.log.info(
      { jobId: job.id, secondsPerStep },
      'no more rebalancing: the last one did not pay',
    );
    return false;
  }
  const step = await askForCheckpoints(ctx, job, a, live, ahead, slowest);
  if (step === null) return false;
  const plan: PendingRebalance = {
    step,
    requestedAt: ctx.now(),
    layout,
    before: units,
    after: unitCounts(layout),
    secondsPerStep,
  };
  rt.rebalance = { generation: a.generation, plan };
  rt.lastPaces = { units, secondsPerStep };
  ctx.passWithin((step - ahead) * slowest * 1000);
  ctx.log.info(
    { jobId: job.id, step, secondsPerStep, before: plan.before, after: plan.after },
    'rebalancing: every shard checkpoints the step to move at',
  );
  return false;
}

/**
 * Asks every shard for a checkpoint of a step to move at, and to hold there: far enough ahead of
 * every shard that each has yet to reach it (lockstep shards are within a step of each other;
 * `secondsPerStep` is the job's pace), and not a periodic checkpoint step, whose slots the
 * move's re-cut checkpoints must not shadow. A shard already past it (the pass's figures were
 * older than its pace) refuses: then all are asked again, further ahead (a new request
 * replaces the old and ends a hold at it), a few times. @returns the step, or null
 */
async function askForCheckpoints(
  ctx: ControlContext,
  job: StoredJob,
  a: Assignment,
  live: ReadonlyMap<string, WorkerInfo>,
  ahead: number,
  secondsPerStep: number,
): Promise<number | null> {
  const rt = ctx.runtime(job.id);
  const every = job.spec!.checkpointEverySteps;
  const total = job.totalSteps ?? 0;
  for (let attempt = 0; attempt < 3; attempt++) {
    const margin = rt.moveMarginSeconds ?? MOVE_MARGIN_SECONDS;
    let step = ahead + Math.max(2, Math.ceil(margin / secondsPerStep));
    if (every > 0 && step % every === 0) step++;
    if (step >= total) return null;
    const answers = await Promise.all(
      a.shards.map(async (sh) => {
        const address = live.get(sh.workerId)?.address;
        if (address === undefined) return null;
        try {
          const r = { jobId: job.id, generation: a.generation, step, holdMs: MOVE_HOLD_MS };
          return await ctx.settings.workers.checkpointAt(address, r);
        } catch (err) {
          ctx.log.warn({ jobId: job.id, workerId: sh.workerId, err }, 'CheckpointAt failed');
          return null;
        }
      }),
    );
    if (answers.every((x) => x?.accepted)) return step;
    if (answers.some((x) => x === null)) return null; // not reachable: the next pass sees why
    rt.moveMarginSeconds = 2 * margin;
    ahead = Math.max(ahead, ...answers.map((x) => x!.step + 1));
    ctx.log.info({ jobId: job.id, step }, 'rebalancing: a shard was past the step asked for');
  }
  return null;
}

/**
 * Every shard's checkpoint of step T in its move slot, written under generation `generation`;
 * else null (not all there yet).
 */
async function readMoveCheckpoints(
  ctx: ControlContext,
  job: StoredJob,
  K: number,
  T: number,
  generation: number,
): Promise<Uint8Array[] | null> {
  const list = await ctx.bus.listCheckpoints(job.id);
  const ready = (s: number): boolean =>
    list.some((c) => c.shardId === moveSlot(s) && c.step === T && c.generation === generation);
  for (let s = 0; s < K; s++) if (!ready(s)) return null;
  const old: Uint8Array[] = [];
  for (let s = 0; s < K; s++) {
    const c = await ctx.bus.getCheckpoint(job.id, moveSlot(s));
    if (c === null || c.step !== T) return null;
    old.push(c.data);
  }
  return old;
}

/**
 * Moves the job to the planned layout once every shard has written its checkpoint of the planned
 * step to its move slot: they are re-cut, the old run is fenced off by a new generation before
 * they are written over, and every shard is reassigned to restore them. A move whose
 * checkpoints do not all come (a write refused, a worker that lost the request) is given up
 * after MOVE_WAIT_SECONDS and the job measured and decided on again; after two, rebalancing is
 * off for the job.
 */
async function moveAt(
  ctx: ControlContext,
  job: StoredJob,
  training: ShardedTraining,
  a: Assignment,
  plan: PendingRebalance,
  pool: Pool,
): Promise<boolean> {
  const { bus } = ctx;
  const rt = ctx.runtime(job.id);
  const K = a.shards.length;
  const T = plan.step;
  const old = await readMoveCheckpoints(ctx, job, K, T, a.generation);
  if (old === null) {
    const waited = ctx.now() - plan.requestedAt;
    if (waited < MOVE_WAIT_SECONDS * 1000) {
      if (waited < MOVE_HURRY_MS) ctx.passWithin(MOVE_POLL_MS);
      return false;
    }
    rt.rebalance = undefined;
    rt.lastPaces = undefined;
    rt.movesMissed = (rt.movesMissed ?? 0) + 1;
    if (rt.movesMissed >= 2) rt.rebalanceOff = true;
    ctx.log.warn(
      { jobId: job.id, step: T, missed: rt.movesMissed },
      `rebalancing: not every shard's checkpoint of step ${T} came in ${MOVE_WAIT_SECONDS} s` +
        (rt.rebalanceOff ? ': no more rebalancing' : ': deciding again'),
    );
    return false;
  }
  let recut: Uint8Array[];
  try {
    recut = training.rebalancing!.relayout(old, plan.layout);
  } catch (err) {
    if (!(err instanceof SpecError || err instanceof FormatError)) throw err;
    rt.rebalanceOff = true;
    rt.rebalance = undefined;
    ctx.log.warn({ jobId: job.id, err, step: T }, 'no rebalancing: the checkpoints cannot move');
    return false;
  }
  // Fence: from here on the bus refuses the old generation's writes (its shards draw on in the
  // old layout until they are reassigned).
  const generation = a.generation + 1;
  await bus.setAssignment(job.id, { generation, shards: a.shards });
  const fenced: Assignment = { generation, shards: a.shards };
  rt.rebalance = undefined;
  const reason = `rebalanced at step ${T}: units per shard ${plan.before.join('/')} -> ${plan.after.join('/')}`;
  const keep = new Map(a.shards.map((s) => [s.shardId, s.workerId]));
  const stopAfter = ctx.settings.rebalance.debugStopInMove ?? 0;
  for (let s = 0; s < K; s++) {
    if (stopAfter > 0 && s === stopAfter) process.kill(process.pid, 'SIGKILL');
    if (await bus.putCheckpoint(job.id, moveSlot(s), T, recut[s]!, generation)) continue;
    // Refused (nothing else writes now, so unexpected): put back what was there, old layout.
    for (let u = 0; u < s; u++)
      await bus.putCheckpoint(job.id, moveSlot(u), T, old[u]!, generation);
    await place(ctx, job, training, { previous: fenced, keep, pool, reason: 'rebalance failed' });
    return true;
  }
  if (stopAfter >= K) process.kill(process.pid, 'SIGKILL');
  await recordMove(ctx, job, generation, T, plan, reason);
  const moved = ((await bus.getJob(job.id)) as StoredJob | null) ?? job;
  // place() assigns the generation after the fence
  rt.movedAt = { generation: generation + 1, at: ctx.now() };
  await place(ctx, moved, training, { previous: fenced, keep, pool, reason, restoreFromStep: T });
  return true;
}

/** The new layout on the job record (progress.layout, one more rebalance) and the event. */
async function recordMove(
  ctx: ControlContext,
  job: StoredJob,
  generation: number,
  T: number,
  plan: PendingRebalance,
  reason: string,
): Promise<void> {
  const { bus } = ctx;
  const current = ((await bus.getJob(job.id)) as StoredJob | null) ?? job;
  const progress: ProgressRecord = {
    ...(current.progress ?? {
      step: T,
      totalSteps: job.totalSteps ?? 0,
      epoch: 0,
      shardSteps: [],
      generation,
      restoredFromStep: T,
      recoveries: 0,
    }),
    layout: plan.layout,
    rebalances: (current.progress?.rebalances ?? 0) + 1,
  };
  await bus.updateJobProgress(job.id, progress);
  await ctx.event(job.id, {
    type: 'workers',
    at: ctx.now(),
    kind: 'rebalanced',
    generation,
    restoreFromStep: T,
    before: plan.before,
    after: plan.after,
    secondsPerStep: plan.secondsPerStep,
    message: reason,
  });
  ctx.log.info({ jobId: job.id, step: T, before: plan.before, after: plan.after }, reason);
}
