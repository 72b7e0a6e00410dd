// Scheduling: which workers are free this pass, and starting a queued job: by its kind on the
// coordinator, or on enough idle live workers once no job ahead of it waits.
import { BusError, type WorkerInfo } from '@spinmesh/bus';
import { SpecError } from '@spinmesh/model';
import { WorkerState } from '@spinmesh/proto';
import type { StoredJob } from '@spinmesh/cluster';

import type { ControlContext, Pool } from './control-context.js';
import { kindOf } from './kinds/index.js';
import { place } from './placement.js';
import { recordProblem } from './record-shape.js';

/** States of a worker that holds a job (and must be stopped when it is not that job's). */
const STOP_STATES = new Set([
  WorkerState.WORKER_STATE_LOADING,
  WorkerState.WORKER_STATE_RUNNING,
  WorkerState.WORKER_STATE_FAILED,
  WorkerState.WORKER_STATE_DONE,
]);

/**
 * The live workers that hold no shard of a running job and say they are idle. A worker that
 * still runs a job it no longer belongs to (cancelled, requeued, reassigned away) is stopped.
 */
export async function idleWorkers(
  ctx: ControlContext,
  live: Map<string, WorkerInfo>,
  busy: Set<string>,
): Promise<Pool> {
  const { workers } = ctx.settings;
  const free = [...live.values()].filter((w) => !busy.has(w.id));
  const statuses = await Promise.all(free.map((w) => workers.status(w.address).catch(() => null)));
  const pool: Pool = [];
  free.forEach((w, i) => {
    const st = statuses[i];
    if (!st) return;
    if (
      st.state === WorkerState.WORKER_STATE_IDLE ||
      (st.jobId === '' && st.state !== WorkerState.WORKER_STATE_STOPPING)
    ) {
      pool.push(w);
    } else if (st.jobId !== '' && STOP_STATES.has(st.state)) {
      ctx.log.info(
        { workerId: w.id, jobId: st.jobId, generation: st.generation },
        'stopping a worker that runs a job it is not assigned to',
      );
      void workers.stop(w.address, st.jobId).catch(() => undefined);
    }
  });
  return pool.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/**
 * startQueued(), except that a record that cannot start (malformed: not written by SubmitJob) is
 * failed with the reason and counts as started: left queued, it would hold every job behind it.
 * Bus errors still propagate, to be retried at the next pass. @returns whether it started
 */
export async function startOrReject(
  ctx: ControlContext,
  job: StoredJob,
  pool: Pool,
  ahead: StoredJob | null,
): Promise<boolean> {
  const problem = recordProblem(job);
  if (problem !== null) {
    await ctx.fail(job, `the job record is malformed: ${problem}`);
    return true;
  }
  try {
    return await startQueued(ctx, job, pool, ahead);
  } catch (err) {
    if (err instanceof BusError) throw err;
    ctx.log.warn({ jobId: job.id, err }, 'job could not be started');
    const why = err instanceof SpecError ? err.message.slice(0, 300) : 'internal error';
    await ctx.fail(job, `the job could not be started: ${why}`);
    return true;
  }
}

/**
 * A queued job: start it when enough idle workers are live and no job ahead of it waits, else
 * say what it waits for. @returns whether it started
 */
async function startQueued(
  ctx: ControlContext,
  job: StoredJob,
  pool: Pool,
  ahead: StoredJob | null,
): Promise<boolean> {
  const training = kindOf(job).training(job);
  if (training.on === 'coordinator') {
    await training.start(job, ctx);
    return true;
  }
  const K = job.workers ?? 1;
  const rt = ctx.runtime(job.id);
  if (pool.length < K || ahead !== null) {
    await announceWaiting(ctx, job, K, pool.length, ahead);
    return false;
  }
  const tr = await ctx.bus.transitionJob(job.id, ['queued'], 'running', { reason: null });
  if (!tr.ok) return true;
  rt.lastWaitingKey = '';
  const previous = await ctx.bus.getAssignment(job.id);
  await place(ctx, tr.record as StoredJob, training, {
    previous,
    keep: new Map(),
    pool,
    reason: 'job started',
  });
  return true;
}

/** A 'waiting' event, when what the job waits for changed since the last one. */
async function announceWaiting(
  ctx: ControlContext,
  job: StoredJob,
  K: number,
  available: number,
  ahead: StoredJob | null,
): Promise<void> {
  const rt = ctx.runtime(job.id);
  const key = `${K}/${available}/${ahead?.id ?? ''}`;
  if (key === rt.lastWaitingKey) return;
  rt.lastWaitingKey = key;
  const workers = `${K} idle live worker${K === 1 ? '' : 's'} (${available} available)`;
  await ctx.event(job.id, {
    type: 'workers',
    at: ctx.now(),
    kind: 'waiting',
    generation: 0,
    needed: K,
    available,
    message:
      ahead === null
        ? `waiting for ${workers}`
        : `waiting for ${workers} behind job ${ahead.id}, first in the queue`,
  });
  ctx.log.info({ jobId: job.id, needed: K, available, ahead: ahead?.id }, 'job waits for workers');
}
