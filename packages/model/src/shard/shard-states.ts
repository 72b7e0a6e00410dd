// The unit states a shard keeps: full-width layer buffers for the batch and the model chains,
// the stacked statistics an update reads, centring offsets, and the batches read from the data.
import { type Kernels, type RngSite, UnitType } from '@spinmesh/kernels';
import { columnMeans, epochOrder } from '../data/dataset.js';
import { SpecError } from '../errors.js';
import { biasForMeans } from '../chains.js';
import { Streams } from '../sampler.js';
import { type StatisticBits, bitLayers } from '../train-rule.js';
import type { ShardGeometry } from './shard-geometry.js';
import type { ParameterSource } from './params.js';
import type { ShardData } from './shard-types.js';

export class ShardStates {
  /** Per layer: the batch's (positive phase) states, rows x size (empty: not tracked here). */
  readonly positive: Float32Array[];
  /** Per layer: the model phase's states (the persistent chains, or CD's batch chains). */
  readonly model: Float32Array[];
  /** Per layer: an update's statistics, positive rows then model rows, centred and scaled. */
  readonly stacked: Float32Array[];
  /** Per layer: the unscaled copy of `stacked` where a layer is on both sides of a product. */
  readonly stackedUnscaled: (Float32Array | null)[];
  /** Column bits of the statistics of the layers that may be all 0 or 1 (bitLayers). */
  readonly bits: (StatisticBits | null)[];
  /** Per layer: centring offsets of every unit this shard tracks. */
  readonly offsets: Float32Array[];
  /** Per layer: the current batch's column means (the next offsets' running-mean input). */
  readonly batchMeans: Float32Array[];
  /** Per layer: local fields of this shard's units, rows x own width. */
  readonly fields: Float32Array[];
  /** Scratch for one peer region's unpacked spins. */
  readonly scratch: Float32Array;
  /** The widest region of any layer (sizes the pairing scratch). */
  readonly widestRegion: number;
  /** The step whose batch the visible layers' `positive` buffers hold (-1: none). */
  positiveStep = -1;
  private readonly orders = new Map<number, Uint32Array>();

  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly data: ShardData,
  ) {
    const g = geometry;
    const net = g.net;
    const k = kernels;
    const rowsMax = Math.max(g.batchSize, g.chainRows);
    const tracked = (l: number, rows: number): Float32Array =>
      k.alloc(g.tracksLayer[l] ? rows * net.layers[l]!.size : 0);
    const stackRows = g.batchSize + g.chainRows;
    this.positive = net.layers.map((l) => tracked(l.index, g.batchSize));
    this.model = net.layers.map((l) => tracked(l.index, g.chainRows));
    this.stacked = net.layers.map((l) => tracked(l.index, stackRows));
    this.stackedUnscaled = net.layers.map((l) =>
      g.tracksLayer[l.index] && g.unscaledCopy[l.index] ? tracked(l.index, stackRows) : null,
    );
    // Packed whole, as Trainer packs them. Whether a pair of units is counted from bits depends
    // on their own rows only (odd marks are per unit), which both holders of a tile have alike:
    // units a shard does not refresh keep centred values, are marked odd, and are in no tile of
    // its own.
    this.bits = bitLayers(net, 'samples', g.batchSize, g.chainRows, (l) => g.tracksLayer[l]!);
    this.offsets = net.layers.map((l) => tracked(l.index, 1));
    this.batchMeans = net.layers.map((l) => tracked(l.index, 1));
    this.fields = net.layers.map((l) => k.alloc(rowsMax * g.ownWidth(l.index)));
    let widest = 1;
    for (const ranges of g.owners)
      for (const r of ranges) widest = Math.max(widest, r.end - r.start);
    this.widestRegion = widest;
    this.scratch = k.alloc(rowsMax * widest);
  }

  /** Offsets: hidden units at the neutral value, visible at the data means (as Trainer.trainEpoch). */
  initOffsets(): void {
    const g = this.geometry;
    for (const l of g.net.layers) {
      if (!g.tracksLayer[l.index]) continue;
      this.offsets[l.index]!.fill(l.type === UnitType.Bernoulli ? 0.5 : 0);
      if (g.options.centring && g.isVisible[l.index])
        this.dataMeans(l.index, this.offsets[l.index]!);
      this.kernels.upload(this.offsets[l.index]!);
    }
  }

  /** Column means of visible layer v over all data rows (Trainer.initVisibleOffsets). */
  private dataMeans(v: number, mu: Float32Array): void {
    const g = this.geometry;
    const off = g.visibleOffset[v]!;
    const all = columnMeans({ x: this.data.x, rows: this.data.rows, dims: g.visibleDims });
    mu.set(all.subarray(off, off + g.net.layers[v]!.size));
  }

  /** PersistentChains' initial draws (chainInit), for every layer this shard reads. */
  initChains(src: ParameterSource, site: RngSite): void {
    const g = this.geometry;
    const net = g.net;
    const k = this.kernels;
    const init = g.options.chainInit;
    const chainSite: RngSite = { ...site, step: 0, stream: Streams.chainInit };
    if (typeof init === 'object') {
      for (const name of Object.keys(init.means))
        if (!net.layers.some((l) => l.name === name))
          throw new SpecError(
            `chains.init.means.${name}`,
            `'${name}' is not a layer of this network`,
          );
    }
    const C = g.chainRows;
    for (const l of net.layers) {
      if (!g.tracksLayer[l.index]) continue;
      const x = this.model[l.index]!;
      const n = l.size;
      if (init === 'zeros') {
        x.fill(0);
        k.upload(x);
        continue;
      }
      const bias = k.alloc(n);
      const field = k.alloc(C * n);
      const means = typeof init === 'object' ? init.means[l.name] : undefined;
      if (means) {
        biasForMeans(l.type, means, bias, `chains.init.means.${l.name}`);
      } else if (init === 'biases') {
        src.bias(l.index, 0, n, bias);
      }
      k.upload(bias);
      chainSite.unitOffset = l.offset;
      k.sampleUnits(l.type, C, n, field, n, bias, 1, null, x, chainSite);
    }
  }

  /**
   * The minibatch order of an epoch, cached; orders of epochs before `appliedSteps`' are
   * dropped, since no update left to apply reads them.
   */
  private orderOf(epoch: number, appliedSteps: number): Uint32Array {
    let o = this.orders.get(epoch);
    if (!o) {
      const g = this.geometry;
      o = epochOrder(this.data.rows, g.options.seed, epoch);
      this.orders.set(epoch, o);
      for (const e of this.orders.keys())
        if (e < Math.floor(appliedSteps / g.stepsPerEpoch)) this.orders.delete(e);
    }
    return o;
  }

  /** Rows of step `step`'s batch, visible layer v, all columns, into dst (rows x size). */
  gatherData(step: number, v: number, dst: Float32Array, appliedSteps: number): void {
    const g = this.geometry;
    const n = g.net.layers[v]!.size;
    const d = g.visibleDims;
    const off = g.visibleOffset[v]!;
    const order = this.orderOf(Math.floor(step / g.stepsPerEpoch), appliedSteps);
    const start = (step % g.stepsPerEpoch) * g.batchSize;
    const R = g.batchRowsOf(step);
    const x = this.data.x;
    for (let r = 0; r < R; r++) {
      const row = order[start + r]! * d + off;
      dst.set(x.subarray(row, row + n), r * n);
    }
    this.kernels.upload(dst);
  }
}
