// Moving a lockstep run to another layout at a checkpoint: the shards' checkpoints of one step
// are put together into the whole run's state and cut again along the new layout's holdings, so
// a coordinator can give a slow worker fewer units without changing the model (any layout at
// staleness 0 reproduces the same run), and a layout in proportion to measured speeds.
import { PortableKernels } from '@spinmesh/kernels';
import { FormatError, SpecError } from '../errors.js';
import type { NetworkSpec } from '../network.js';
import { alignedBoundary } from '../products.js';
import type { TrainOptions } from '../train-options.js';
import { decodeContainer } from './codec.js';
import { type ShardLayout, shapeNetwork, validateLayout } from './layout.js';
import type { ParameterSource } from './params.js';
import type { StateBlock } from './shard-checkpoint.js';
import type { ShardCounters } from './shard-tally.js';
import { ShardTrainer } from './shard-trainer.js';
import type { ShardStats } from './shard-types.js';

// Trainers built here only describe their holdings (stateBlocks); they never draw or update.
const SHAPE_ONLY = new PortableKernels();

const ZERO_SOURCE: ParameterSource = {
  weights: (_c, _r0, _r1, _c0, _c1, out) => out.fill(0),
  bias: (_l, _j0, _j1, out) => out.fill(0),
  lateral: (_l, out) => out.fill(0),
};

interface Decoded {
  spec: NetworkSpec;
  layout: ShardLayout;
  shard: number;
  train: TrainOptions;
  /** The run's tile design and row groups (absent in a header: replicated, one group). */
  design: { tiles: 'owned' | 'replicated'; rowGroups: number };
  step: number;
  counters: Partial<ShardCounters>;
  arrays: Map<string, unknown>;
}

/** A shard trainer of the run's configuration that holds shard `shard` of `layout`. */
function describer(
  spec: NetworkSpec,
  train: TrainOptions,
  design: Decoded['design'],
  layout: ShardLayout,
  shard: number,
) {
  const width = shapeNetwork(spec).layers.reduce((n, l) => n + l.size, 0);
  return new ShardTrainer({
    network: spec,
    train,
    layout,
    shard,
    kernels: SHAPE_ONLY,
    // the data's rows shape only the minibatches of steps to come, which a checkpoint holds none of
    data: { x: new Float32Array(width), rows: 1 },
    params: ZERO_SOURCE,
    staleness: 0,
    ...design,
  });
}

function decode(checkpoints: readonly Uint8Array[]): Decoded[] {
  if (checkpoints.length === 0)
    throw new SpecError('checkpoints', 'must hold one checkpoint per shard');
  const out = checkpoints.map((bytes, i): Decoded => {
    const { header, arrays } = decodeContainer(bytes);
    const { spec, layout, shard, train, step, counters } = header;
    if (
      header['format'] !== 1 ||
      !Array.isArray(layout) ||
      typeof spec !== 'object' ||
      typeof train !== 'object' ||
      !Number.isInteger(shard) ||
      !Number.isInteger(step)
    )
      throw new FormatError(`checkpoints[${i}]`, 'is not a shard checkpoint of a known format');
    return {
      spec: spec as NetworkSpec,
      layout: layout as ShardLayout,
      shard: shard as number,
      train: train as TrainOptions,
      design: {
        tiles: header['tiles'] === 'owned' ? 'owned' : 'replicated',
        rowGroups: typeof header['rowGroups'] === 'number' ? header['rowGroups'] : 1,
      },
      step: step as number,
      counters: (counters ?? {}) as Partial<ShardCounters>,
      arrays,
    };
  });
  const first = out[0]!;
  const same = (a: Decoded): boolean =>
    a.step === first.step &&
    JSON.stringify([a.spec, a.layout, a.train, a.design]) ===
      JSON.stringify([first.spec, first.layout, first.train, first.design]);
  out.forEach((c, i) => {
    if (!same(c))
      throw new SpecError(
        `checkpoints[${i}]`,
        'is of another run, layout or step than checkpoints[0]',
      );
  });
  if (first.layout.length !== out.length)
    throw new SpecError(
      'checkpoints',
      `must hold one checkpoint per shard of the layout (${first.layout.length}), got ${out.length}`,
    );
  const byShard = new Array<Decoded | undefined>(out.length);
  for (const c of out) {
    if (c.shard < 0 || c.shard >= out.length || byShard[c.shard])
      throw new SpecError('checkpoints', `must hold each shard once (shard ${c.shard} is not)`);
    byShard[c.shard] = c;
  }
  return byShard as Decoded[];
}

