// Pairing (asynchronous persistent chains): which peer states each final draw read, so that an
// update pairs a cross tile's late side with the states of the early side it was drawn from
// (see the ShardTrainer file header, "Pairing"). Both holders of a tile build the same rows.
import type { Kernels } from '@spinmesh/kernels';
import { type CodecArray, concatBytes } from './codec.js';
import { FormatError } from '../errors.js';
import type { TilePairing } from './shard-holdings.js';
import type { ShardGeometry } from './shard-geometry.js';
import type { SpinInbox } from './shard-inbox.js';
import type { ShardStates } from './shard-states.js';
import type { ShardTally } from './shard-tally.js';

export class PairingBook {
  /** Per layer this shard draws first in a paired tile: its own model-phase states by stamp (packed). */
  private readonly ownHistory: (Map<number, Uint8Array> | null)[];
  /**
   * Per unapplied step, the stamps of the peer states its final draws read, by
   * readKey(drawn layer, peer region).
   */
  private readonly ownReads = new Map<number, Map<number, number>>();
  /** Per unapplied step, the reads peers reported with their final draws, by region. */
  private readonly peerReads = new Map<number, Map<number, readonly number[]>>();
  /** Per region: states at stamps >= keepFrom may still be paired with (Infinity: none). */
  readonly keepFrom: Float64Array;
  private readonly scratch: Float32Array;

