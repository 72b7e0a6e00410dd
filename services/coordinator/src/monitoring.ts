// Monitoring: each pass looks at every running job. A job its kind trains on the coordinator
// is the kind's to watch; a sharded one has every shard's worker polled (Status), its progress
// aggregated, and is finished when every shard is done, recovered when a worker is lost, or
// rebalanced when its workers run at different speeds.
import type { Assignment, WorkerInfo } from '@spinmesh/bus';
import { WorkerState, type WorkerStatus } from '@spinmesh/proto';
import type { StoredJob } from '@spinmesh/cluster';

import type { ControlContext, Pool } from './control-context.js';
import { kindOf } from './kinds/index.js';
import { place } from './placement.js';
import { lastRollback } from './records.js';
import { rebalance, type ShardPace } from './rebalance.js';
import { recover, type Problem } from './recovery.js';

/** What the polls of one pass found. */
interface Polled {
  /** Steps per shard. */
  steps: number[];
  /** Fractions of each polled shard's run spent computing and waiting for peers. */
  times: { compute: number; wait: number }[];
  /** Per shard: its pace since its run started (null: not polled, or not running yet). */
  paces: (ShardPace | null)[];
  problems: Map<number, Problem>;
}

/** A running job: check every shard's worker, aggregate progress, finish or recover. */
export async function monitor(
  ctx: ControlContext,
  job: StoredJob,
  a: Assignment | null,
  live: Map<string, WorkerInfo>,
  pool: Pool,
): Promise<void> {
  const training = kindOf(job).training(job);
  if (training.on === 'coordinator') {
    await training.watch(job, ctx);
    return;
  }
  const K = job.workers ?? 1;
  const total = job.totalSteps ?? 0;
  if (!a) {
    // The coordinator stopped between starting the job and writing its assignment.
    await place(ctx, job, training, {
      previous: null,
      keep: new Map(),
      pool,
      reason: 'job had no assignment',
    });
    return;
  }
  const { shardState } = ctx.settings;
  const finished = await shardState.finished(ctx.bus, job.id, K, total, lastRollback(job));
  if (finished.size === K) {
    // Evaluation steps the shards passed since the last pass, whose parameters are still on the
    // bus, come before the final evaluation, as in one process: a fast job's last evaluation
    // interval can pass between two passes.
    let current = job;
    while (await training.duringTraining?.(current, ctx)) {
      const fresh = (await ctx.bus.getJob(job.id)) as StoredJob | null;
      if (fresh === null) return;
      current = fresh;
    }
    await training.finish(current, a, ctx);
    return;
  }
  const polled: Polled = {
    steps: new Array<number>(K).fill(0),
    times: [],
    paces: new Array<ShardPace | null>(K).fill(null),
    problems: new Map(),
  };
  await Promise.all(
    a.shards.map(async (s) => {
      if (finished.has(s.shardId)) polled.steps[s.shardId] = total;
      else await pollShard(ctx, job, a, s, live.get(s.workerId), polled);
    }),
  );
  if (polled.problems.size > 0) {
    await recover(ctx, job, training, a, polled.problems, pool);
    return;
  }
  await ctx.progress(job, polled.steps, a.generation, polled.times);
  if (await rebalance(ctx, job, training, a, polled.paces, pool, live)) return;
  await training.duringTraining?.(job, ctx);
}

/** Polls one unfinished shard's worker, noting its step, its timing or what is wrong with it. */
async function pollShard(
  ctx: ControlContext,
  job: StoredJob,
  a: Assignment,
  s: Assignment['shards'][number],
  info: WorkerInfo | undefined,
  out: Polled,
): Promise<void> {
  const w = s.workerId;
  const rt = ctx.runtime(job.id);
  const problem = (reason: string, replace: boolean, address?: string): void => {
    out.problems.set(s.shardId, {
      workerId: w,
      reason,
      replace,
      ...(address !== undefined ? { address } : {}),
    });
  };
  if (!info) return problem('its bus registration expired (no heartbeat)', true);
  if (rt.replace.has(w)) return problem('it did not take its assignment', true, info.address);
  let st: WorkerStatus;
  const now = ctx.now();
  try {
    st = await ctx.settings.workers.status(info.address);
    rt.failingSince.delete(w);
  } catch (err) {
    const since = rt.failingSince.get(w) ?? now;
    rt.failingSince.set(w, since);
    if (now - since >= ctx.settings.heartbeatTimeoutMs)
      problem(
        `it has not answered Status for ${now - since} ms (${(err as Error).message})`,
        true,
        info.address,
      );
    out.steps[s.shardId] = job.progress?.shardSteps?.[s.shardId] ?? 0;
    return;
  }
  if (st.jobId !== job.id || st.generation !== a.generation)
    return problem(
      st.jobId === ''
        ? `it holds no job (expected generation ${a.generation})`
        : `it holds job ${st.jobId} generation ${st.generation} (expected ${job.id} generation ${a.generation})`,
      false,
    );
  if (st.state === WorkerState.WORKER_STATE_FAILED) return problem(`it failed: ${st.error}`, false);
  out.steps[s.shardId] = st.step;
  if (st.runSeconds > 0) {
    out.times.push({
      compute: st.computeSeconds / st.runSeconds,
      wait: st.waitSeconds / st.runSeconds,
    });
    // Its time not spent waiting for peers: a straggler's is longer, whatever slows it down.
    const steps = st.step - (job.progress?.restoredFromStep ?? 0);
    out.paces[s.shardId] = { steps, busySeconds: st.runSeconds - st.waitSeconds };
  }
}
