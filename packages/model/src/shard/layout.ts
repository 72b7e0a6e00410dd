// Shard layouts: which units of which layers each worker of a sharded run owns, and the
// network shape that every worker knows without holding the parameters.
import { type Kernels, UnitType } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import { Network, type NetworkSpec } from '../network.js';
import { isRecord } from '../checks.js';
import { alignedBoundary } from '../products.js';

/** The units one shard owns: per layer name, the half-open range [start, end) of unit indices. */
export type ShardUnits = Readonly<Record<string, readonly [start: number, end: number]>>;

/** Every shard's units: shard i owns layout[i]. Each layer is covered exactly once. */
export type ShardLayout = readonly ShardUnits[];

function never(): never {
  throw new Error('a shape-only network runs no kernels');
}

// Allocates nothing: a Network built on it has the layers, connections and colouring of the
// spec but empty parameter arrays, so every worker can reason about the whole network's shape
// while holding only its own slices.
const SHAPE_KERNELS: Kernels = {
  name: 'shape',
  threads: 0,
  describe: () => 'shape only',
  alloc: () => new Float32Array(0),
  upload: () => {},
  download: () => {},
  sgemm: never,
  sampleUnits: never,
  uniform: never,
  logPartitionRows: never,
  axpby: never,
  colSums: never,
  shiftScaleRows: never,
  sumSquares: never,
  dot: never,
  copyBlock: never,
  packSpins: never,
  unpackSpins: never,
  packColumns: never,
  bitCorrelation: never,
};

/** The network of a spec with empty parameter arrays: layers, connections, colouring only. */
export function shapeNetwork(spec: NetworkSpec): Network {
  return new Network(spec, SHAPE_KERNELS);
}

/**
 * Checks a layout against a network (from untrusted input) and returns it normalised.
 * Rules: every layer's units are split into contiguous ranges, one per owning shard, that
 * cover the layer exactly once; every shard owns some units; a lateral layer lies within one
 * shard (its units are drawn one after another, each reading all the others); a Gaussian layer
 * lies within one shard together with every layer connected to it (its states are real
 * numbers, which 1-bit spins cannot carry). @throws SpecError naming the field
 */
export function validateLayout(network: Network, input: unknown, path = 'layout'): ShardLayout {
  if (!Array.isArray(input) || input.length === 0)
    throw new SpecError(path, 'must be a non-empty array (one entry per shard)');
  if (input.length > 0xffff) throw new SpecError(path, 'must have at most 65535 shards');
  const out: Record<string, readonly [number, number]>[] = [];
  const ranges = network.layers.map(() => [] as [number, number, number][]);
  input.forEach((entry: unknown, s) => {
    const p = `${path}[${s}]`;
    if (!isRecord(entry)) throw new SpecError(p, 'must be an object: layer name -> [start, end]');
    const units: Record<string, readonly [number, number]> = {};
    for (const [name, r] of Object.entries(entry)) {
      const l = network.layers.find((x) => x.name === name);
      if (!l)
        throw new SpecError(
          `${p}.${name}`,
          `is not a layer (one of ${network.layers.map((x) => x.name).join(', ')})`,
        );
      if (
        !Array.isArray(r) ||
        r.length !== 2 ||
        !Number.isInteger(r[0]) ||
        !Number.isInteger(r[1]) ||
        !((r[0] as number) >= 0 && (r[0] as number) < (r[1] as number) && r[1] <= l.size)
      ) {
        throw new SpecError(
          `${p}.${name}`,
          `must be [start, end] with integers 0 <= start < end <= ${l.size}`,
        );
      }
      const range = [r[0] as number, r[1] as number] as const;
      units[name] = range;
      ranges[l.index]!.push([range[0], range[1], s]);
    }
    if (Object.keys(units).length === 0) throw new SpecError(p, 'owns no units');
    out.push(units);
  });
  for (const l of network.layers) {
    const rs = ranges[l.index]!.sort((a, b) => a[0] - b[0]);
    let next = 0;
    for (const [a, b, s] of rs) {
      if (a !== next) {
        throw new SpecError(
          `${path}[${s}].${l.name}`,
          a < next
            ? `overlaps another shard's units of ${l.name} (unit ${a})`
            : `leaves units ${next}..${a - 1} of ${l.name} to no shard`,
        );
      }
      next = b;
    }
    if (next !== l.size) {
      throw new SpecError(
        path,
        `leaves units ${next}..${l.size - 1} of layer ${l.name} to no shard`,
      );
    }
    if (l.lateral && rs.length > 1) {
      throw new SpecError(
        `${path}[${rs[1]![2]}].${l.name}`,
        `splits lateral layer ${l.name}: a layer with lateral connections must lie within one shard`,
      );
    }
  }
  for (const l of network.layers) {
    if (l.type !== UnitType.Gaussian) continue;
    const owner = ranges[l.index]![0]![2];
    const split = ranges[l.index]!.length > 1;
    const neighbourElsewhere = network.connections.some((c) => {
      const m = c.from === l.index ? c.to : c.to === l.index ? c.from : -1;
      return m >= 0 && ranges[m]!.some(([, , s]) => s !== owner);
    });
    if (split || neighbourElsewhere) {
      throw new SpecError(
        `${path}[${owner}].${l.name}`,
        `gaussian layer ${l.name} must lie within one shard together with every layer connected to it (its states are real numbers, which 1-bit spins cannot carry)`,
      );
    }
  }
  return out;
}

/**
 * A layout of `shards` shards that splits every layer into near-equal contiguous ranges (shard
 * s gets the s-th range of each layer; a layer smaller than the shard count leaves the last
 * shards without units of it). A lateral layer goes whole to one shard (round robin by layer
 * index). With `block` (TrainOptions.productBlock) each boundary moves to the nearest multiple
 * of it that keeps every range non-empty, where there is one.
 */
export function evenLayout(spec: NetworkSpec, shards: number, block = 0): ShardLayout {
  if (!Number.isInteger(shards) || shards < 1)
    throw new SpecError('shards', 'must be a positive integer');
  const net = shapeNetwork(spec);
  const out: Record<string, readonly [number, number]>[] = Array.from(
    { length: shards },
    () => ({}),
  );
  for (const l of net.layers) {
    if (l.lateral) {
      out[l.index % shards]![l.name] = [0, l.size];
      continue;
    }
    const n = l.size;
    let a = 0;
    for (let s = 0; s < shards; s++) {
      const even = Math.floor(((s + 1) * n) / shards);
      const left = shards - 1 - s;
      const b =
        s === shards - 1 || n < shards ? even : alignedBoundary(even, block, a + 1, n - left);
      if (b > a) out[s]![l.name] = [a, b];
      a = Math.max(a, b);
    }
  }
  return out;
}