  /** `pairs`: the pairings of the tiles this shard holds, in a fixed order (checkpoints). */
  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly states: ShardStates,
    private readonly inbox: SpinInbox,
    private readonly tally: ShardTally,
    private readonly pairs: TilePairing[],
  ) {
    const g = geometry;
    this.scratch = kernels.alloc(g.pairing ? (g.batchSize + g.chainRows) * states.widestRegion : 0);
    this.keepFrom = new Float64Array(g.layerCount * g.shards).fill(Infinity);
    const earlySides = new Set(pairs.filter((q) => q.earlyShard === g.shard).map((q) => q.early));
    this.ownHistory = g.net.layers.map((l) => (earlySides.has(l.index) ? new Map() : null));
    if (g.pairing) this.keepChainStates(-1);
    this.updateKeepFrom();
  }

  /** The key of a read in ownReads: the layer drawn, the peer region it read. */
  private readKey(l: number, region: number): number {
    return l * this.geometry.layerCount * this.geometry.shards + region;
  }

  /** The oldest stamp of each region a paired tile may still read (its last sigma). */
  private updateKeepFrom(): void {
    this.keepFrom.fill(Infinity);
    for (const q of this.pairs) {
      const idx = this.geometry.region(q.early, q.earlyShard);
      this.keepFrom[idx] = Math.min(this.keepFrom[idx]!, q.sigma);
    }
  }

  /**
   * The chain states as they are now, packed like messages: this shard's own (drawn in the last
   * sweep of step `step`; -1: the initial chains) and its replicas of its peers' (at their
   * stamps).
   */
  private keepChainStates(step: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const C = g.chainRows;
    const scratch = this.states.scratch;
    const packRegion = (l: number, a: number, b: number): Uint8Array => {
      const n = g.net.layers[l]!.size;
      const w = b - a;
      const X = this.states.model[l]!;
      k.download(X);
      k.copyBlock(C, w, X, a, n, scratch, 0, w);
      k.upload(scratch);
      const packed = new Uint8Array(Math.ceil((C * w) / 8));
      k.packSpins(C * w, scratch, packed);
      return packed;
    };
    for (const l of g.net.layers) {
      const r = g.ownRange[l.index];
      const history = this.ownHistory[l.index];
      const last = g.plan.lastNegative[l.index]!;
      if (r && history)
        history.set(step < 0 ? -1 : g.stamp(step, last), packRegion(l.index, r[0], r[1]));
      for (const rg of g.owners[l.index]!) {
        const idx = g.region(l.index, rg.shard);
        const box = this.inbox.boxes[idx];
        const stamp = this.inbox.modelStamp[idx]!;
        if (box && rg.shard !== g.shard && Number.isFinite(stamp))
          box.set(stamp, packRegion(l.index, rg.start, rg.end));
      }
    }
  }

  /** Keeps this shard's own model-phase spins of layer l at `stamp` if a paired tile may read them. */
  noteOwnDraw(l: number, stamp: number, packed: Uint8Array): void {
    this.ownHistory[l]?.set(stamp, packed);
  }

  /**
   * The stamps of the peer states the final draw of layer l at step t read, kept for the update
   * of step t and returned as (layer, shard, stamp) triples for the message.
   */
  recordReads(l: number, t: number): number[] | undefined {
    const g = this.geometry;
    if (!g.pairing) return undefined;
    let mine = this.ownReads.get(t);
    if (!mine) this.ownReads.set(t, (mine = new Map()));
    const reads: number[] = [];
    for (const m of g.neighbours[l]!) {
      for (const r of g.owners[m]!) {
        if (r.shard === g.shard) continue;
        const idx = g.region(m, r.shard);
        const stamp = this.inbox.modelStamp[idx]!;
        mine.set(this.readKey(l, idx), stamp);
        reads.push(m, r.shard, stamp);
      }
    }
    return reads;
  }

  /** Keeps the reads a peer reported with its final draw of layer `layer` at step `step`. */
  notePeerReads(step: number, layer: number, from: number, reads: readonly number[]): void {
    let byRegion = this.peerReads.get(step);
    if (!byRegion) this.peerReads.set(step, (byRegion = new Map()));
    byRegion.set(this.geometry.region(layer, from), reads.slice());
  }

  /** The update of step u is applied: its reads are no longer needed. */
  forget(u: number): void {
    this.ownReads.delete(u);
    this.peerReads.delete(u);
  }

  /** Drops the own states no paired tile can read any more. */
  prune(): void {
    const g = this.geometry;
    this.updateKeepFrom();
    this.ownHistory.forEach((history, l) => {
      if (!history) return;
      const keep = this.keepFrom[g.region(l, g.shard)]!;
      for (const stamp of history.keys()) if (!(stamp >= keep)) history.delete(stamp);
    });
  }

  /** The stamp of early's states that late's final draw of step u read (NaN: unknown). */
  private sigmaOf(u: number, q: TilePairing): number {
    const g = this.geometry;
    const earlyRegion = g.region(q.early, q.earlyShard);
    if (q.lateShard === g.shard)
      return this.ownReads.get(u)?.get(this.readKey(q.late, earlyRegion)) ?? NaN;
    let sigma = NaN;
    const reads = this.peerReads.get(u)?.get(g.region(q.late, q.lateShard)) ?? [];
    for (let i = 0; i < reads.length; i += 3)
      if (reads[i] === q.early && reads[i + 1] === q.earlyShard) sigma = reads[i + 2]!;
    return sigma;
  }

  /**
   * The stacked operand of a tile's early side when the final draw of its late side read the
   * early states at an older stamp than lockstep's (else null: the stacked layer as it is).
   * Rows: the data phase as stacked, then early's states at that stamp, centred and scaled as
   * the stacked layer is. Both holders of the tile build the same operand.
   */
  pairedSide(u: number, q: TilePairing, R: number, C: number): Float32Array | null {
    const g = this.geometry;
    const k = this.kernels;
    const exact = g.stamp(u, g.plan.lastNegative[q.early]!);
    const sigma = this.sigmaOf(u, q);
    const packed =
      sigma === exact
        ? null
        : q.earlyShard === g.shard
          ? this.ownHistory[q.early]?.get(sigma)
          : this.inbox.boxes[g.region(q.early, q.earlyShard)]?.get(sigma);
    if (Number.isNaN(sigma) || packed === undefined)
      throw new Error(
        `shard ${g.shard}, update ${u}: the states of layer ${q.early} (shard ${q.earlyShard}) that the ` +
          `final draw of layer ${q.late} (shard ${q.lateShard}) read are unknown (a protocol bug)`,
      );
    q.sigma = sigma;
    if (packed === null) return null;
    this.tally.counters.stalePairings++;
    const n = g.net.layers[q.early]!.size;
    const w = q.earlyEnd - q.earlyStart;
    const s = this.states;
    const stacked = q.earlyIsFrom
      ? s.stacked[q.early]!
      : (s.stackedUnscaled[q.early] ?? s.stacked[q.early]!);
    const buf = this.scratch;
    k.download(stacked);
    k.download(buf);
    k.copyBlock(R, w, stacked, q.earlyStart, n, buf, 0, w);
    k.upload(buf);
    const neg = buf.subarray(R * w, (R + C) * w);
    k.unpackSpins(C * w, packed, g.offValue[q.early]!, neg);
    const mu = g.options.centring ? s.offsets[q.early]!.subarray(q.earlyStart, q.earlyEnd) : null;
    k.shiftScaleRows(C, w, neg, w, mu, q.earlyIsFrom ? -1 / C : 1);
    return buf;
  }

  /** The arrays a checkpoint keeps: own history (index triples and bytes) and each tile's sigma. */
  checkpointArrays(): [string, CodecArray][] {
    const index: number[] = [];
    const parts: Uint8Array[] = [];
    this.ownHistory.forEach((history, l) => {
      for (const [stamp, bytes] of history ?? []) {
        index.push(l, stamp, bytes.length);
        parts.push(bytes);
      }
    });
    return [
      ['pairing.hist.index', Float64Array.from(index)],
      ['pairing.hist.bytes', concatBytes(parts)],
      ['pairing.sigma', Float64Array.from(this.pairs.map((q) => q.sigma))],
    ];
  }

  /**
   * After a restore: the own states peers may still pair with and each tile's last pairing, as
   * checkpointed (the inbox holds the peers' states); a checkpoint of a lockstep run (no pairing
   * arrays) needs only the chain states, at their lockstep stamps.
   */
  restore(arrays: Map<string, CodecArray>, step: number): void {
    for (const history of this.ownHistory) history?.clear();
    const index = arrays.get('pairing.hist.index');
    const bytes = arrays.get('pairing.hist.bytes');
    const sigma = arrays.get('pairing.sigma');
    const pairs = this.pairs;
    if (index !== undefined || bytes !== undefined || sigma !== undefined) {
      if (
        !(index instanceof Float64Array) ||
        !(bytes instanceof Uint8Array) ||
        !(sigma instanceof Float64Array) ||
        sigma.length !== pairs.length
      )
        throw new FormatError('checkpoint', 'has damaged pairing arrays');
      let off = 0;
      for (let i = 0; i < index.length; i += 3) {
        const history = this.ownHistory[index[i]!];
        const len = index[i + 2]!;
        if (!history || off + len > bytes.length)
          throw new FormatError('checkpoint', 'has a damaged pairing history');
        history.set(index[i + 1]!, bytes.slice(off, off + len));
        off += len;
      }
      pairs.forEach((q, i) => (q.sigma = sigma[i]!));
    } else {
      for (const q of pairs) q.sigma = -Infinity;
      this.keepChainStates(step - 1);
    }
    this.ownReads.clear();
    this.peerReads.clear();
    this.updateKeepFrom();
  }
}
