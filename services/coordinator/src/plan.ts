// From a submitted spec to a cluster job: parse (YAML or JSON), validate (the model package's
// rules plus what a sharded run needs), and partition the units into one shard per worker.
import { parse as parseYaml } from 'yaml';
import { checkSpecValue } from './spec-text.js';
import {
  SpecError,
  evenLayout,
  loadData,
  quote,
  shapeNetwork,
  unconfinedAccess,
  validateLayout,
  validateTrainOptions,
  type DataSpec,
  type Dataset,
  type JobSpec,
  type ShardLayout,
} from '@spinmesh/model';

/** Loads the data set a spec's `field` names (a service: confined to its data roots). */
export type DataLoader = (d: DataSpec, seed: number, field: string) => Promise<Dataset>;

/** Any path, relative to the current directory: for a caller reading its own user's files. */
export const loadUnconfined: DataLoader = (d, seed, field) =>
  loadData(d, seed, unconfinedAccess(), field);

/** A validated job, ready to be stored and scheduled. */
export interface JobPlan {
  /** The spec with every default the cluster relies on filled in (`train.statistics`). */
  spec: JobSpec;
  /** Shard s owns layout[s]: per layer name, the unit range [start, end). */
  layout: ShardLayout;
  /** Rows of the training data. */
  rows: number;
  /** Updates per epoch: ceil(rows / batchSize). */
  stepsPerEpoch: number;
  /** Updates of the whole job: epochs x stepsPerEpoch. */
  totalSteps: number;
}

/** Parses spec text: YAML or JSON (JSON is YAML). @throws SpecError naming `spec` */
export function parseSpecText(text: string): unknown {
  if (text.trim() === '')
    throw new SpecError('spec', 'is empty (send the job spec as YAML or JSON)');
  let value: unknown;
  try {
    value = parseYaml(text) as unknown;
  } catch (e) {
    throw new SpecError(
      'spec',
      `is not valid YAML or JSON: ${quote((e as Error).message.split('\n')[0], 200)}`,
    );
  }
  checkSpecValue(value, 'spec');
  return value;
}

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
    layout = validateLayout(shape, evenLayout(spec.network, spec.workers));
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

/** Loads a data set a spec names; a failure that is not a SpecError is one naming `field`. */
async function loadOrExplain(
  load: DataLoader,
  d: JobSpec['data'],
  seed: number,
  field: string,
): Promise<Dataset> {
  try {
    return await load(d, seed, field);
  } catch (e) {
    if (e instanceof SpecError) throw e;
    throw new SpecError(field, `cannot be loaded: ${(e as Error).message}`);
  }
}
