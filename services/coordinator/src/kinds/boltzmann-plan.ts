// Planning a job of kind 'boltzmann': what a sharded run needs besides the model package's
// rules (sampled statistics, no mean-field positive phase, a network that splits into as many
// shards as workers, data whose columns are the visible units), and the even layout of shards.
import {
  SpecError,
  evenLayout,
  shapeNetwork,
  validateLayout,
  validateTrainOptions,
  type Dataset,
  type JobSpec,
  type ShardLayout,
} from '@spinmesh/model';

import { loadOrExplain, loadUnconfined, type DataLoader, type JobPlan } from '../plan.js';

/**
 * Plans a validated spec of rule 'boltzmann' for the cluster: what a sharded run needs besides
 * the model package's rules, and its network partitioned into one shard per worker. The
 * training data are loaded (the coordinator needs their size, and a spec whose data cannot be
 * read is refused before anything is stored). @throws SpecError naming the field
 */
export async function planShardedJob(
  validated: JobSpec,
  load: DataLoader = loadUnconfined,
): Promise<JobPlan & { data: Dataset }> {
  // Workers see their peers' 1-bit spins, never their probabilities: a sharded run can only use
  // sampled statistics (and so the single-process reference is runJob with the same setting).
  const statistics = validated.train.statistics ?? 'samples';
  if (statistics !== 'samples')
    throw new SpecError(
      'spec.train.statistics',
      "must be 'samples' in a cluster job (workers exchange 1-bit spins, not probabilities)",
    );
  const spec: JobSpec = { ...validated, train: { ...validated.train, statistics } };
  const shape = shapeNetwork(spec.network);
  const train = validateTrainOptions(spec.train, shape);
  if (train.positive === 'meanfield')
    throw new SpecError(
      'spec.train.positive',
      "'meanfield' cannot run in a cluster job (it would exchange real-valued means); use 'exact' or 'sample'",
    );
  let layout: ShardLayout;
  try {
    layout = validateLayout(shape, evenLayout(spec.network, spec.workers, train.productBlock));
  } catch (e) {
    if (e instanceof SpecError)
      throw new SpecError(
        'spec.workers',
        `cannot split this network into ${spec.workers} shards: ${e.message}` +
          mostShards(shape, spec.network, spec.workers),
      );
    throw e;
  }
  const data = await loadOrExplain(load, spec.data, spec.seed, 'spec.data');
  const dims = train.visible.reduce((n, v) => n + shape.layers[shape.layerIndex(v)]!.size, 0);
  if (data.dims !== dims)
    throw new SpecError(
      'spec.network',
      `the visible units (${train.visible.join(', ')}) are ${dims} but the data has ${data.dims} columns`,
    );
  if (spec.evaluate.test) {
    const test = await loadOrExplain(load, spec.evaluate.test, spec.seed, 'spec.evaluate.test');
    if (test.dims !== data.dims)
      throw new SpecError(
        'spec.evaluate.test',
        `has ${test.dims} columns but the training data has ${data.dims}`,
      );
  }
  const stepsPerEpoch = Math.ceil(data.rows / train.batchSize);
  return {
    spec,
    layout,
    rows: data.rows,
    stepsPerEpoch,
    totalSteps: spec.epochs * stepsPerEpoch,
    data,
  };
}

/**
 * " (at most k for this network)": the most shards, fewer than `workers`, that the even layout
 * allows; empty if none does.
 */
function mostShards(
  shape: ReturnType<typeof shapeNetwork>,
  net: JobSpec['network'],
  workers: number,
): string {
  for (let k = Math.min(workers - 1, Math.max(...shape.layers.map((l) => l.size))); k >= 1; k--) {
    try {
      validateLayout(shape, evenLayout(net, k));
      return ` (at most ${k} for this network)`;
    } catch {
      // fewer, then
    }
  }
  return '';
}

/**
 * The share of a step's multiply-adds that is per weight rather than per unit (rebalancing's
 * model of a replicated shard's work, replicatedWork): a draw of a layer reads each of its
 * connections once per row (the fields: the positive phase's hidden ends over the batch, once
 * when exact, else positiveIterations times; the model phase's k sweeps over the chains, both
 * ends), and the weight correlation reads each connection once per positive and model row.
 * Drawing and the update itself are left out.
 */
export function perWeightShare(spec: JobSpec): number {
  const shape = shapeNetwork(spec.network);
  const o = validateTrainOptions(spec.train, shape);
  const visible = new Set(o.visible.map((v) => shape.layerIndex(v)));
  const passes = o.positive === 'exact' ? 1 : o.positiveIterations;
  let fields = 0;
  let weights = 0;
  for (const c of shape.connections) {
    const n = shape.layers[c.from]!.size * shape.layers[c.to]!.size;
    const hiddenEnds = [c.from, c.to].filter((l) => !visible.has(l)).length;
    fields += n * (o.batchSize * passes * hiddenEnds + 2 * o.k * o.chains);
    weights += n * (o.batchSize + o.chains);
  }
  return weights / (weights + fields);
}
