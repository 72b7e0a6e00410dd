// Recovery: when workers of a running job are lost or go astray, every shard is reassigned
// under a new generation from the last common checkpoint, up to maxRecoveries times.
import type { Assignment } from '@spinmesh/bus';
import type { StoredJob } from '@spinmesh/cluster';

import type { ControlContext, Pool } from './control-context.js';
import type { ShardedTraining } from './kinds/index.js';
import { place } from './placement.js';

/** Something wrong with one shard's worker, found by the monitor. */
export interface Problem {
  workerId: string;
  reason: string;
  /** The worker is gone or unusable: give its shard to another one. Else it keeps its shard. */
  replace: boolean;
  /** Its address, when it is still registered. */
  address?: string;
}

/** Workers of a running job were lost or went astray: reassign every shard. */
export async function recover(
  ctx: ControlContext,
  job: StoredJob,
  training: ShardedTraining,
  a: Assignment,
  problems: Map<number, Problem>,
  pool: Pool,
): Promise<void> {
  const { settings } = ctx;
  const recoveries = (job.progress?.recoveries ?? 0) + 1;
  const lines: string[] = [];
  for (const [shard, p] of [...problems.entries()].sort(([x], [y]) => x - y)) {
    const message = `shard ${shard}: worker ${p.workerId} ${p.replace ? 'is lost' : 'must start over'}: ${p.reason}`;
    lines.push(message);
    ctx.log.warn({ jobId: job.id, shard, workerId: p.workerId, generation: a.generation }, message);
    await ctx.event(job.id, {
      type: 'workers',
      at: ctx.now(),
      kind: 'worker-lost',
      generation: a.generation,
      workerId: p.workerId,
      message,
    });
  }
  const rt = ctx.runtime(job.id);
  for (const p of problems.values()) {
    rt.failingSince.delete(p.workerId);
    rt.replace.delete(p.workerId);
    // A replaced worker may still be alive behind a broken link: tell it to stop, if it hears.
    if (p.replace && p.address !== undefined) {
      const address = p.address;
      void settings.workers
        .stop(address, job.id)
        .catch(() => undefined)
        .finally(() => settings.workers.forget(address));
    }
  }
  if (recoveries > settings.maxRecoveries) {
    await ctx.fail(
      job,
      `gave up after ${settings.maxRecoveries} reassignments; last failure: ${lines.join('; ')}`,
    );
    return;
  }
  const keep = new Map<number, string>();
  for (const s of a.shards) {
    const p = problems.get(s.shardId);
    if (!p || !p.replace) keep.set(s.shardId, s.workerId);
  }
  settings.metrics?.jobRecovered();
  await place(
    ctx,
    job,
    training,
    { previous: a, keep, pool, reason: lines.join('; ') },
    recoveries,
  );
}
