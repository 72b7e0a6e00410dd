// The update of one step on a shard: Trainer.update restricted to the parameters the shard
// holds, operation for operation on the same values, so that replicas and the single-process
// Trainer agree bit for bit (see the ShardTrainer file header, "Update").
import type { Kernels } from '@spinmesh/kernels';
import { learningRateAt } from '../schedule.js';
import {
  applyGradient,
  centreAndScale,
  centringMap,
  lateralCorrelation,
  packStatistics,
  weightCorrelation,
} from '../train-rule.js';
import type { HeldConnection, ShardParameters } from './shard-holdings.js';
import type { ShardGeometry } from './shard-geometry.js';
import type { SpinInbox } from './shard-inbox.js';
import type { UpdateMonitor } from './shard-monitor.js';
import type { PairingBook } from './shard-pairing.js';
import type { ShardStates } from './shard-states.js';

/** This shard's own final states of one step, kept until its update is applied (own columns only). */
export interface OwnStates {
  step: number;
  positive: Float32Array[];
  model: Float32Array[];
}

export class ShardUpdater {
  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly states: ShardStates,
    private readonly params: ShardParameters,
    private readonly inbox: SpinInbox,
    private readonly pairing: PairingBook,
    private readonly monitor: UpdateMonitor,
  ) {
    const g = geometry;
    this.rowScratch = kernels.alloc(g.owned ? g.batchSize + g.chainRows : 0);
  }

  /** Owned tiles: one value per stacked row (the centring correction's S mu). */
  private readonly rowScratch: Float32Array;

  /**
   * Stacks the statistics of step u into `stacked`: the data, this shard's own states and its
   * peers' (R positive rows, then C model rows). `appliedSteps`: updates applied so far.
   */
  stack(u: number, own: OwnStates, appliedSteps: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const s = this.states;
    const R = g.batchRowsOf(u);
    const C = g.modelRowsOf(u);
    for (const l of g.net.layers) {
      const x = l.index;
      if (!g.tracksLayer[x]) continue;
      const n = l.size;
      const stacked = s.stacked[x]!;
      k.download(stacked);
      if (g.isVisible[x]) {
        // the batch: still in `positive` when no later step has begun (always at staleness 0)
        const X = s.positive[x]!;
        k.download(X);
        if (s.positiveStep === u) k.copyBlock(R, n, X, 0, n, stacked, 0, n);
        else s.gatherData(u, x, stacked, appliedSteps);
      }
      const r = g.ownRange[x];
      if (r) {
        const w = r[1] - r[0];
        if (!g.isVisible[x]) k.copyBlock(R, w, own.positive[x]!, 0, w, stacked, r[0], n);
        k.copyBlock(C, w, own.model[x]!, 0, w, stacked, R * n + r[0], n);
      }
      k.upload(stacked);
      if (g.readsLayer[x]) this.stackPeers(u, x, R, stacked);
    }
  }

  /** The peers' final states of layer x at step u into the stacked rows. */
  private stackPeers(u: number, x: number, R: number, stacked: Float32Array): void {
    const g = this.geometry;
    const inbox = this.inbox;
    for (const rg of g.owners[x]!) {
      if (rg.shard === g.shard) continue;
      const box = inbox.boxes[g.region(x, rg.shard)]!;
      // each row group's final states, into its rows
      if (!g.isVisible[x])
        for (const p of g.plan.finalPositive[x]!) {
          const [r0, r1] = g.stageRows(u, p);
          inbox.unpackTo(box.get(g.stamp(u, p))!, x, rg, r1 - r0, stacked, r0);
        }
      for (const p of g.plan.finalNegative[x]!) {
        const [r0, r1] = g.stageRows(u, p);
        inbox.unpackTo(box.get(g.stamp(u, p))!, x, rg, r1 - r0, stacked, R + r0);
      }
    }
  }

  /**
   * Trainer.update restricted to what this shard holds, on the statistics in `stacked` (R
   * positive rows, C negative rows), with the learning rate of step u.
   */
  apply(u: number, R: number, C: number): void {
    const o = this.geometry.options;
    const lr = learningRateAt(o.learningRate, o.schedule, u);
    const monitor = this.monitor;
    const measured = monitor.requested ? monitor.correlations(u, lr, R, C) : null;
    monitor.requested = false;
    this.centreStatistics(R, C);
    this.correlate(u, R, C);
    if (o.centring) this.centringCorrection(R, C);
    this.step(lr);
    if (measured) monitor.last = { ...measured, updateNorm: monitor.ownedUpdateNorm(lr) };
    if (o.centring) this.moveOffsets();
  }

  /** 1. Centres and scales the stacked statistics; bias gradients of own units. */
  private centreStatistics(R: number, C: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const s = this.states;
    const centring = g.options.centring;
    for (const l of g.net.layers) {
      const i = l.index;
      if (!g.tracksLayer[i]) continue;
      const n = l.size;
      const stacked = s.stacked[i]!;
      const bits = s.bits[i];
      if (bits) packStatistics(k, n, R, C, stacked, bits);
      if (centring) k.colSums(R, n, stacked, n, 1 / R, 0, s.batchMeans[i]!);
      const mu = centring ? s.offsets[i]! : null;
      const scaled = g.stackScaled[i] ? { sec: s.stackedUnscaled[i] ?? null } : null;
      const own = g.ownRange[i] ?? null;
      const gb = this.params.biasGradient[i]!;
      centreAndScale(k, n, R, C, stacked, stacked.subarray(R * n), mu, scaled, own, gb);
    }
  }

  /** 2. Correlation GEMMs: laterals whole, then the weights tile by tile. */
  private correlate(u: number, R: number, C: number): void {
    const s = this.states;
    for (const l of this.geometry.net.layers) {
      const gradient = this.params.lateralGradient[l.index];
      if (!gradient) continue;
      const S = s.stacked[l.index]!;
      const U = s.stackedUnscaled[l.index] ?? S;
      lateralCorrelation(this.kernels, l.size, R + C, S, U, gradient);
    }
    for (const h of this.params.connections) if (h) this.correlateTiles(h, u, R, C);
  }

  /**
   * Each tile by one canonical call (same shape and operands on both replicas; only where it
   * writes differs) into the first slab that holds it, then copied into the others.
   */
  private correlateTiles(h: HeldConnection, u: number, R: number, C: number): void {
    const k = this.kernels;
    const s = this.states;
    const centring = this.geometry.options.centring;
    const S = s.stacked[h.from]!;
    const U = s.stackedUnscaled[h.to] ?? s.stacked[h.to]!;
    const [fromBits, toBits] = [s.bits[h.from], s.bits[h.to]];
    const mu = centring ? s.offsets[h.from]! : null;
    const lam = centring ? s.offsets[h.to]! : null;
    for (const tile of h.tiles) {
      const m = tile.r1 - tile.r0;
      const w = tile.c1 - tile.c0;
      let rows = S.subarray(tile.r0);
      let ldRows = h.fromSize;
      let cols = U.subarray(tile.c0);
      let ldCols = h.toSize;
      const paired = tile.pair ? this.pairing.pairedSide(u, tile.pair, R, C) : null;
      if (paired && tile.pair!.earlyIsFrom) [rows, ldRows] = [paired, m];
      else if (paired) [cols, ldCols] = [paired, w];
      const [first, ...others] = tile.dests;
      const out = first!.slab.gradient;
      const ld = first!.slab.ld;
      // Counted from bits where both layers have them and the rows are the stacked ones (a
      // paired side is read from other steps' states: its GEMM stands).
      const bits =
        fromBits && toBits && !paired
          ? { R, C, from: fromBits, r0: tile.r0, to: toBits, c0: tile.c0, mu, lam }
          : null;
      const at = out.subarray(first!.off);
      weightCorrelation(k, m, w, R + C, rows, ldRows, cols, ldCols, at, ld, bits);
      if (others.length === 0) continue;
      k.download(out);
      for (const d of others) {
        const G = d.slab.gradient;
        k.download(G);
        k.copyBlock(m, w, out, first!.off, ld, G, d.off, d.slab.ld);
        k.upload(G);
      }
    }
  }

  /** 3. Centring: db -= (weight updates of the unit's synapses) . (the other side's offsets). */
  private centringCorrection(R: number, C: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const p = this.params;
    const offsets = this.states.offsets;
    for (const l of g.net.layers) {
      const gradient = p.lateralGradient[l.index];
      if (!gradient) continue;
      const n = l.size;
      centringMap(k, 'rows', n, n, gradient, n, offsets[l.index]!, p.biasGradient[l.index]!);
    }
    for (const h of p.connections) {
      if (!h) continue;
      const F = g.ownRange[h.from];
      const T = g.ownRange[h.to];
      const [gf, gt] = [p.biasGradient[h.from]!, p.biasGradient[h.to]!];
      const fv = h.fromView;
      if (F && fv)
        centringMap(k, 'rows', F[1] - F[0], h.toSize, fv.gradient, fv.ld, offsets[h.to]!, gf);
      const tv = h.toView;
      if (T && tv)
        centringMap(k, 'cols', h.fromSize, T[1] - T[0], tv.gradient, tv.ld, offsets[h.from]!, gt);
    }
    if (g.owned) this.ownedCentringCorrection(R, C);
  }

  /**
   * Owned tiles: the `to` side's correction sums over every from-unit's weight update, most of
   * them held elsewhere. Since the gradient is S^T U (the stacked statistics), the sum
   * G^T mu = U^T (S mu) needs only the from-layer's statistics, which the peers send as spins:
   * a product over rows instead of a reduction over shards (the same value up to rounding).
   */
  private ownedCentringCorrection(R: number, C: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const s = this.states;
    const rows = R + C;
    for (const c of g.net.connections) {
      const T = g.ownRange[c.to];
      if (!T) continue;
      const nf = g.net.layers[c.from]!.size;
      const nt = g.net.layers[c.to]!.size;
      const S = s.stacked[c.from]!;
      const U = s.stackedUnscaled[c.to] ?? s.stacked[c.to]!;
      const r = this.rowScratch;
      k.sgemm(false, false, rows, 1, nf, 1, S, nf, s.offsets[c.from]!, 1, 0, r, 1);
      const gt = this.params.biasGradient[c.to]!;
      k.sgemm(true, false, T[1] - T[0], 1, rows, -1, U.subarray(T[0]), nt, r, 1, 1, gt, 1);
    }
  }

  /** 4. Decay, momentum, apply. */
  private step(lr: number): void {
    const g = this.geometry;
    const k = this.kernels;
    const p = this.params;
    const o = g.options;
    const apply = (
      data: Float32Array,
      vel: Float32Array,
      grad: Float32Array,
      isW: boolean,
    ): void => {
      if (data.length > 0) applyGradient(k, data, vel, grad, lr, o, isW);
    };
    for (const l of g.net.layers) {
      const i = l.index;
      if (g.ownRange[i]) apply(p.bias[i]!, p.biasVelocity[i]!, p.biasGradient[i]!, false);
      const lateral = p.lateral[i];
      if (lateral) apply(lateral, p.lateralVelocity[i]!, p.lateralGradient[i]!, true);
    }
    for (const h of p.connections)
      if (h) for (const s of h.slabs) apply(s.data, s.velocity, s.gradient, true);
  }

  /** 5. Offsets (own units and replicas alike): running means of the data phase. */
  private moveOffsets(): void {
    const g = this.geometry;
    const s = this.states;
    const nu = g.options.centringRate;
    for (const l of g.net.layers)
      if (g.tracksLayer[l.index])
        this.kernels.axpby(l.size, nu, s.batchMeans[l.index]!, 1 - nu, s.offsets[l.index]!);
  }
}
