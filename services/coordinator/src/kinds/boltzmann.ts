// Kind 'boltzmann': a Boltzmann machine trained in shards, one per worker. The coordinator
// places the shards, evaluates from their checkpoints during training at the epochs one process
// would, and assembles, evaluates and stores the model from their final exports.
import { BusError } from '@spinmesh/bus';
import {
  assemble,
  balancedLayout,
  encodeModel,
  evaluateNetwork,
  jobSpecFromJson,
  jobSpecToJson,
  relayout,
  type Evaluation,
} from '@spinmesh/model';
import { JOB_KINDS, currentLayout, evaluationEverySteps, type StoredJob } from '@spinmesh/cluster';

import { buildAssignment, shardRanges } from '../assignment.js';
import type { ControlContext } from '../control-context.js';
import { perWeightShare, planShardedJob } from './boltzmann-plan.js';
import { lastRollback, type EvaluationEvent } from '../records.js';
import { completeWithModel } from './complete.js';
import type { ShardedTraining } from './kind.js';
import { OWNED_WORK, replicatedWork } from '../rebalance.js';
import {
  finite,
  networkJobBytes,
  networkModelFiles,
  planNetworkJob,
  type NetworkKind,
} from './network-job.js';

export const boltzmann: NetworkKind = {
  contract: JOB_KINDS.boltzmann,
  planNetwork: planShardedJob,
  plan: (input, ctx) => planNetworkJob(input, ctx, planShardedJob),
  estimatedBytes: networkJobBytes,
  training: () => sharded,
  modelFiles: networkModelFiles,
};

const sharded: ShardedTraining = {
  on: 'workers',
  units: (job, s) => shardRanges(job.spec!.network, currentLayout(job)!, s),
  assignment: (job, args) =>
    buildAssignment({
      ...args,
      jobId: job.id,
      spec: jobSpecFromJson(job.spec!),
      layout: currentLayout(job)!,
    }),
  rebalancing: {
    refusal: (job) => {
      const spec = job.spec!;
      if ((job.workers ?? 1) < 2) return 'it runs in one shard';
      if (spec.staleness !== 0)
        return 'it is not lockstep (staleness 0): its asynchronous state belongs to its layout';
      if (!(spec.checkpointEverySteps > 0))
        return 'it writes no checkpoints (checkpointEverySteps 0)';
      return null;
    },
    layout: (job) => currentLayout(job)!,
    work: (job) =>
      job.spec!.tiles === 'owned'
        ? OWNED_WORK
        : replicatedWork(perWeightShare(jobSpecFromJson(job.spec!))),
    balanced: (job, speeds) =>
      balancedLayout(job.spec!.network, speeds, job.spec!.train.productBlock ?? 0),
    relayout: (checkpoints, layout) => relayout(checkpoints, layout),
  },
  duringTraining: evaluateDuringTraining,
  finish: async (job, a, ctx) => {
    const spec = jobSpecFromJson(job.spec!);
    const total = job.totalSteps ?? 0;
    const { bus, settings } = ctx;
    let evaluation: Evaluation;
    let bytes: Uint8Array;
    let seconds: number;
    const t0 = performance.now();
    try {
      const exports = await settings.shardState.exports(bus, job.id, job.workers ?? 1, total);
      if (!exports) return; // an export went missing under us (a rollback): the next pass sees it
      const net = assemble(spec.network, settings.kernels, exports);
      const { train, test } = await ctx.dataOf(job);
      evaluation = finite(
        evaluateNetwork(net, test, spec.evaluate, {
          seed: spec.seed,
          train,
          epoch: spec.epochs,
          dataSpec: spec.data,
        }),
      );
      seconds = (performance.now() - t0) / 1000;
      bytes = encodeModel(net, {
        training: {
          spec: jobSpecToJson(spec),
          epoch: spec.epochs,
          step: total,
          jobId: job.id,
          workers: job.workers,
          generation: a.generation,
        },
        meta: { jobId: job.id, assembledFrom: `${job.workers} shards` },
      });
    } catch (err) {
      // The bus being away is worth another try; bytes or a spec that cannot make a model are not.
      if (err instanceof BusError) throw err;
      await ctx.fail(job, `assembling the model failed: ${(err as Error).message}`);
      return;
    }
    await completeWithModel(ctx, job, {
      step: total,
      generation: a.generation,
      bytes,
      evaluation,
      seconds,
      logged: { evaluation, modelBytes: bytes.length },
    });
  },
};

/**
 * Evaluates a running job at the next multiple of spec.evaluate.every epochs of which every
 * shard has left its parameters on the bus (an evaluation snapshot, or a checkpoint of that
 * step), as one process evaluates at exactly those epochs (the final evaluation comes from the
 * exports). Best effort: a step whose snapshots were replaced before this pass got to them is
 * passed over, never evaluated at another step.
 */
async function evaluateDuringTraining(job: StoredJob, ctx: ControlContext): Promise<boolean> {
  const spec = jobSpecFromJson(job.spec!);
  const { bus, settings } = ctx;
  const perEpoch = Math.max(1, job.stepsPerEpoch ?? 1);
  const K = job.workers ?? 1;
  const every = evaluationEverySteps(spec.evaluate.every ?? 1, spec.epochs, perEpoch);
  if (every === 0) return false;
  const last = job.progress?.evaluation?.epoch ?? 0;
  const step = await settings.shardState.evaluationStep(
    bus,
    job.id,
    K,
    { every, after: last * perEpoch, total: job.totalSteps ?? 0 },
    lastRollback(job),
  );
  if (step === 0) return false;
  const epoch = step / perEpoch;
  let evaluation: Evaluation;
  const t0 = performance.now();
  try {
    const { train, test } = await ctx.dataOf(job);
    const exports = await settings.shardState.checkpointExports(
      bus,
      {
        jobId: job.id,
        spec,
        layout: currentLayout(job)!,
        totalSteps: job.totalSteps ?? 0,
        kernels: settings.kernels,
        data: train,
      },
      step,
    );
    if (!exports) return false;
    const net = assemble(spec.network, settings.kernels, exports);
    evaluation = finite(
      evaluateNetwork(net, test, spec.evaluate, {
        seed: spec.seed,
        train,
        epoch,
        dataSpec: spec.data,
      }),
    );
  } catch (err) {
    if (err instanceof BusError) throw err;
    ctx.log.warn({ jobId: job.id, err, step }, 'evaluation from checkpoints failed');
    return false;
  }
  settings.metrics?.evaluation(job.id, evaluation, (performance.now() - t0) / 1000);
  const e: EvaluationEvent = { type: 'evaluation', at: ctx.now(), step, evaluation };
  await ctx.event(job.id, e);
  const current = (await bus.getJob(job.id)) as StoredJob | null;
  ctx.log.info({ jobId: job.id, epoch, evaluation }, 'evaluated from checkpoints');
  // (the progress records the step evaluated: without it, the next call would find it again)
  if (!current?.progress) return false;
  await bus.updateJobProgress(job.id, { ...current.progress, evaluation });
  return true;
}
