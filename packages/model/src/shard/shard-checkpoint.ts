// What leaves a shard whole: checkpoints (written and restored from one list of arrays), the
// blocks it owns for an assembled model, and its weight tiles for checking replicas.
import type { Kernels } from '@spinmesh/kernels';
import { FormatError, SpecError } from '../errors.js';
import { type CodecArray, concatBytes, decodeContainer, encodeContainer } from './codec.js';
import type { ParameterBlock, ShardExport } from './params.js';
import type { ShardGeometry } from './shard-geometry.js';
import type { ShardParameters } from './shard-holdings.js';
import type { SpinInbox } from './shard-inbox.js';
import type { PairingBook } from './shard-pairing.js';
import type { ShardStates } from './shard-states.js';
import type { ShardCounters, ShardTally } from './shard-tally.js';
import type { ShardStats } from './shard-types.js';

/**
 * Where a checkpoint array lies in the whole run's state: a row-major block of `cols` columns
 * at (firstRow, firstCol) of a whole array of wholeRows x wholeCols, named `whole`
 * (bias.<layer>, biasVel.<layer>, lateral.<layer>, lateralVel.<layer>, offset.<layer>,
 * chains.<layer>, weights.<connection>, weightsVel.<connection>).
 */
export interface StateBlock {
  /** The array's name in the checkpoint. */
  name: string;
  whole: string;
  wholeRows: number;
  wholeCols: number;
  firstRow: number;
  firstCol: number;
  cols: number;
  /** Values in the block (its rows: length / cols). */
  length: number;
  /**
   * The columns whose values this shard makes itself (its own units), where the rest are
   * replicas of other shards' that a checkpoint may hold older (chains, offsets); null: every
   * value is the shard's own or an identical replica (parameters).
   */
  own: readonly [number, number] | null;
}

/** A weight tile with its owner (the shard of its rows) and the updates applied to it. */
export type WeightTile = ParameterBlock & { owner: number; step: number };

