// The parameters a shard holds: biases of its units, its lateral layers whole, and for every
// connection touching its units the row slab of its from-units and (replicated tiles) the
// column slab of its to-units, cut into tiles by owner (see the ShardTrainer file header,
// "Ownership"). With owned tiles only the row slab: every weight is held once.
import type { Kernels } from '@spinmesh/kernels';
import type { ParameterSource } from './params.js';
import type { OwnerRange, ShardGeometry } from './shard-geometry.js';

/** A contiguous block of a connection's matrix held here, with its velocity and gradient. */
export interface Slab {
  firstRow: number;
  firstCol: number;
  /** Leading dimension (columns of the slab). */
  ld: number;
  data: Float32Array;
  velocity: Float32Array;
  gradient: Float32Array;
}

/** A tile F_a x T_b of a connection: rows of shard a's from-units, columns of shard b's to-units. */
export interface Tile {
  /** Owner of the rows (the `from` units): the tile's owner. */
  rowShard: number;
  /** Owner of the columns. */
  colShard: number;
  r0: number;
  r1: number;
  c0: number;
  c1: number;
  /** Where the tile lies in the slabs that hold it (the first gets the canonical GEMM). */
  dests: { slab: Slab; off: number }[];
  /** Pairing (asynchronous persistent chains, a cross tile): which side was drawn first, else null. */
  pair: TilePairing | null;
}

/**
 * The two sides of a cross-shard tile in the last model-phase sweep: layer `early` (units of
 * earlyShard) was drawn before layer `late` (units of lateShard), so late's final draw read
 * early's states.
 */
export interface TilePairing {
  early: number;
  earlyShard: number;
  /** Whether `early` is the tile's `from` side (rows), else its `to` side (columns). */
  earlyIsFrom: boolean;
  earlyStart: number;
  earlyEnd: number;
  late: number;
  lateShard: number;
  /** The stamp of early's states the last applied update paired with (-Infinity: none yet). */
  sigma: number;
}

/** A slab seen from one side: W[F_s, :] or W[:, T_s]. */
export interface SlabView {
  data: Float32Array;
  gradient: Float32Array;
  ld: number;
}

/** What this shard holds of one connection. */
export interface HeldConnection {
  index: number;
  from: number;
  to: number;
  fromSize: number;
  toSize: number;
  slabs: Slab[];
  tiles: Tile[];
  /** W[F_s, :] (rows of this shard's from-units), or null. */
  fromView: SlabView | null;
  /** W[:, T_s] (columns of this shard's to-units), or null. */
  toView: SlabView | null;
}

export class ShardParameters {
  /** Per layer: biases of the own units (empty: none), with velocities and gradients. */
  readonly bias: Float32Array[];
  readonly biasVelocity: Float32Array[];
  readonly biasGradient: Float32Array[];
  /** Per layer: the whole lateral matrix when this shard owns the (lateral) layer, else null. */
  readonly lateral: (Float32Array | null)[];
  readonly lateralVelocity: (Float32Array | null)[];
  readonly lateralGradient: (Float32Array | null)[];
  /** Per connection: what this shard holds of it, or null. */
  readonly connections: (HeldConnection | null)[];

