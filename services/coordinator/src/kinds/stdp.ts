// Kind 'stdp': a dynamic Boltzmann machine learning sequences. With one worker asked for, the
// coordinator trains it on a thread (the DyBM is small); with more, every shard of its units
// runs on a worker, exchanging spikes, and the coordinator joins their exports into one model.
import * as grpc from '@grpc/grpc-js';
import { BusError, type UnitRange } from '@spinmesh/bus';
import {
  DyBM,
  DyBMShard,
  SpecError,
  checkSequenceLimits,
  NO_LIMITS,
  createSequenceModel,
  encodeSequenceModel,
  evaluateSequences,
  loadSequences,
  sequenceJobFrames,
  sequenceShardUnits,
  validateSequenceJob,
  type DyBMSnapshot,
  type Evaluation,
  type SequenceEvaluation,
  type SequenceJobSpec,
  type ShardLayout,
} from '@spinmesh/model';
import { ServerError, UnitType, type ShardAssignment } from '@spinmesh/proto';
import {
  JOB_KINDS,
  exportSlot,
  type JobFields,
  type ProgressRecord,
  type StoredJob,
} from '@spinmesh/cluster';

import type { PlacedShard } from '../assignment.js';
import type { ControlContext } from '../control-context.js';
import { MODEL_SLOT, storeModel } from '../model-store.js';
import { completeWithModel } from './complete.js';
import type { CoordinatorKind, LocalTraining, ShardedTraining } from './kind.js';

export const stdp: CoordinatorKind = {
  contract: JOB_KINDS.stdp,
  plan: async (input, ctx) => {
    const spec = validateSequenceJob(input);
    if (spec.workers === 1 && !ctx.settings.runner)
      throw new SpecError('spec.rule', "'stdp' jobs need a coordinator that runs model threads");
    const seqs = await loadSequences(spec, ctx.settings.access);
    const estimate = checkSequenceLimits(
      spec,
      ctx.settings.limits,
      seqs.reduce((n, q) => n + q.steps, 0),
    );
    const K = spec.workers;
    // One worker: rounds on a thread here. More: every frame of every episode on the workers.
    const frames = sequenceJobFrames(spec, seqs);
    const fields: JobFields = {
      name: spec.name,
      sequence: spec,
      workers: K,
      layout: Array.from({ length: K }, (_, s) => ({
        x: sequenceShardUnits(spec.network.dybm.units, K, s),
      })),
      rows: seqs.length,
      stepsPerEpoch: K === 1 ? 1 : frames / spec.epochs,
      totalSteps: K === 1 ? spec.epochs : frames,
    };
    return { fields, bytes: estimate.bytes, logged: { name: spec.name, rounds: spec.epochs } };
  },
  estimatedBytes: (job) =>
    job.sequence ? checkSequenceLimits(job.sequence, NO_LIMITS, 0).bytes : 0,
  training: (job) => ((job.workers ?? 1) === 1 ? onThread : sharded),
  modelFiles: (job, bytes, npy) => {
    if (npy)
      throw new ServerError(
        grpc.status.FAILED_PRECONDITION,
        `job '${job.id}' holds a sequence model: it comes as one JSON file (MODEL_FORMAT_SMM), not .npy arrays`,
      );
    return [{ file: `${job.sequence!.name}.dybm.json`, bytes }];
  },
};

/** Shard s's units: one range of the DyBM's units, as layer 0. */
function unitsOf(job: StoredJob, s: number): UnitRange {
  const [start, end] = job.layout![s]!['x']!;
  return { layer: 0, start, end };
}

const sharded: ShardedTraining = {
  on: 'workers',
  units: (job, s) => [unitsOf(job, s)],
  assignment: (job, args) =>
    buildSequenceAssignment({
      ...args,
      jobId: job.id,
      spec: job.sequence!,
      layout: job.layout!,
    }),
  finish: finishFromShards,
};

const onThread: LocalTraining = {
  on: 'coordinator',
  start: async (job, ctx) => {
    const tr = await ctx.bus.transitionJob(job.id, ['queued'], 'running', { reason: null });
    if (tr.ok) trainOnThread(tr.record as StoredJob, ctx);
  },
  watch: async (job, ctx) => {
    // Running, but not on this coordinator's threads: it restarted. Train again from the start.
    if (!ctx.localRuns.has(job.id)) trainOnThread(job, ctx);
  },
};

/**
 * Every shard has written its export: one DyBM from their units, evaluated (recall,
 * log-likelihood) and stored as the job's model.
 */
