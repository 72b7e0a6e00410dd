// From a job record on the bus to what one shard trains: the validated spec, the data set, the
// total number of steps, the layout of every shard, and the initial parameters, all exactly as
// the single-process runner (runJob) has them, so that staleness 0 reproduces it.
import type { Assignment } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import {
  SpecError,
  columnMeans,
  initSource,
  loadData,
  shapeNetwork,
  validateJobSpec,
  validateLayout,
  validateTrainOptions,
  type DataAccess,
  type Dataset,
  type JobSpec,
  type ParameterSource,
  type ResolvedTrainOptions,
  type ShardLayout,
} from '@spinmesh/model';
import {
  UnitType,
  type NetworkSpec as ProtoNetworkSpec,
  type ShardAssignment,
} from '@spinmesh/proto';
import { currentLayout, type StoredJob } from '@spinmesh/cluster';

/** What a shard needs of its job. */
export interface ShardJob {
  spec: JobSpec;
  options: ResolvedTrainOptions;
  data: Dataset;
  /** Updates of the whole job: epochs x ceil(rows / batchSize). */
  totalSteps: number;
  layout: ShardLayout;
  /** Whether the data came from the cache (an earlier generation of the job) rather than its files. */
  dataKept: boolean;
}

/**
 * The data set of the job a worker holds, kept across the job's assignment generations: a
 * rebalance or a recovery reassigns the same job to the same workers, and reloading its data
 * (Fashion-MNIST's 60,000 rows: about half a second) would hold up every shard of the restart.
 * One entry: the worker drops it when it lets the job go (Stop, or another job). Only a load that
 * succeeded is kept. The shards only read the data.
 */
export class JobDataCache {
  private entry: { key: string; data: Dataset } | null = null;

  /** The data under `key` (the job and its data spec), loaded with `load` unless kept. */
  async get(key: string, load: () => Promise<Dataset>): Promise<{ data: Dataset; kept: boolean }> {
    if (this.entry?.key === key) return { data: this.entry.data, kept: true };
    this.entry = null; // the old set can go before the new one is read
    const data = await load();
    this.entry = { key, data };
    return { data, kept: false };
  }

  clear(): void {
    this.entry = null;
  }
}

/** A job that cannot be trained as assigned; the message names what is wrong. */
export class JobLoadError extends Error {
  override readonly name = 'JobLoadError';
}

/**
 * Reads the job record's `spec` (a JobSpec, validated here, the one time this process does; the
 * trainer gets the result), loads its data and works out the layout: the record's current one
 * (the coordinator's ShardLayout: `progress.layout` after a rebalance, else `layout`), else the
 * assignment on the bus, else the units of this shard and its peers in the Assign message
 * (enough when every other shard is a peer). The data come from `cache` when it holds this job's.
 * @throws JobLoadError, SpecError naming the field
 */
export async function loadShardJob(
  record: StoredJob,
  a: ShardAssignment,
  busAssignment: Assignment | null,
  access: DataAccess,
  cache: JobDataCache = new JobDataCache(),
): Promise<ShardJob> {
  if (record.spec === undefined)
    throw new JobLoadError(`job '${record.id}' has no spec field on the bus`);
  const spec = validateJobSpec(record.spec);
  const shape = shapeNetwork(spec.network);
  const options = validateTrainOptions({ statistics: 'samples', ...spec.train }, shape);
  if (a.network !== undefined && a.network.layers.length > 0) {
    const why = networkMismatch(spec, a.network);
    if (why !== null)
      throw new JobLoadError(`assignment.network differs from the job's spec.network: ${why}`);
  }
  const key = JSON.stringify([record.id, spec.data, spec.seed]);
  const { data, kept } = await cache.get(key, () => loadData(spec.data, spec.seed, access));
  const dims = options.visible.reduce((n, v) => n + shape.layers[shape.layerIndex(v)]!.size, 0);
  if (data.dims !== dims)
    throw new JobLoadError(
      `spec.network: the visible units (${options.visible.join(', ')}) are ${dims} but the data has ${data.dims} columns`,
    );
  const totalSteps = spec.epochs * Math.ceil(data.rows / options.batchSize);
  const recorded = record.totalSteps;
  if (typeof recorded === 'number' && recorded !== totalSteps)
    throw new JobLoadError(
      `job '${record.id}': the record says totalSteps ${recorded} but the spec and data give ${totalSteps}`,
    );
  const layout = validateLayout(shape, layoutOf(record, a, busAssignment, spec), 'layout');
  if (layout.length !== a.shardCount)
    throw new JobLoadError(
      `assignment.shard_count is ${a.shardCount} but the job's layout has ${layout.length} shards`,
    );
  const mine = layout[a.shardId]!;
  const given = a.units.map((u) => `${shape.layers[u.layer]?.name}[${u.start},${u.end})`).sort();
  const expected = Object.entries(mine)
    .map(([name, r]) => `${name}[${r[0]},${r[1]})`)
    .sort();
  if (given.join(' ') !== expected.join(' '))
    throw new JobLoadError(
      `assignment.units (${given.join(' ')}) are not shard ${a.shardId}'s units in the job's layout (${expected.join(' ')})`,
    );
  return { spec, options, data, totalSteps, layout, dataKept: kept };
}