/** The whole run's arrays, each with a mark per value that some shard has given. */
class WholeState {
  private readonly arrays = new Map<
    string,
    { data: Float32Array; seen: Uint8Array; cols: number }
  >();

  /** Takes a shard's block (only its own columns where `own` says so). */
  put(b: StateBlock, a: Float32Array, shard: number): void {
    let w = this.arrays.get(b.whole);
    if (!w) {
      const n = b.wholeRows * b.wholeCols;
      w = { data: new Float32Array(n), seen: new Uint8Array(n), cols: b.wholeCols };
      this.arrays.set(b.whole, w);
    }
    const rows = b.length / b.cols;
    const [c0, c1] = b.own
      ? [Math.max(b.own[0], b.firstCol), Math.min(b.own[1], b.firstCol + b.cols)]
      : [b.firstCol, b.firstCol + b.cols];
    for (let i = 0; i < rows; i++) {
      const at = (b.firstRow + i) * w.cols;
      for (let j = c0; j < c1; j++) {
        const v = a[i * b.cols + j - b.firstCol]!;
        if (w.seen[at + j] && !Object.is(w.data[at + j], v))
          throw new SpecError(
            `checkpoints[${shard}]`,
            `holds a replica of ${b.whole} that differs from another shard's: not a lockstep checkpoint, which cannot be moved exactly`,
          );
        w.data[at + j] = v;
        w.seen[at + j] = 1;
      }
    }
  }

  /** Every whole array has each of its values from some shard. */
  checkComplete(): void {
    for (const [name, w] of this.arrays)
      if (w.seen.includes(0))
        throw new SpecError('checkpoints', `leave part of ${name} unknown: not the whole run`);
  }

  /** A new shard's block, cut from the whole. */
  cut(b: StateBlock): Float32Array {
    const w = this.arrays.get(b.whole);
    if (!w) throw new SpecError('layout', `needs ${b.whole}, which the checkpoints do not hold`);
    const out = new Float32Array(b.length);
    const rows = b.length / b.cols;
    for (let i = 0; i < rows; i++) {
      const at = (b.firstRow + i) * w.cols + b.firstCol;
      out.set(w.data.subarray(at, at + b.cols), i * b.cols);
    }
    return out;
  }
}

/** Traffic and work counters of the old shards, shared out so that the totals stay the same. */
function sharedStats(old: Decoded[], shards: number): ShardStats[] {
  const values = (k: keyof ShardCounters): number[] => old.map((c) => Number(c.counters[k] ?? 0));
  const sum = (k: keyof ShardCounters): number => values(k).reduce((x, y) => x + y, 0);
  const share = (k: keyof ShardCounters, s: number): number =>
    Math.floor(sum(k) / shards) + (s === 0 ? sum(k) % shards : 0);
  const histogram = (name: string): number[] => {
    const out: number[] = [];
    for (const c of old) {
      const a = c.arrays.get(name);
      if (a instanceof Float64Array) a.forEach((v, i) => (out[i] = (out[i] ?? 0) + v));
    }
    return out.length > 0 ? out : [0];
  };
  const [spin, lag] = [histogram('stats.spin'), histogram('stats.lag')];
  return Array.from({ length: shards }, (_, s) => ({
    // the histograms go whole to shard 0, so the sums over shards stay what they were
    spinStaleness: s === 0 ? spin : [0],
    weightLag: s === 0 ? lag : [0],
    // progress is the run's, the same on every shard
    sweeps: Math.max(...values('sweeps')),
    updatesApplied: Math.max(...values('updatesApplied')),
    stagesDrawn: share('stagesDrawn', s),
    spinUpdates: share('spinUpdates', s),
    messagesSent: share('messagesSent', s),
    bytesSent: share('bytesSent', s),
    messagesReceived: share('messagesReceived', s),
    bytesReceived: share('bytesReceived', s),
    stalePairings: share('stalePairings', s),
  }));
}

/**
 * The checkpoints of every shard of a lockstep run at one step T, re-cut for `layout`: one
 * checkpoint per new shard, restorable by ShardTrainers of the new layout (same network and
 * training options), which then continue the run exactly as the old layout would have. Moves
 * parameters, velocities, offsets and persistent chains; the work and traffic counters are
 * shared out so their totals stay the same. Everything is derived from what each layout's
 * shards hold, whatever that is.
 * @throws SpecError for checkpoints that cannot be moved exactly (asynchronous persistent chains
 * with their pairings, spins received and not yet read, replicas that differ), for checkpoints
 * of different runs or steps, or for an invalid layout; FormatError for a damaged checkpoint
 */
