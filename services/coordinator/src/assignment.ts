// What a worker is told about its shard: the ShardAssignment message built from a job's spec,
// its layout and the workers chosen for the shards.
import type { UnitRange as BusUnitRange } from '@spinmesh/bus';
import type { JobSpec, NetworkSpec as ModelNetworkSpec, ShardLayout } from '@spinmesh/model';
import { stalenessToWire, UnitType, type NetworkSpec, type ShardAssignment } from '@spinmesh/proto';

const UNIT_TYPES: Record<string, UnitType> = {
  bernoulli: UnitType.UNIT_TYPE_BERNOULLI,
  ising: UnitType.UNIT_TYPE_ISING,
  gaussian: UnitType.UNIT_TYPE_GAUSSIAN,
};

/** A model network spec (validated) as the proto message. */
export function toProtoNetwork(spec: ModelNetworkSpec): NetworkSpec {
  return {
    layers: spec.layers.map((l) => ({
      name: l.name,
      size: l.size,
      units: UNIT_TYPES[l.units ?? 'bernoulli'] ?? UnitType.UNIT_TYPE_BERNOULLI,
      lateral: l.lateral ?? false,
    })),
    connections: spec.connections.map((c) => ({ from: c.from, to: c.to })),
  };
}

/** Shard s's units as ranges by layer index (the bus's and the proto's form), by layer order. */
export function shardRanges(
  spec: ModelNetworkSpec,
  layout: ShardLayout,
  s: number,
): BusUnitRange[] {
  const out: BusUnitRange[] = [];
  spec.layers.forEach((l, layer) => {
    const r = layout[s]?.[l.name];
    if (r) out.push({ layer, start: r[0], end: r[1] });
  });
  return out;
}

/**
 * The shards that exchange spins with shard s: those owning units of a layer connected to a
 * layer of which s owns units. Connections are symmetric, so the relation is too.
 */
export function peerShards(spec: ModelNetworkSpec, layout: ShardLayout, s: number): number[] {
  const owns = (shard: number, layer: string): boolean => layout[shard]?.[layer] !== undefined;
  const out: number[] = [];
  for (let p = 0; p < layout.length; p++) {
    if (p === s) continue;
    const linked = spec.connections.some(
      (c) => (owns(s, c.from) && owns(p, c.to)) || (owns(s, c.to) && owns(p, c.from)),
    );
    if (linked) out.push(p);
  }
  return out;
}

export interface PlacedShard {
  shardId: number;
  workerId: string;
  /** host:port of the worker, from its bus registration. */
  address: string;
}

/** The ShardAssignment of one shard of a job under a given placement of every shard. */
export function buildAssignment(args: {
  jobId: string;
  generation: number;
  spec: JobSpec;
  layout: ShardLayout;
  shards: readonly PlacedShard[];
  shardId: number;
  restoreFromStep: number;
}): ShardAssignment {
  const { spec, layout, shardId } = args;
  const byId = new Map(args.shards.map((p) => [p.shardId, p]));
  return {
    jobId: args.jobId,
    generation: args.generation,
    shardId,
    shardCount: layout.length,
    network: toProtoNetwork(spec.network),
    units: shardRanges(spec.network, layout, shardId),
    peers: peerShards(spec.network, layout, shardId).map((p) => ({
      shardId: p,
      address: byId.get(p)?.address ?? '',
      units: shardRanges(spec.network, layout, p),
    })),
    staleness: stalenessToWire(spec.staleness),
    checkpointEverySteps: spec.checkpointEverySteps,
    restoreFromStep: args.restoreFromStep,
    seed: spec.seed,
  };
}
