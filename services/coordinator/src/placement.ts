// Placement: every shard of a job on a worker under a new assignment generation, restoring the
// newest step all shards have checkpointed; or, with too few workers, the job back in the queue.
import type { Assignment, WorkerInfo } from '@spinmesh/bus';
import type { ProgressRecord, StoredJob } from '@spinmesh/cluster';

import type { PlacedShard } from './assignment.js';
import type { ControlContext, Pool } from './control-context.js';
import type { ShardedTraining } from './kinds/index.js';
import { lastRollback } from './records.js';

/**
 * Gives every shard a worker (the kept ones keep theirs, the others come from the pool),
 * under a new generation, each restoring the newest step all shards have checkpointed. With
 * too few workers the job goes back to the queue instead.
 */
export async function place(
  ctx: ControlContext,
  job: StoredJob,
  training: ShardedTraining,
  at: {
    previous: Assignment | null;
    keep: Map<number, string>;
    pool: Pool;
    reason: string;
    /** The step to restore (rebalance.ts); default: the newest step all shards checkpointed. */
    restoreFromStep?: number;
  },
  recoveries = job.progress?.recoveries ?? 0,
): Promise<void> {
  const { bus, settings } = ctx;
  const { previous, keep, pool, reason } = at;
  const K = job.workers ?? 1;
  const liveById = new Map((await bus.listWorkers()).map((w) => [w.id, w]));
  for (const [shard, w] of keep) if (!liveById.has(w)) keep.delete(shard);
  const need = K - keep.size;
  if (pool.length < need) {
    await requeue(ctx, job, previous, keep, liveById, { need, available: pool.length, reason });
    return;
  }
  const shards: PlacedShard[] = [];
  for (let s = 0; s < K; s++) {
    const kept = keep.get(s);
    const info = kept !== undefined ? liveById.get(kept)! : pool.shift()!;
    shards.push({ shardId: s, workerId: info.id, address: info.address });
  }
  const generation = (previous?.generation ?? 0) + 1;
  // The job record as it is now: its progress names the last rollback, whose abandoned run's
  // checkpoints must not be mixed with the next ones.
  const current = (await bus.getJob(job.id)) as StoredJob | null;
  const latest = current ?? job;
  // a rebalance the coordinator did not record (it stopped) may have re-cut the newest step
  const layout = training.rebalancing?.layout(latest);
  const restoreFromStep =
    at.restoreFromStep ??
    (await settings.shardState.restoreStep(bus, job.id, K, lastRollback(latest), layout));
  await bus.setAssignment(job.id, {
    generation,
    shards: shards.map((p) => ({
      shardId: p.shardId,
      workerId: p.workerId,
      units: training.units(job, p.shardId),
    })),
  });
  const progress: ProgressRecord = {
    step: restoreFromStep,
    totalSteps: job.totalSteps ?? 0,
    epoch: Math.floor(restoreFromStep / Math.max(1, job.stepsPerEpoch ?? 1)),
    shardSteps: new Array<number>(K).fill(restoreFromStep),
    ...(job.progress?.evaluation ? { evaluation: job.progress.evaluation } : {}),
    generation,
    restoredFromStep: restoreFromStep,
    recoveries,
    ...rebalanced(current ?? job),
  };
  await bus.updateJobProgress(job.id, progress);
  settings.metrics?.jobProgress(job.id, progress);
  const message =
    `generation ${generation}: ` +
    shards.map((p) => `shard ${p.shardId} on ${p.workerId}`).join(', ') +
    (restoreFromStep > 0 ? `, restoring step ${restoreFromStep}` : ', from the start') +
    ` (${reason})`;
  await ctx.event(job.id, {
    type: 'workers',
    at: ctx.now(),
    kind: 'assigned',
    generation,
    shards,
    restoreFromStep,
    message,
  });
  ctx.log.info({ jobId: job.id, generation, restoreFromStep, shards }, 'shards assigned');
  await assignAll(ctx, job, training, { generation, shards, restoreFromStep });
}

/** The layout of the job's last rebalance and the count of them, which a new generation keeps. */
function rebalanced(job: StoredJob): Pick<ProgressRecord, 'layout' | 'rebalances'> {
  const p = job.progress;
  return {
    ...(p?.layout ? { layout: p.layout } : {}),
    ...(p?.rebalances ? { rebalances: p.rebalances } : {}),
  };
}

/** Sends every shard's assignment; a worker that refuses it is replaced at the next pass. */
async function assignAll(
  ctx: ControlContext,
  job: StoredJob,
  training: ShardedTraining,
  placed: { generation: number; shards: PlacedShard[]; restoreFromStep: number },
): Promise<void> {
  const rt = ctx.runtime(job.id);
  rt.lastProgressKey = '';
  await Promise.all(
    placed.shards.map(async (p) => {
      try {
        await ctx.settings.workers.assign(
          p.address,
          training.assignment(job, { ...placed, shardId: p.shardId }),
        );
      } catch (err) {
        rt.replace.add(p.workerId);
        ctx.log.warn(
          { jobId: job.id, err, workerId: p.workerId, shard: p.shardId },
          'Assign failed',
        );
      }
    }),
  );
}

/** Too few workers to go on: stop the rest and put the job back in the queue. */
async function requeue(
  ctx: ControlContext,
  job: StoredJob,
  previous: Assignment | null,
  keep: Map<number, string>,
  live: Map<string, WorkerInfo>,
  why: { need: number; available: number; reason: string },
): Promise<void> {
  const { need, available, reason } = why;
  const message =
    `back to the queue: ${need} shard${need === 1 ? '' : 's'} without a worker and ` +
    `${available} idle live worker${available === 1 ? '' : 's'} (${reason})`;
  await ctx.event(job.id, {
    type: 'workers',
    at: ctx.now(),
    kind: 'requeued',
    generation: previous?.generation ?? 0,
    needed: need,
    available,
    message,
  });
  const tr = await ctx.bus.transitionJob(job.id, ['running'], 'queued', { reason: message });
  ctx.log.warn({ jobId: job.id }, message);
  if (!tr.ok) return;
  for (const w of keep.values()) {
    const info = live.get(w);
    if (info) void ctx.settings.workers.stop(info.address, job.id).catch(() => undefined);
  }
}