export function relayout(checkpoints: readonly Uint8Array[], layout: ShardLayout): Uint8Array[] {
  const old = decode(checkpoints);
  const { spec, train, design, step } = old[0]!;
  const newLayout = validateLayout(shapeNetwork(spec), layout);
  const whole = new WholeState();
  for (const c of old) {
    if (c.arrays.has('pairing.sigma'))
      throw new SpecError(
        `checkpoints[${c.shard}]`,
        'is of asynchronous persistent chains (staleness > 0): their pairings of peer states belong to its layout and cannot be moved exactly',
      );
    const tr = describer(spec, train, design, c.layout, c.shard);
    const P = tr.plan.stages.length;
    const K = c.layout.length;
    const index = c.arrays.get('inbox.index');
    if (!(index instanceof Float64Array))
      throw new FormatError(`checkpoints[${c.shard}]`, 'lacks its progress arrays');
    for (let i = 0; i < index.length; i += 3) {
      // at staleness 0 the only spins left unread at T are the peers' chains after step T - 1,
      // which their owners' own checkpoints hold too
      // (each row group's last draw)
      const layer = Math.floor(index[i]! / K);
      const finals = tr.plan.finalNegative[layer] ?? [];
      if (train.negative === 'cd' || !finals.some((p) => index[i + 1] === (step - 1) * P + p))
        throw new SpecError(
          `checkpoints[${c.shard}]`,
          'holds received spins not yet read (not a lockstep checkpoint at a step boundary), which cannot be moved exactly',
        );
    }
    for (const b of tr.stateBlocks()) {
      const a = c.arrays.get(b.name);
      if (!(a instanceof Float32Array) || a.length !== b.length)
        throw new FormatError(
          `checkpoints[${c.shard}]`,
          `lacks array ${b.name} of ${b.length} values`,
        );
      whole.put(b, a, c.shard);
    }
  }
  whole.checkComplete();
  const stats = sharedStats(old, newLayout.length);
  return newLayout.map((_, s) => {
    const tr = describer(spec, train, design, newLayout, s);
    return tr.movedCheckpoint(step, (b) => whole.cut(b), stats[s]!);
  });
}

/**
 * A layout that gives each shard a share of every layer in proportion to its speed (any unit:
 * steps per second, say), as contiguous ranges in shard order; every shard keeps at least one
 * unit of each layer that has as many units as there are shards. A lateral layer goes whole
 * to one shard, as in evenLayout. With `block` (TrainOptions.productBlock) each boundary moves
 * to the nearest multiple of it that keeps the ranges non-empty, where there is one.
 * @throws SpecError for speeds that are not positive numbers, or a layout validateLayout
 * refuses (a Gaussian layer split from its neighbours)
 */
export function balancedLayout(
  spec: NetworkSpec,
  speeds: readonly number[],
  block = 0,
): ShardLayout {
  const K = speeds.length;
  if (K < 1) throw new SpecError('speeds', 'must have one entry per shard');
  speeds.forEach((v, i) => {
    if (!(typeof v === 'number' && Number.isFinite(v) && v > 0))
      throw new SpecError(`speeds[${i}]`, 'must be a positive number');
  });
  const net = shapeNetwork(spec);
  const total = speeds.reduce((a, b) => a + b, 0);
  const out: Record<string, readonly [number, number]>[] = speeds.map(() => ({}));
  for (const l of net.layers) {
    const n = l.size;
    if (l.lateral) {
      out[l.index % K]![l.name] = [0, n];
      continue;
    }
    const min = n >= K ? 1 : 0;
    let start = 0;
    let cum = 0;
    for (let s = 0; s < K; s++) {
      cum += speeds[s]!;
      const left = K - 1 - s;
      let end = s === K - 1 ? n : Math.round((n * cum) / total);
      end = Math.max(end, start + min);
      end = Math.min(end, n - left * min);
      if (s < K - 1 && end > start) end = alignedBoundary(end, block, start + 1, n - left * min);
      if (end > start) out[s]![l.name] = [start, end];
      start = end;
    }
  }
  return validateLayout(net, out, 'balancedLayout');
}

/**
 * The layout a shard checkpoint was written under (a job's checkpoints of steps before a
 * rebalance have the old one). @throws FormatError for bytes that are not a shard checkpoint
 */
export function checkpointLayout(bytes: Uint8Array): ShardLayout {
  const layout = decodeContainer(bytes).header['layout'];
  if (!Array.isArray(layout)) throw new FormatError('checkpoint', 'names no layout');
  return layout as ShardLayout;
}