export class ShardCheckpoints {
  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly states: ShardStates,
    private readonly params: ShardParameters,
    private readonly inbox: SpinInbox,
    private readonly pairing: PairingBook,
    private readonly tally: ShardTally,
  ) {}

  /** What a checkpoint must match to be restored here. */
  private identity(): Record<string, unknown> {
    const g = this.geometry;
    const id: Record<string, unknown> = {
      spec: g.net.spec,
      layout: g.layout,
      shard: g.shard,
      train: g.options,
    };
    // absent: replicated tiles, one row group (checkpoints from before the options)
    if (g.owned) id['tiles'] = 'owned';
    if (g.rowGroups > 1) id['rowGroups'] = g.rowGroups;
    return id;
  }

  /** The parameter, velocity, offset and chain arrays a checkpoint holds, by name. */
  private stateArrays(): [string, Float32Array][] {
    return this.blocks().map(([b, a]) => [b.name, a]);
  }

  /** Where each state array of a checkpoint lies in the whole run's state (see StateBlock). */
  stateBlocks(): StateBlock[] {
    return this.blocks().map(([b]) => b);
  }

  /**
   * The state arrays with their places: encode() writes them, restore() reads them back and
   * relayout.ts moves them between layouts, all from this one list.
   */
  private blocks(): [StateBlock, Float32Array][] {
    const g = this.geometry;
    const p = this.params;
    const s = this.states;
    const out: [StateBlock, Float32Array][] = [];
    const add = (
      name: string,
      whole: string,
      a: Float32Array | null | undefined,
      rows: number,
      cols: number,
      place: Partial<Pick<StateBlock, 'firstRow' | 'firstCol' | 'cols' | 'own'>> = {},
    ): void => {
      if (!a) return;
      const b: StateBlock = {
        name,
        whole,
        wholeRows: rows,
        wholeCols: cols,
        firstRow: place.firstRow ?? 0,
        firstCol: place.firstCol ?? 0,
        cols: place.cols ?? cols,
        length: a.length,
        own: place.own ?? null,
      };
      out.push([b, a]);
    };
    for (const l of g.net.layers) {
      const n = l.size;
      const r = g.ownRange[l.index];
      if (r) {
        const place = { firstCol: r[0], cols: r[1] - r[0] };
        add(`bias.${l.name}`, `bias.${l.name}`, p.bias[l.index], 1, n, place);
        add(`biasVel.${l.name}`, `biasVel.${l.name}`, p.biasVelocity[l.index], 1, n, place);
      }
      add(`lateral.${l.name}`, `lateral.${l.name}`, p.lateral[l.index], n, n);
      add(`lateralVel.${l.name}`, `lateralVel.${l.name}`, p.lateralVelocity[l.index], n, n);
      if (g.tracksLayer[l.index]) {
        const own = r ?? ([0, 0] as const);
        add(`offset.${l.name}`, `offset.${l.name}`, s.offsets[l.index], 1, n, { own });
        if (!g.contrastive)
          add(`chains.${l.name}`, `chains.${l.name}`, s.model[l.index], g.chainRows, n, { own });
      }
    }
    for (const h of p.connections) {
      if (!h) continue;
      h.slabs.forEach((slab, i) => {
        const place = { firstRow: slab.firstRow, firstCol: slab.firstCol, cols: slab.ld };
        const [rows, cols] = [h.fromSize, h.toSize];
        add(`weights.${h.index}.${i}`, `weights.${h.index}`, slab.data, rows, cols, place);
        add(
          `weightsVel.${h.index}.${i}`,
          `weightsVel.${h.index}`,
          slab.velocity,
          rows,
          cols,
          place,
        );
      });
    }
    return out;
  }

  /** The checkpoint at step boundary `step` (the caller checks that the shard is quiescent). */
  encode(step: number): Uint8Array {
    const arrays: [string, CodecArray][] = [];
    for (const [name, a] of this.stateArrays()) {
      this.kernels.download(a);
      arrays.push([name, a]);
    }
    arrays.push(['versions', this.inbox.modelStamp.slice()]);
    const { index, parts } = this.inbox.entriesBefore(step);
    arrays.push(['inbox.index', Float64Array.from(index)], ['inbox.bytes', concatBytes(parts)]);
    if (this.geometry.pairing) arrays.push(...this.pairing.checkpointArrays());
    arrays.push(
      ['stats.spin', Float64Array.from(this.tally.spinStaleness)],
      ['stats.lag', Float64Array.from(this.tally.weightLag)],
    );
    return encodeContainer(
      { format: 1, ...this.identity(), step, counters: this.tally.counters },
      arrays,
    );
  }

  /**
   * A checkpoint of this shard's configuration at step boundary `step` holding state made
   * elsewhere (relayout.ts), as a lockstep run would have written it: `value(block)` for each of
   * stateBlocks(), every peer chain at its last draw of step - 1, nothing in the inbox, and the
   * given statistics. Leaves this shard's own state alone.
   * @throws SpecError when this shard pairs states (asynchronous persistent chains)
   */
  encodeMoved(step: number, value: (b: StateBlock) => Float32Array, stats: ShardStats): Uint8Array {
    const g = this.geometry;
    if (g.pairing)
      throw new SpecError('staleness', 'must be 0 for a checkpoint moved between layouts');
    const arrays: [string, CodecArray][] = this.stateBlocks().map((b) => [b.name, value(b)]);
    const versions = this.inbox.modelStamp.slice();
    if (!g.contrastive) {
      this.inbox.boxes.forEach((box, region) => {
        const l = Math.floor(region / g.shards);
        if (!box) return;
        g.plan.finalNegative[l]!.forEach((p, group) => {
          versions[region * g.rowGroups + group] = step > 0 ? g.stamp(step - 1, p) : -1;
        });
      });
    }
    const { spinStaleness, weightLag, ...counters } = stats;
    arrays.push(
      ['versions', versions],
      ['inbox.index', new Float64Array(0)],
      ['inbox.bytes', new Uint8Array(0)],
      ['stats.spin', Float64Array.from(spinStaleness)],
      ['stats.lag', Float64Array.from(weightLag)],
    );
    return encodeContainer({ format: 1, ...this.identity(), step, counters }, arrays);
  }

  /**
   * Restores parameters, states, inbox, pairing and statistics from a checkpoint; returns its
   * step. @throws FormatError for a damaged checkpoint, SpecError for one of another configuration
   */
  restore(bytes: Uint8Array): number {
    const { header, arrays } = decodeContainer(bytes);
    if (header['format'] !== 1) throw new FormatError('checkpoint', 'has an unknown format');
    const id = this.identity();
    for (const key of new Set([...Object.keys(id), 'tiles', 'rowGroups'])) {
      if (JSON.stringify(header[key]) !== JSON.stringify(id[key]))
        throw new SpecError(`checkpoint.${key}`, 'differs from this shard trainer');
    }
    const step = header['step'];
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0)
      throw new FormatError('checkpoint', 'has no valid step');
    this.states.positiveStep = -1;
    for (const [name, into] of this.stateArrays()) {
      const a = arrays.get(name);
      if (!(a instanceof Float32Array) || a.length !== into.length)
        throw new FormatError('checkpoint', `lacks array ${name} of ${into.length} values`);
      into.set(a);
      this.kernels.upload(into);
    }
    const versions = arrays.get('versions');
    const index = arrays.get('inbox.index');
    const all = arrays.get('inbox.bytes');
    const spin = arrays.get('stats.spin');
    const lag = arrays.get('stats.lag');
    if (
      !(versions instanceof Float64Array) ||
      versions.length !== this.inbox.modelStamp.length ||
      !(index instanceof Float64Array) ||
      !(all instanceof Uint8Array) ||
      !(spin instanceof Float64Array) ||
      !(lag instanceof Float64Array)
    )
      throw new FormatError('checkpoint', 'lacks its progress arrays');
    this.inbox.restore(versions, index, all);
    if (this.geometry.pairing) this.pairing.restore(arrays, step);
    const counters = header['counters'] as Partial<ShardCounters> | undefined;
    this.tally.restore(spin, lag, counters);
    return step;
  }

  /** The blocks this shard owns (its biases, its lateral layers, the rows of its from-units). */
  exportBlocks(applied: number): ShardExport {
    const g = this.geometry;
    const net = g.net;
    const k = this.kernels;
    const p = this.params;
    const blocks: ParameterBlock[] = [];
    for (const l of net.layers) {
      const r = g.ownRange[l.index];
      if (!r) continue;
      const bias = p.bias[l.index]!;
      k.download(bias);
      blocks.push({ name: `${l.name}.bias`, rows: [0, 1], cols: [r[0], r[1]], data: bias.slice() });
      const lateral = p.lateral[l.index];
      if (lateral) {
        k.download(lateral);
        const all: [number, number] = [0, l.size];
        blocks.push({ name: `${l.name}.lateral`, rows: all, cols: all, data: lateral.slice() });
      }
    }
    for (const h of p.connections) {
      if (!h || !h.fromView) continue;
      const F = g.ownRange[h.from]!;
      const v = h.fromView;
      k.download(v.data);
      const name = `${net.layers[h.from]!.name}-${net.layers[h.to]!.name}.weights`;
      blocks.push({
        name,
        rows: [F[0], F[1]],
        cols: [0, h.toSize],
        data: v.data.slice(0, (F[1] - F[0]) * h.toSize),
      });
    }
    return { shard: g.shard, step: applied, blocks };
  }

  /** Every weight tile this shard holds, owned or replica (ShardTrainer.weightTiles). */
  weightTiles(applied: number): WeightTile[] {
    const net = this.geometry.net;
    const out: WeightTile[] = [];
    for (const h of this.params.connections) {
      if (!h) continue;
      const name = `${net.layers[h.from]!.name}-${net.layers[h.to]!.name}.weights`;
      for (const t of h.tiles) {
        const d = t.dests[0]!;
        const w = t.c1 - t.c0;
        const data = new Float32Array((t.r1 - t.r0) * w);
        this.kernels.download(d.slab.data);
        for (let i = 0; i < t.r1 - t.r0; i++) {
          const from = d.off + i * d.slab.ld;
          data.set(d.slab.data.subarray(from, from + w), i * w);
        }
        const [rows, cols]: [number, number] = [t.r0, t.r1];
        out.push({
          name,
          rows: [rows, cols],
          cols: [t.c0, t.c1],
          data,
          owner: t.rowShard,
          step: applied,
        });
      }
    }
    return out;
  }
}
