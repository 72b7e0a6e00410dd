// What one shard of a layout owns and reads: its unit ranges, every layer's owners, whose spins
// it needs and who needs its own, and the shapes of a step. Fixed for a run.
import { UnitType } from '@spinmesh/kernels';
import type { Network } from '../network.js';
import type { ResolvedTrainOptions } from '../train-options.js';
import type { ShardLayout } from './layout.js';
import { type StepPlan, groupRows, neighbours } from './plan.js';

/** Units [start, end) of a layer, owned by `shard`. */
export interface OwnerRange {
  shard: number;
  start: number;
  end: number;
}

export class ShardGeometry {
  readonly shards: number;
  readonly layerCount: number;
  readonly stagesPerStep: number;
  /** Groups of rows each stage is drawn in, one after the other (stepPlan). */
  readonly rowGroups: number;
  /** Contrastive divergence: the model chains start from the batch (else persistent chains). */
  readonly contrastive: boolean;
  readonly batchSize: number;
  /** Rows of the model phase: the batch with CD, else the persistent chains. */
  readonly chainRows: number;
  readonly stepsPerEpoch: number;
  readonly visible: number[];
  readonly isVisible: boolean[];
  /** Column of each visible layer in a data row (-1: not visible). */
  readonly visibleOffset: number[];
  /** Values per data row: the visible layers concatenated. */
  readonly visibleDims: number;
  /** Per layer: the units this shard owns, or null. */
  readonly ownRange: (readonly [number, number] | null)[];
  /** Per layer: every shard's range of it, by first unit. */
  readonly owners: OwnerRange[][];
  readonly neighbours: number[][];
  /**
   * Per layer: the neighbours whose spins a draw of it reads (all of them; with owned tiles
   * those it has a connection to, since the others' contributions come as partial fields).
   */
  readonly spinInputs: number[][];
  /** Per layer: whether a neighbour of it has units here, so its states are read here. */
  readonly readsLayer: boolean[];
  /**
   * Per layer: whether its peers' spins are read by draws here (else, where readsLayer, only
   * its final states by the update: owned tiles' centring).
   */
  readonly drawReads: boolean[];
  /** Per layer: whether this shard keeps its states at all (reads or owns some of it). */
  readonly tracksLayer: boolean[];
  /**
   * Owned tiles: every weight is held and updated by the shard of its `from` unit alone (the
   * row band W[F_s, :]); the `to` side's fields arrive as partial fields (see "Owned tiles" in
   * SHARDING.md). Else every cross tile is held by both sides (replicated).
   */
  readonly owned: boolean;
  /** Per layer: the other shards that read this shard's spins of it at every stage. */
  readonly recipients: number[][];
  /**
   * Per layer (owned tiles, centring): the other shards that read only this shard's final
   * states of it in a phase (the statistics of the update), not its draws.
   */
  readonly statRecipients: number[][];
  /**
   * Per layer this shard owns units of (owned tiles): the peers that send it partial fields
   * of that layer (they own units of a layer connected into it), else empty.
   */
  readonly fieldSenders: number[][];
  /** Per layer: the value an unpacked 0 bit stands for (-1 for Ising units). */
  readonly offValue: number[];
  /** Pairing is on: persistent chains, staleness > 0, more than one shard (see "Pairing"). */
  readonly pairing: boolean;
  /** Trainer's stacking flags: from-side layers are scaled by +1/R and -1/C. */
  readonly stackScaled: boolean[];
  /** Per layer: whether the scaled stack needs an unscaled copy (the layer is also a to-side). */
  readonly unscaledCopy: boolean[];

