// The numeric steps of the Boltzmann update, shared by Trainer and ShardTrainer so that the two
// apply the same operations on the same values (and agree bit for bit).
import { type Kernels, UnitType, bitWords } from '@spinmesh/kernels';
import type { ResolvedTrainOptions, Statistics } from './train-options.js';

/**
 * Step 1 of the Boltzmann update for one layer of n units whose R positive rows (`prim`) and C
 * negative rows (`neg`, stacked after them) hold its statistics: centres them by `mu` (none if
 * null) and, for a layer whose correlations are taken from these rows (`scaled`), scales them by
 * 1/R and -1/C, keeping the centred, unscaled rows in `scaled.sec` when the layer has one; and
 * writes the bias gradient of units [cols[0], cols[1]) into gb (none if `cols` is null). Trainer and
 * ShardTrainer both take it from here, so their updates stay the same operations.
 */
export function centreAndScale(
  k: Kernels,
  n: number,
  R: number,
  C: number,
  prim: Float32Array,
  neg: Float32Array,
  mu: Float32Array | null,
  scaled: { sec: Float32Array | null } | null,
  cols: readonly [number, number] | null,
  gb: Float32Array,
): void {
  const total = R + C;
  if (scaled) {
    if (scaled.sec) {
      if (mu) k.shiftScaleRows(total, n, prim, n, mu, 1);
      k.axpby(total * n, 1, prim, 0, scaled.sec);
      k.shiftScaleRows(R, n, prim, n, null, 1 / R);
      k.shiftScaleRows(C, n, neg, n, null, -1 / C);
    } else {
      k.shiftScaleRows(R, n, prim, n, mu, 1 / R);
      k.shiftScaleRows(C, n, neg, n, mu, -1 / C);
    }
    if (cols) k.colSums(total, cols[1] - cols[0], prim.subarray(cols[0]), n, 1, 0, gb);
  } else {
    if (mu) k.shiftScaleRows(total, n, prim, n, mu, 1);
    if (cols) {
      k.colSums(R, cols[1] - cols[0], prim.subarray(cols[0]), n, 1 / R, 0, gb);
      k.colSums(C, cols[1] - cols[0], neg.subarray(cols[0]), n, -1 / C, 1, gb);
    }
  }
}

/**
 * The correlation of a lateral layer over `rows` rows, g = S^T U (n x n), made exactly symmetric
 * with a zero diagonal: (g_ij + g_ji) / 2 reads units i and j only. Trainer and ShardTrainer
 * both take it from here, so their lateral updates stay the same operations.
 */
export function lateralCorrelation(
  k: Kernels,
  n: number,
  rows: number,
  S: Float32Array,
  U: Float32Array,
  g: Float32Array,
): void {
  k.sgemm(true, false, n, n, rows, 1, S, n, U, n, 0, g, n);
  k.download(g);
  for (let a = 0; a < n; a++) {
    g[a * n + a] = 0;
    for (let b = a + 1; b < n; b++) {
      const s = 0.5 * (g[a * n + b]! + g[b * n + a]!);
      g[a * n + b] = s;
      g[b * n + a] = s;
    }
  }
  k.upload(g);
}

/**
 * Step 2 for a block of weights: the correlation of its `from` units (columns of S, m of them)
 * with its `to` units (columns of U, w of them) over the `rows` stacked rows, out = S^T U
 * (m x w, row stride ldOut). Trainer takes whole matrices; ShardTrainer one tile at a time, with
 * the same shape and operands on both holders of a tile (each writes it where it keeps it).
 *
 * With `bits` (R positive and C negative rows, both layers' column bits), the value of a pair
 * of units whose statistics are all 0 or 1 is counted from the bits instead
 * (Kernels.bitCorrelation; at 784x500 over 100 + 100 rows, packing included, 0.33 ms against
 * 1.3 ms for one thread's GEMM: `npm run bench -- kernels`): the same centred correlation,
 * exact but for one rounding. A pair with an odd unit keeps the GEMM's value.
 * Either way each value depends only on its own two units and their rows, so a tile of the
 * result is exactly that block of the whole matrix.
 */
export function weightCorrelation(
  k: Kernels,
  m: number,
  w: number,
  rows: number,
  S: Float32Array,
  ldS: number,
  U: Float32Array,
  ldU: number,
  out: Float32Array,
  ldOut: number,
  bits: BlockBits | null = null,
): void {
  const odd = bits !== null && (anyOdd(bits.from, bits.r0, m) || anyOdd(bits.to, bits.c0, w));
  if (bits === null || odd) k.sgemm(true, false, m, w, rows, 1, S, ldS, U, ldU, 0, out, ldOut);
  if (bits === null) return;
  const { R, C, from, r0, to, c0, mu, lam } = bits;
  const wr = bitWords(R);
  const wc = bitWords(C);
  k.bitCorrelation(
    m,
    w,
    R,
    C,
    from.pos.subarray(r0 * wr),
    from.neg.subarray(r0 * wc),
    to.pos.subarray(c0 * wr),
    to.neg.subarray(c0 * wc),
    mu ? mu.subarray(r0) : null,
    lam ? lam.subarray(c0) : null,
    odd ? from.odd.subarray(r0) : null,
    odd ? to.odd.subarray(c0) : null,
    out,
    ldOut,
  );
}