  /** `pairing`: whether cross tiles record which side is drawn first (TilePairing). */
  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    src: ParameterSource,
    private readonly pairing: boolean,
  ) {
    const g = geometry;
    const net = g.net;
    const k = kernels;
    this.bias = net.layers.map((l) => k.alloc(g.ownWidth(l.index)));
    this.biasVelocity = net.layers.map((l) => k.alloc(g.ownWidth(l.index)));
    this.biasGradient = net.layers.map((l) => k.alloc(g.ownWidth(l.index)));
    for (const l of net.layers) {
      const r = g.ownRange[l.index];
      if (!r) continue;
      src.bias(l.index, r[0], r[1], this.bias[l.index]!);
      k.upload(this.bias[l.index]!);
    }
    this.lateral = net.layers.map((l) =>
      l.lateral && g.ownRange[l.index] ? k.alloc(l.size ** 2) : null,
    );
    this.lateralVelocity = this.lateral.map((x) => (x ? k.alloc(x.length) : null));
    this.lateralGradient = this.lateral.map((x) => (x ? k.alloc(x.length) : null));
    this.lateral.forEach((x, l) => {
      if (!x) return;
      src.lateral(l, x);
      k.upload(x);
    });
    this.connections = net.connections.map((c) => this.hold(c.index, c.from, c.to, src));
  }

  /** The pairings of the tiles held, in a fixed order (checkpoints rely on it). */
  pairings(): TilePairing[] {
    return this.connections.flatMap((h) => h?.tiles.flatMap((t) => (t.pair ? [t.pair] : [])) ?? []);
  }

  /** Row slab, column slab or the full matrix of a connection, and the tiles in them. */
  private hold(
    index: number,
    from: number,
    to: number,
    src: ParameterSource,
  ): HeldConnection | null {
    const g = this.geometry;
    const k = this.kernels;
    const fromSize = g.net.layers[from]!.size;
    const toSize = g.net.layers[to]!.size;
    const F = g.ownRange[from] ?? null;
    const T = g.ownRange[to] ?? null;
    if (!F && !T) return null;
    const slab = (r0: number, r1: number, c0: number, c1: number): Slab => {
      const ld = c1 - c0;
      const data = k.alloc((r1 - r0) * ld);
      src.weights(index, r0, r1, c0, c1, data);
      k.upload(data);
      const [velocity, gradient] = [k.alloc(data.length), k.alloc(data.length)];
      return { firstRow: r0, firstCol: c0, ld, data, velocity, gradient };
    };
    const slabs: Slab[] = [];
    let rowSlab: Slab | null = null;
    let colSlab: Slab | null = null;
    const fullF = F !== null && F[0] === 0 && F[1] === fromSize;
    const fullT = T !== null && T[0] === 0 && T[1] === toSize;
    if (g.owned) {
      // Owned tiles: the row band alone; the `to` side's fields come as partial fields.
      if (!F) return null;
      slabs.push((rowSlab = slab(F[0], F[1], 0, toSize)));
    } else if ((F && fullT) || (T && fullF)) {
      rowSlab = colSlab = slab(0, fromSize, 0, toSize);
      slabs.push(rowSlab);
    } else {
      if (F) slabs.push((rowSlab = slab(F[0], F[1], 0, toSize)));
      if (T) slabs.push((colSlab = slab(0, fromSize, T[0], T[1])));
    }
    const view = (s: Slab, off: number): SlabView => ({
      data: s.data.subarray(off),
      gradient: s.gradient.subarray(off),
      ld: s.ld,
    });
    return {
      index,
      from,
      to,
      fromSize,
      toSize,
      slabs,
      tiles: this.tiles(from, to, slabs),
      fromView: F && rowSlab ? view(rowSlab, (F[0] - rowSlab.firstRow) * rowSlab.ld) : null,
      toView: T && colSlab ? view(colSlab, T[0] - colSlab.firstCol) : null,
    };
  }

  /** The tiles of connection from->to that touch this shard, located in the slabs. */
  private tiles(from: number, to: number, slabs: Slab[]): Tile[] {
    const g = this.geometry;
    const tiles: Tile[] = [];
    for (const ra of g.owners[from]!) {
      for (const rb of g.owners[to]!) {
        if (ra.shard !== g.shard && (g.owned || rb.shard !== g.shard)) continue;
        const cross = this.pairing && ra.shard !== rb.shard;
        const tile: Tile = {
          rowShard: ra.shard,
          colShard: rb.shard,
          r0: ra.start,
          r1: ra.end,
          c0: rb.start,
          c1: rb.end,
          dests: [],
          pair: cross ? this.pairingOf(from, ra, to, rb) : null,
        };
        for (const s of slabs) {
          const rows = s.data.length / s.ld;
          const inRows = ra.start >= s.firstRow && ra.end <= s.firstRow + rows;
          if (inRows && rb.start >= s.firstCol && rb.end <= s.firstCol + s.ld)
            tile.dests.push({
              slab: s,
              off: (ra.start - s.firstRow) * s.ld + (rb.start - s.firstCol),
            });
        }
        tiles.push(tile);
      }
    }
    return tiles;
  }

  /** Which side of a cross-shard tile (from-range ra, to-range rb) the last sweep draws first. */
  private pairingOf(from: number, ra: OwnerRange, to: number, rb: OwnerRange): TilePairing {
    const last = this.geometry.plan.lastNegative;
    const earlyIsFrom = last[from]! < last[to]!;
    const [early, re, late, rl] = earlyIsFrom ? [from, ra, to, rb] : [to, rb, from, ra];
    return {
      early,
      earlyShard: re.shard,
      earlyIsFrom,
      earlyStart: re.start,
      earlyEnd: re.end,
      late,
      lateShard: rl.shard,
      sigma: -Infinity,
    };
  }
}
