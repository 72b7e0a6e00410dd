// The end of a sharded job, whatever its kind: its model stored, its last progress and
// evaluation published, the job completed and its workers stopped.
import type { Evaluation } from '@spinmesh/model';
import type { StoredJob } from '@spinmesh/cluster';

import type { ControlContext } from '../control-context.js';
import { MODEL_SLOT, storeModel } from '../model-store.js';

export async function completeWithModel(
  ctx: ControlContext,
  job: StoredJob,
  done: {
    /** The step the model was trained to (every shard's last). */
    step: number;
    generation: number;
    bytes: Uint8Array;
    evaluation: Evaluation;
    /** Seconds the evaluation took, for the metrics (absent: not reported). */
    seconds?: number;
    /** Figures for the 'job completed' log line. */
    logged: Record<string, unknown>;
  },
): Promise<void> {
  const { step, evaluation, bytes } = done;
  await storeModel(ctx.bus, job.id, step, bytes);
  if (done.seconds !== undefined)
    ctx.settings.metrics?.evaluation(job.id, evaluation, done.seconds);
  // The record a finished job keeps says total/total: the last one the polls wrote may be
  // older than the shards' last steps (progress is written at most every progressIntervalMs).
  await ctx.progress(job, new Array<number>(job.workers ?? 1).fill(step), done.generation, []);
  await ctx.event(job.id, { type: 'evaluation', at: ctx.now(), step, evaluation });
  const tr = await ctx.bus.transitionJob(job.id, ['running'], 'completed', {
    evaluation,
    model: { shard: MODEL_SLOT, step, bytes: bytes.length },
  });
  if (tr.ok) ctx.log.info({ jobId: job.id, ...done.logged }, 'job completed');
  await ctx.stopWorkersOf(job.id);
}