/** Whether a unit of [a, a + n) has a value other than 0 and 1 in the packed rows. */
function anyOdd(bits: StatisticBits, a: number, n: number): boolean {
  if (bits.binary) return false;
  for (let i = a; i < a + n; i++) if (bits.odd[i]) return true;
  return false;
}

/**
 * Column bits of one layer's stacked statistics (Kernels.packColumns of its positive and its
 * negative rows, taken before centring), for `weightCorrelation`. `odd[i]` marks a unit with a
 * value other than 0 and 1 in them (real-valued data, or values this shard does not refresh),
 * `binary` that there is none: with sampled statistics (as a cluster always has) the states
 * of Bernoulli units are 0 or 1, and the data may be.
 */
export interface StatisticBits {
  pos: Uint32Array;
  neg: Uint32Array;
  odd: Uint8Array;
  binary: boolean;
}

/** Room for the column bits of a layer of n units over up to maxR and maxC rows. */
function statisticBits(n: number, maxR: number, maxC: number): StatisticBits {
  return {
    pos: new Uint32Array(n * bitWords(maxR)),
    neg: new Uint32Array(n * bitWords(maxC)),
    odd: new Uint8Array(n),
    binary: false,
  };
}

/** Packs rows [0, R) and [R, R + C) of a layer's raw stacked statistics (n units a row). */
export function packStatistics(
  k: Kernels,
  n: number,
  R: number,
  C: number,
  prim: Float32Array,
  bits: StatisticBits,
): void {
  bits.odd.fill(0);
  const pos = k.packColumns(R, n, prim, n, bits.pos, bits.odd);
  const neg = k.packColumns(C, n, prim.subarray(R * n), n, bits.neg, bits.odd);
  bits.binary = pos && neg;
}

/**
 * What `weightCorrelation` counts a block from: the positive and negative row counts, both
 * layers' column bits and where the block starts in each, their centring offsets (or null).
 */
export interface BlockBits {
  R: number;
  C: number;
  from: StatisticBits;
  r0: number;
  to: StatisticBits;
  c0: number;
  mu: Float32Array | null;
  lam: Float32Array | null;
}

/**
 * Which layers' statistics are worth packing into bits: with sampled statistics, the Bernoulli
 * layers at either end of a connection (Ising states are -1 or 1, Gaussian ones real; laterals
 * keep their GEMM). Null for the others.
 */
export function bitLayers(
  net: {
    layers: readonly { index: number; size: number; type: UnitType }[];
    connections: readonly { from: number; to: number }[];
  },
  statistics: Statistics,
  maxR: number,
  maxC: number,
  include: (layer: number) => boolean = () => true,
): (StatisticBits | null)[] {
  return net.layers.map((l) =>
    statistics === 'samples' &&
    l.type === UnitType.Bernoulli &&
    include(l.index) &&
    net.connections.some((c) => c.from === l.index || c.to === l.index)
      ? statisticBits(l.size, maxR, maxC)
      : null,
  );
}

/**
 * Step 3 under centring, mapping the centred gradient to the standard parameters: a bias
 * gradient loses its unit's weight gradients times the offsets of the units at their other end.
 * For the `rows` x `cols` block g (leading dimension ld): `side` 'rows' subtracts g . offsets
 * (one per column) from the row units' bias gradient, 'cols' subtracts g^T . offsets (one per
 * row) from the column units'. A lateral matrix is its own other side ('rows', n x n).
 */
export function centringMap(
  k: Kernels,
  side: 'rows' | 'cols',
  rows: number,
  cols: number,
  g: Float32Array,
  ld: number,
  offsets: Float32Array,
  biasGrad: Float32Array,
): void {
  if (side === 'rows') k.sgemm(false, false, rows, 1, cols, -1, g, ld, offsets, 1, 1, biasGrad, 1);
  else k.sgemm(true, false, cols, 1, rows, -1, g, ld, offsets, 1, 1, biasGrad, 1);
}

/**
 * The last part of the update of one parameter array (Trainer and ShardTrainer alike): weight
 * decay into the gradient g (weights only), then momentum into the velocity v and v into the
 * data, or without momentum lr x g into the data.
 */
export function applyGradient(
  k: Kernels,
  data: Float32Array,
  v: Float32Array,
  g: Float32Array,
  lr: number,
  o: Pick<ResolvedTrainOptions, 'momentum' | 'weightDecay'>,
  isWeight: boolean,
): void {
  const len = data.length;
  if (isWeight && o.weightDecay > 0) k.axpby(len, -o.weightDecay, data, 1, g);
  if (o.momentum > 0) {
    k.axpby(len, lr, g, o.momentum, v);
    k.axpby(len, 1, v, 1, data);
  } else {
    k.axpby(len, lr, g, 1, data);
  }
}
