// Measures one update on request (ShardUpdateStats) over the weights and laterals this shard
// owns. Numeric loops over the stacked states, kept apart from the rule they watch.
import type { Kernels } from '@spinmesh/kernels';
import type { ShardGeometry } from './shard-geometry.js';
import type { ShardParameters } from './shard-holdings.js';
import type { ShardStates } from './shard-states.js';
import type { ShardUpdateStats } from './shard-types.js';

/** Sum over rows r of (sum_i x_ri)(sum_j x_rj), i over columns r0..r1 of S, j over c0..c1 of U. */
function blockSum(
  S: Float32Array,
  ldS: number,
  r0: number,
  r1: number,
  U: Float32Array,
  ldU: number,
  c0: number,
  c1: number,
  row0: number,
  rows: number,
): number {
  let s = 0;
  for (let r = row0; r < row0 + rows; r++) {
    let a = 0;
    let b = 0;
    for (let i = r0; i < r1; i++) a += S[r * ldS + i]!;
    for (let j = c0; j < c1; j++) b += U[r * ldU + j]!;
    s += a * b;
  }
  return s;
}

/**
 * Sum of squares of a rows x w block (leading dimension ld). A function of its own, not a
 * closure called once per tile: that one's loop ran unoptimized and boxed every float it added
 * (V8's sampling heap profiler: 15 MB in 3 s on a 784-500 worker, for a figure of the metrics).
 */
function sumOfSquares(x: Float32Array, off: number, rows: number, w: number, ld: number): number {
  let s = 0;
  for (let i = 0; i < rows; i++) {
    const o = off + i * ld;
    for (let j = 0; j < w; j++) {
      const v = x[o + j]!;
      s += v * v;
    }
  }
  return s;
}

/** Sum over rows of sum over i != j of x_ri x_rj = (sum_i x_ri)^2 - sum_i x_ri^2. */
function offDiagonalSum(X: Float32Array, n: number, row0: number, rows: number): number {
  let s = 0;
  for (let r = row0; r < row0 + rows; r++) {
    let a = 0;
    let q = 0;
    for (let i = 0; i < n; i++) {
      const x = X[r * n + i]!;
      a += x;
      q += x * x;
    }
    s += a * a - q;
  }
  return s;
}

export class UpdateMonitor {
  /** Measure the next update applied. */
  requested = false;
  /** The last update measured, or null. */
  last: ShardUpdateStats | null = null;

  constructor(
    private readonly geometry: ShardGeometry,
    private readonly kernels: Kernels,
    private readonly states: ShardStates,
    private readonly params: ShardParameters,
  ) {}

  /** <x_i x_j> means over the owned weights, from the raw stacked states (before centring). */
  correlations(
    step: number,
    learningRate: number,
    R: number,
    C: number,
  ): Omit<ShardUpdateStats, 'updateNorm'> {
    const g = this.geometry;
    const k = this.kernels;
    const stacked = this.states.stacked;
    let weights = 0;
    let data = 0;
    let model = 0;
    for (const h of this.params.connections) {
      if (!h) continue;
      const S = stacked[h.from]!;
      const U = stacked[h.to]!;
      k.download(S);
      k.download(U);
      for (const t of h.tiles) {
        if (t.rowShard !== g.shard) continue;
        weights += (t.r1 - t.r0) * (t.c1 - t.c0);
        data += blockSum(S, h.fromSize, t.r0, t.r1, U, h.toSize, t.c0, t.c1, 0, R) / R;
        model += blockSum(S, h.fromSize, t.r0, t.r1, U, h.toSize, t.c0, t.c1, R, C) / C;
      }
    }
    for (const l of g.net.layers) {
      if (!this.params.lateral[l.index] || !g.ownRange[l.index]) continue;
      const n = l.size;
      const X = stacked[l.index]!;
      k.download(X);
      weights += n * (n - 1);
      data += offDiagonalSum(X, n, 0, R) / R;
      model += offDiagonalSum(X, n, R, C) / C;
    }
    return {
      step,
      learningRate,
      weights,
      dataCorrelation: weights > 0 ? data / weights : NaN,
      modelCorrelation: weights > 0 ? model / weights : NaN,
    };
  }

  /** Norm of the change the update just applied to the owned weights and laterals. */
  ownedUpdateNorm(lr: number): number {
    const g = this.geometry;
    const k = this.kernels;
    const m = g.options.momentum;
    let sq = 0;
    // The change is the velocity with momentum, else lr x the gradient (decay included).
    const add = (x: Float32Array, off: number, rows: number, w: number, ld: number): void => {
      k.download(x);
      const s = sumOfSquares(x, off, rows, w, ld);
      sq += m > 0 ? s : lr * lr * s;
    };
    for (const h of this.params.connections) {
      if (!h) continue;
      for (const t of h.tiles) {
        if (t.rowShard !== g.shard) continue;
        const d = t.dests[0]!;
        const slab = d.slab;
        add(m > 0 ? slab.velocity : slab.gradient, d.off, t.r1 - t.r0, t.c1 - t.c0, slab.ld);
      }
    }
    const p = this.params;
    for (const l of g.net.layers) {
      if (!p.lateral[l.index] || !g.ownRange[l.index]) continue;
      const n = l.size;
      add(m > 0 ? p.lateralVelocity[l.index]! : p.lateralGradient[l.index]!, 0, n, n, n);
    }
    return Math.sqrt(sq);
  }
}
