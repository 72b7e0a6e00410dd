// Kind 'hebbian': Hopfield storage in one look. No workers and no sampling: the coordinator
// stores the patterns itself (L = (1/n) P^T P, one GEMM), evaluates, stores the model and
// completes the job, all when the job starts.
import { BusError } from '@spinmesh/bus';
import {
  jobSpecFromJson,
  jobSpecToJson,
  createHopfield,
  encodeModel,
  evaluateNetwork,
  storeHebbian,
  SpecError,
  type Dataset,
  type Evaluation,
  type JobSpec,
  type ShardLayout,
} from '@spinmesh/model';
import { JOB_KINDS, type ProgressRecord, type StoredJob } from '@spinmesh/cluster';

import type { ControlContext } from '../control-context.js';
import { MODEL_SLOT, storeModel } from '../model-store.js';
import { loadOrExplain, loadUnconfined, type DataLoader, type JobPlan } from '../plan.js';
import type { LocalTraining } from './kind.js';
import {
  finite,
  networkJobBytes,
  networkModelFiles,
  planNetworkJob,
  type NetworkKind,
} from './network-job.js';

export const hebbian: NetworkKind = {
  contract: JOB_KINDS.hebbian,
  planNetwork: planOneLook,
  plan: (input, ctx) => planNetworkJob(input, ctx, planOneLook),
  estimatedBytes: networkJobBytes,
  training: () => inOneLook,
  modelFiles: networkModelFiles,
};

const inOneLook: LocalTraining = {
  on: 'coordinator',
  start: async (job, ctx) => {
    const tr = await ctx.bus.transitionJob(job.id, ['queued'], 'running', { reason: null });
    if (tr.ok) await storeInOneLook(job, ctx);
  },
  // Running but not completed: storing failed on the bus half way, or the coordinator stopped
  // there. The one look is cheap and deterministic: look again.
  watch: storeInOneLook,
};

/** Stores the patterns of a running job, evaluates, stores the model, completes the job. */
async function storeInOneLook(job: StoredJob, ctx: ControlContext): Promise<void> {
  const spec = jobSpecFromJson(job.spec!);
  const { bus, settings } = ctx;
  let evaluation: Evaluation;
  let bytes: Uint8Array;
  let seconds: number;
  const t0 = performance.now();
  try {
    const { train, test } = await ctx.dataOf(job);
    const net = createHopfield(spec.network.layers[0]!.size, settings.kernels);
    storeHebbian(net, train.x, train.rows);
    evaluation = finite(
      evaluateNetwork(net, test, spec.evaluate, {
        seed: spec.seed,
        train,
        epoch: 1,
        dataSpec: spec.data,
      }),
    );
    seconds = (performance.now() - t0) / 1000;
    bytes = encodeModel(net, {
      training: { spec: jobSpecToJson(spec), epoch: 1, step: 1, jobId: job.id, workers: 0 },
      meta: { jobId: job.id, storedBy: 'coordinator (hebbian, one look)' },
    });
  } catch (err) {
    if (err instanceof BusError) throw err;
    await ctx.fail(job, `storing the patterns failed: ${(err as Error).message}`);
    return;
  }
  await storeModel(bus, job.id, 1, bytes);
  settings.metrics?.evaluation(job.id, evaluation, seconds);
  settings.metrics?.jobProgress(job.id, { step: 1, totalSteps: 1, epoch: 1, generation: 0 });
  await bus.updateJobProgress(job.id, {
    step: 1,
    totalSteps: 1,
    epoch: 1,
    shardSteps: [1],
    generation: 0,
    restoredFromStep: 0,
    recoveries: 0,
  } satisfies ProgressRecord);
  await ctx.event(job.id, { type: 'evaluation', at: ctx.now(), step: 1, evaluation });
  const done = await bus.transitionJob(job.id, ['running'], 'completed', {
    evaluation,
    model: { shard: MODEL_SLOT, step: 1, bytes: bytes.length },
  });
  if (done.ok)
    ctx.log.info({ jobId: job.id, evaluation, modelBytes: bytes.length }, 'job completed');
}

/**
 * A job of rule 'hebbian' (Hopfield storage in one look): one step, no workers. The coordinator
 * stores the patterns itself when the job starts: L = (1/n) P^T P is one pass of a local rule,
 * with no sampling loop to distribute.
 */
export async function planOneLook(
  spec: JobSpec,
  load: DataLoader = loadUnconfined,
): Promise<JobPlan & { data: Dataset }> {
  const data = await loadOrExplain(load, spec.data, spec.seed, 'spec.data');
  const n = spec.network.layers[0]!.size;
  if (data.dims !== n)
    throw new SpecError(
      'spec.network',
      `the Hopfield network has ${n} units but the data has ${data.dims} columns`,
    );
  const layout: ShardLayout = [{ [spec.network.layers[0]!.name]: [0, n] }];
  return { spec, layout, rows: data.rows, stepsPerEpoch: 1, totalSteps: 1, data };
}