function layoutOf(
  record: StoredJob,
  a: ShardAssignment,
  busAssignment: Assignment | null,
  spec: JobSpec,
): unknown {
  const layout = currentLayout(record);
  if (layout !== undefined) return layout;
  const names = spec.network.layers.map((l) => l.name);
  const toLayout = (
    shards: { shardId: number; units: { layer: number; start: number; end: number }[] }[],
  ) => {
    const out: Record<string, [number, number]>[] = Array.from(
      { length: a.shardCount },
      () => ({}),
    );
    for (const s of shards) {
      const entry = out[s.shardId];
      if (entry === undefined)
        throw new JobLoadError(`shard ${s.shardId} is not below shard_count ${a.shardCount}`);
      for (const u of s.units) {
        const name = names[u.layer];
        if (name === undefined) throw new JobLoadError(`shard ${s.shardId}: no layer ${u.layer}`);
        entry[name] = [u.start, u.end];
      }
    }
    return out;
  };
  if (busAssignment !== null && busAssignment.shards.length === a.shardCount)
    return toLayout(busAssignment.shards);
  return toLayout([
    { shardId: a.shardId, units: a.units },
    ...a.peers.map((p) => ({ shardId: p.shardId, units: p.units })),
  ]);
}

const UNIT_NAMES: Record<number, string> = {
  [UnitType.UNIT_TYPE_UNSPECIFIED]: 'bernoulli',
  [UnitType.UNIT_TYPE_BERNOULLI]: 'bernoulli',
  [UnitType.UNIT_TYPE_ISING]: 'ising',
  [UnitType.UNIT_TYPE_GAUSSIAN]: 'gaussian',
};

/** null when the assignment's network is the spec's; else the first difference. */
function networkMismatch(spec: JobSpec, n: ProtoNetworkSpec): string | null {
  const layers = spec.network.layers;
  if (layers.length !== n.layers.length)
    return `${n.layers.length} layers instead of ${layers.length}`;
  for (let i = 0; i < layers.length; i++) {
    const l = layers[i]!;
    const p = n.layers[i]!;
    if (
      p.name !== l.name ||
      p.size !== l.size ||
      UNIT_NAMES[p.units] !== (l.units ?? 'bernoulli') ||
      p.lateral !== (l.lateral ?? false)
    )
      return `layers[${i}] is ${p.name} (${p.size}, ${UNIT_NAMES[p.units]}${p.lateral ? ', lateral' : ''})`;
  }
  const conns = spec.network.connections;
  if (
    conns.length !== n.connections.length ||
    conns.some((c, i) => c.from !== n.connections[i]!.from || c.to !== n.connections[i]!.to)
  )
    return 'the connections differ';
  return null;
}

/**
 * The initial parameters of the job, as runJob makes them: Network.create(network, {seed,
 * weightStd}) drawn slice by slice, and, unless init.visibleBiasFromData is false, the first
 * layer's biases set to the logit of the data's column means when it is a Bernoulli layer.
 */
export function jobParameterSource(
  spec: JobSpec,
  data: Dataset,
  kernels: Kernels,
): ParameterSource {
  const base = initSource(spec.network, kernels, {
    seed: spec.seed,
    weightStd: spec.init.weightStd ?? 0.01,
  });
  const first = spec.network.layers[0];
  if (!(spec.init.visibleBiasFromData ?? true) || first === undefined) return base;
  if ((first.units ?? 'bernoulli') !== 'bernoulli') return base;
  if (data.dims < first.size)
    throw new SpecError('spec.data', `has fewer columns than layer ${first.name} has units`);
  // Float32 like initVisibleBias, which stores the float64 logit in the network's biases.
  const means = columnMeans(data);
  const logit = new Float32Array(first.size);
  for (let j = 0; j < first.size; j++) {
    const p = Math.min(Math.max(means[j]!, 1e-3), 1 - 1e-3);
    logit[j] = Math.log(p / (1 - p));
  }
  return {
    weights: (conn, r0, r1, c0, c1, out) => base.weights(conn, r0, r1, c0, c1, out),
    lateral: (layer, out) => base.lateral(layer, out),
    bias: (layer, j0, j1, out) => {
      if (layer === 0) out.set(logit.subarray(j0, j1));
      else base.bias(layer, j0, j1, out);
    },
  };
}