async function finishFromShards(job: StoredJob, _a: unknown, ctx: ControlContext): Promise<void> {
  const spec = job.sequence!;
  const K = job.workers ?? 1;
  const total = job.totalSteps ?? 0;
  let evaluation: Evaluation;
  let bytes: Uint8Array;
  try {
    const model = createSequenceModel(spec);
    for (let s = 0; s < K; s++) {
      const c = await ctx.bus.getCheckpoint(job.id, exportSlot(s));
      if (c === null || c.step !== total) return; // not all there yet: the next pass sees it
      const part = DyBM.fromJSON(JSON.parse(Buffer.from(c.data).toString('utf8')) as DyBMSnapshot);
      const { start, end } = unitsOf(job, s);
      new DyBMShard(
        part,
        Array.from({ length: end - start }, (_, k) => start + k),
      ).exportInto(model);
    }
    const seqs = await loadSequences(spec, ctx.settings.access);
    const e = evaluateSequences(model, seqs, spec.evaluate.cue, spec.epochs);
    evaluation = sequenceEvaluation(e);
    bytes = encodeSequenceModel(model, spec, e);
  } catch (err) {
    if (err instanceof BusError) throw err;
    await ctx.fail(job, `assembling the sequence model failed: ${(err as Error).message}`);
    return;
  }
  await completeWithModel(ctx, job, {
    step: total,
    generation: job.progress?.generation ?? 1,
    bytes,
    evaluation,
    logged: { evaluation },
  });
}

/**
 * Trains a running sequence job on a thread (the DyBM is small; its sharded protocol is tested
 * in-process), then stores the model, publishes the evaluations and completes the job.
 */
function trainOnThread(job: StoredJob, ctx: ControlContext): void {
  const runner = ctx.settings.runner!;
  const spec = job.sequence!;
  const run = runner.runDetached({ kind: 'train-sequence', spec });
  ctx.localRuns.set(job.id, run);
  ctx.log.info({ jobId: job.id, rounds: spec.epochs }, 'sequence job training on a thread');
  const done = async (): Promise<void> => {
    let out;
    try {
      out = await run.result;
    } catch (err) {
      if (ctx.stopped) return; // shutting down: the job stays running for the next coordinator
      const j = await ctx.bus.getJob(job.id);
      if (j?.state === 'running')
        await ctx.fail(job, `training the sequence job failed: ${(err as Error).message}`);
      return;
    }
    if (out.kind !== 'train-sequence') return;
    const { model, evaluations } = out.result;
    const rounds = evaluations.at(-1)?.epoch ?? spec.epochs;
    for (const e of evaluations) {
      const evaluation = sequenceEvaluation(e);
      await ctx.event(job.id, { type: 'evaluation', at: ctx.now(), step: e.epoch, evaluation });
    }
    await storeModel(ctx.bus, job.id, rounds, model);
    await ctx.bus.updateJobProgress(job.id, {
      step: rounds,
      totalSteps: spec.epochs,
      epoch: rounds,
      shardSteps: [rounds],
      generation: 0,
      restoredFromStep: 0,
      recoveries: 0,
    } satisfies ProgressRecord);
    const last = evaluations.at(-1);
    const tr = await ctx.bus.transitionJob(job.id, ['running'], 'completed', {
      ...(last ? { evaluation: sequenceEvaluation(last) } : {}),
      model: { shard: MODEL_SLOT, step: rounds, bytes: model.length },
    });
    if (tr.ok) ctx.log.info({ jobId: job.id, rounds, evaluation: last }, 'job completed');
  };
  void done()
    .catch((err: unknown) =>
      ctx.log.warn({ jobId: job.id, err }, 'sequence job bookkeeping failed'),
    )
    .finally(() => ctx.localRuns.delete(job.id));
}

/** A sequence job's figures in the job record's evaluation (the Evaluation message's fields). */
function sequenceEvaluation(e: SequenceEvaluation): Evaluation {
  const out: Record<string, number> = { epoch: e.epoch };
  if (e.recallExact !== undefined) out['recallExact'] = e.recallExact;
  if (e.recallFrames !== undefined) out['recallFrames'] = e.recallFrames;
  if (e.rmse !== undefined) out['rmse'] = e.rmse;
  if (e.logLikelihood !== undefined) out['sequenceLogLikelihood'] = e.logLikelihood;
  return out as unknown as Evaluation;
}

/**
 * The ShardAssignment of one shard of a sequence job (rule 'stdp'): the DyBM's units as one
 * bernoulli layer 'x' without connections (every unit has synapses from every unit, so every
 * other shard is a peer), its range of them, the staleness, no checkpoints.
 */
function buildSequenceAssignment(args: {
  jobId: string;
  generation: number;
  spec: SequenceJobSpec;
  layout: ShardLayout;
  shards: readonly PlacedShard[];
  shardId: number;
}): ShardAssignment {
  const { spec, layout, shardId } = args;
  const range = (s: number): UnitRange => ({
    layer: 0,
    start: layout[s]!['x']![0],
    end: layout[s]!['x']![1],
  });
  return {
    jobId: args.jobId,
    generation: args.generation,
    shardId,
    shardCount: layout.length,
    network: {
      layers: [
        {
          name: 'x',
          size: spec.network.dybm.units,
          units: UnitType.UNIT_TYPE_BERNOULLI,
          lateral: false,
        },
      ],
      connections: [],
    },
    units: [range(shardId)],
    peers: args.shards
      .filter((p) => p.shardId !== shardId)
      .map((p) => ({ shardId: p.shardId, address: p.address, units: [range(p.shardId)] })),
    staleness: spec.staleness,
    checkpointEverySteps: 0,
    restoreFromStep: 0,
    seed: spec.seed,
  };
}