  constructor(
    readonly net: Network,
    readonly layout: ShardLayout,
    readonly shard: number,
    readonly options: ResolvedTrainOptions,
    readonly plan: StepPlan,
    readonly dataRows: number,
    /** Steps by which weights and persistent-chain spins may lag (Infinity: unbounded). */
    readonly staleness: number,
    tiles: 'replicated' | 'owned' = 'replicated',
  ) {
    this.owned = tiles === 'owned';
    this.shards = layout.length;
    this.layerCount = net.layers.length;
    this.stagesPerStep = plan.stages.length;
    this.rowGroups = plan.stages[0]?.groups ?? 1;
    this.contrastive = options.negative === 'cd';
    this.batchSize = options.batchSize;
    this.chainRows = this.contrastive ? options.batchSize : options.chains;
    this.stepsPerEpoch = Math.ceil(dataRows / options.batchSize);
    this.pairing = !this.contrastive && staleness > 0 && this.shards > 1;
    this.visible = options.visible.map((v) => net.layerIndex(v));
    this.isVisible = net.layers.map((l) => this.visible.includes(l.index));
    this.visibleOffset = new Array<number>(this.layerCount).fill(-1);
    let offset = 0;
    for (const v of this.visible) {
      this.visibleOffset[v] = offset;
      offset += net.layers[v]!.size;
    }
    this.visibleDims = offset;
    this.owners = net.layers.map((l) => {
      const ranges: OwnerRange[] = [];
      layout.forEach((units, s) => {
        const r = units[l.name];
        if (r) ranges.push({ shard: s, start: r[0], end: r[1] });
      });
      return ranges.sort((x, y) => x.start - y.start);
    });
    this.ownRange = net.layers.map((l) => layout[shard]![l.name] ?? null);
    this.neighbours = net.layers.map((l) => neighbours(net, l.index));
    this.spinInputs = net.layers.map((l) =>
      this.owned
        ? this.neighbours[l.index]!.filter((m) =>
            net.connections.some((c) => c.from === l.index && c.to === m),
          )
        : this.neighbours[l.index]!,
    );
    this.drawReads = net.layers.map((l) => this.shardReads(shard, l.index));
    this.readsLayer = net.layers.map(
      (l) => this.drawReads[l.index]! || this.readsStatistics(shard, l.index),
    );
    this.tracksLayer = net.layers.map(
      (l) => this.readsLayer[l.index]! || this.ownRange[l.index] !== null,
    );
    const peers = layout.map((_, s) => s).filter((s) => s !== shard);
    this.recipients = net.layers.map((l) => peers.filter((s) => this.shardReads(s, l.index)));
    this.statRecipients = net.layers.map((l) =>
      peers.filter((s) => !this.shardReads(s, l.index) && this.readsStatistics(s, l.index)),
    );
    this.fieldSenders = net.layers.map((l) =>
      this.owned && this.ownRange[l.index] ? peers.filter((s) => this.sendsFields(s, l.index)) : [],
    );
    this.offValue = net.layers.map((l) => (l.type === UnitType.Ising ? -1 : 0));
    this.stackScaled = net.layers.map(
      (l) => l.lateral || net.connections.some((c) => c.from === l.index),
    );
    this.unscaledCopy = net.layers.map(
      (l) =>
        this.stackScaled[l.index]! && (l.lateral || net.connections.some((c) => c.to === l.index)),
    );
  }

  private owns(s: number, l: number): boolean {
    return this.layout[s]![this.net.layers[l]!.name] !== undefined;
  }

  /**
   * Whether shard s reads the spins of layer l as it draws: it owns units of a neighbour of l;
   * with owned tiles only of a neighbour whose row band reads l (a connection m -> l), since a
   * layer on the `to` side of a connection gets partial fields instead.
   */
  private shardReads(s: number, l: number): boolean {
    if (!this.owned) return this.neighbours[l]!.some((m) => this.owns(s, m));
    return this.net.connections.some((c) => c.to === l && this.owns(s, c.from));
  }

  /**
   * Owned tiles with centring: whether shard s reads the final states of layer l for its
   * update (it owns units of a layer t with a connection l -> t: the centring correction of
   * t's biases sums over every unit of l).
   */
  private readsStatistics(s: number, l: number): boolean {
    if (!this.owned || !this.options.centring) return false;
    return this.net.connections.some((c) => c.from === l && this.owns(s, c.to));
  }

  /** Owned tiles: whether shard s sends this shard partial fields of layer l. */
  private sendsFields(s: number, l: number): boolean {
    return this.net.connections.some((c) => c.to === l && this.owns(s, c.from));
  }

  /** Index of the region (layer, owner shard) in per-region tables. */
  region(layer: number, shard: number): number {
    return layer * this.shards + shard;
  }

  /** Units of layer l this shard owns (0 if none). */
  ownWidth(l: number): number {
    const r = this.ownRange[l];
    return r ? r[1] - r[0] : 0;
  }

  /** Rows of step `step`'s batch (the last batch of an epoch may be short). */
  batchRowsOf(step: number): number {
    const start = (step % this.stepsPerEpoch) * this.batchSize;
    return Math.min(this.batchSize, this.dataRows - start);
  }

  /** Rows of step `step`'s model phase. */
  modelRowsOf(step: number): number {
    return this.contrastive ? this.batchRowsOf(step) : this.chainRows;
  }

  /** Rows [r0, r1) that stage p draws at step t: its row group of the phase's rows. */
  stageRows(t: number, p: number): [number, number] {
    const st = this.plan.stages[p]!;
    const rows = st.phase === 'positive' ? this.batchRowsOf(t) : this.modelRowsOf(t);
    return groupRows(rows, st.group, st.groups);
  }

  /** The stamp of stage `stage` of step `step`: its place in the run's sequence of stages. */
  stamp(step: number, stage: number): number {
    return step * this.stagesPerStep + stage;
  }
}
