// Exact log partition function, free energies and log-likelihoods for networks small enough to
// enumerate.
//
// Conventions (all of eval/): the energy is the one in network.ts at inverse temperature 1,
//   Z = sum over the states of the non-Gaussian units of the integral over the Gaussian units
//       (Lebesgue measure) of exp(-E(x)),
// so log Z is exact, constants included, for Gaussian units too: a Gaussian unit with bias b and
// input a contributes int exp(-(x-b)^2/2 + x a) dx = sqrt(2 pi) exp(((a+b)^2 - b^2)/2), i.e.
// 1/2 log(2 pi) + ((a+b)^2 - b^2)/2 to the log. Log-likelihoods are in nats per example and,
// for Gaussian visible units, are log densities.
//
// How exactLogZ enumerates. The layers are split into a set S that is summed out analytically
// and a set E whose 2^N joint states are enumerated (N = number of units in E):
//  - every Gaussian layer is in S (they cannot be enumerated; they have no laterals and no
//    Gaussian neighbours, so given E they factorise);
//  - then the non-Gaussian layers without laterals and without Gaussian neighbours that form the
//    largest independent set (no connection between two of them) by total size join S.
// For an RBM this enumerates the smaller non-Gaussian side and sums the other out; for a deep BM
// v-h1-h2 it enumerates h1 and sums out v and h2; for a network with laterals everywhere it
// enumerates everything and computes the energy by brute force.
// The enumerated states are processed in blocks of R = 2^b rows: the low b enumerated units run
// through all 2^b states inside a block (a matrix X, built once), the other N-b units are fixed
// per block. Everything that depends on the low units is computed once with kernels (the fields
// X M_s that X sends to each summed-out layer s, and the quadratic form of X among itself); per
// block the high units only shift biases: the summed-out layers get a bias b_s + x_high M_s, the
// low units a bias b_low + J x_high, so a block costs one matrix-vector sgemm plus one
// logPartitionRows per summed-out layer, and the per-row log weights are log-sum-exp'd in
// float64.
import { UnitType } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Network } from '../network.js';
import {
  LogSumExp,
  addLayerEnergy,
  blockRowsFor,
  checkData,
  factorisingHidden,
  gaussianConst,
  loadRows,
  neighbours,
  offValue,
  resolveVisible,
} from './common.js';

export interface ExactOptions {
  /**
   * Most enumerated states allowed (rounded down to a power of two, at most 2^30).
   * @defaultValue 2^24
   */
  maxTerms?: number;
  /**
   * Enumerated states per block (rounded down to a power of two). Default: as many as keep each
   * scratch matrix under 16 MiB (e.g. 4096 for a 784-unit summed-out layer).
   */
  blockSize?: number;
}

/** Which layers exactLogZ sums out and which it enumerates. */
export interface EnumerationPlan {
  /** Layers integrated out analytically given the enumerated ones. */
  summed: number[];
  /** Layers whose joint states are enumerated. */
  enumerated: number[];
  /** Number of enumerated units: the enumeration has 2^bits terms. */
  bits: number;
}

/** The split exactLogZ uses (see the file header). */
export function enumerationPlan(network: Network): EnumerationPlan {
  const layers = network.layers;
  const L = layers.length;
  const adj: boolean[][] = layers.map(() => new Array<boolean>(L).fill(false));
  for (const c of network.connections) {
    adj[c.from]![c.to] = true;
    adj[c.to]![c.from] = true;
  }
  const gauss = layers.filter((l) => l.type === UnitType.Gaussian).map((l) => l.index);
  const cand = layers
    .filter(
      (l) => l.type !== UnitType.Gaussian && !l.lateral && !gauss.some((g) => adj[g]![l.index]),
    )
    .map((l) => l.index);
  let best: number[] = [];
  let bestSize = -1;
  const sizeOf = (set: number[]): number => set.reduce((s, i) => s + layers[i]!.size, 0);
  const independent = (set: number[]): boolean =>
    set.every((a, i) => set.every((b, j) => j <= i || !adj[a]![b]));
  if (cand.length <= 16) {
    for (let mask = 0; mask < 1 << cand.length; mask++) {
      const set = cand.filter((_, i) => (mask >> i) & 1);
      if (!independent(set)) continue;
      const s = sizeOf(set);
      if (s > bestSize) {
        bestSize = s;
        best = set;
      }
    }
  } else {
    const sorted = [...cand].sort((a, b) => layers[b]!.size - layers[a]!.size);
    for (const l of sorted) if (best.every((m) => !adj[l]![m])) best.push(l);
  }
  const summed = [...gauss, ...best].sort((a, b) => a - b);
  const enumerated = layers.map((l) => l.index).filter((i) => !summed.includes(i));
  return { summed, enumerated, bits: sizeOf(enumerated) };
}

function maxBitsOf(maxTerms: number | undefined): number {
  const t = maxTerms ?? 2 ** 24;
  if (!(t >= 1) || !Number.isFinite(t)) throw new SpecError('maxTerms', 'must be a number >= 1');
  const bits = Math.floor(Math.log2(t) + 1e-9);
  if (bits > 30) throw new SpecError('maxTerms', 'must be at most 2^30');
  return bits;
}

/**
 * Exact log Z (see the file header for the convention and method). Throws SpecError when more
 * than maxTerms states would have to be enumerated.
 */
export function exactLogZ(network: Network, opts: ExactOptions = {}): number {
  // Long by design (exempt in test/shape.test.ts): a numeric kernel, the enumeration in one piece.
  const k = network.kernels;
  const layers = network.layers;
  const maxBits = maxBitsOf(opts.maxTerms);
  const plan = enumerationPlan(network);
  const N = plan.bits;
  if (N > maxBits) {
    throw new SpecError(
      'network',
      `has 2^${N} states to enumerate; exact evaluation supports up to 2^${maxBits}: use AIS`,
    );
  }
  for (const p of network.parameters()) k.download(p.data);

  // Enumerated units: global index e -> (layer, unit); values off/1.
  const eLayer: number[] = [];
  const eStart = new Map<number, number>();
  for (const l of plan.enumerated) {
    eStart.set(l, eLayer.length);
    for (let j = 0; j < layers[l]!.size; j++) eLayer.push(l);
  }
  const off = eLayer.map((l) => offValue(layers[l]!.type));
  const bE = new Float64Array(N);
  const J = new Float64Array(N * N); // symmetric, zero diagonal: energy term -1/2 x^T J x
  for (const l of plan.enumerated) {
    const s = eStart.get(l)!;
    const n = layers[l]!.size;
    const b = network.biases[l]!;
    for (let j = 0; j < n; j++) bE[s + j] = b[j]!;
    const Lat = network.laterals[l];
    if (Lat) {
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < n; j++) if (i !== j) J[(s + i) * N + s + j] = Lat[i * n + j]!;
      }
    }
  }
  for (const c of network.connections) {
    const sf = eStart.get(c.from);
    const st = eStart.get(c.to);
    if (sf === undefined || st === undefined) continue;
    const nf = layers[c.from]!.size;
    const nt = layers[c.to]!.size;
    for (let i = 0; i < nf; i++) {
      for (let j = 0; j < nt; j++) {
        const w = c.weights[i * nt + j]!;
        J[(sf + i) * N + st + j] = w;
        J[(st + j) * N + sf + i] = w;
      }
    }
  }

  // Summed-out layers: M_s (N x n_s) is how the enumerated units drive layer s.
  const sumWidth = plan.summed.reduce((s, l) => s + layers[l]!.size, 0);
  const M = plan.summed.map((s) => {
    const ns = layers[s]!.size;
    const m = k.alloc(Math.max(1, N) * ns);
    for (const { conn: c, other } of neighbours(network, s)) {
      const st = eStart.get(other);
      if (st === undefined)
        throw new Error('exactLogZ: summed-out layers must only neighbour enumerated ones');
      const no = layers[other]!.size;
      if (c.from === other) {
        for (let i = 0; i < no; i++)
          for (let j = 0; j < ns; j++) m[(st + i) * ns + j] = c.weights[i * ns + j]!;
      } else {
        for (let i = 0; i < no; i++)
          for (let j = 0; j < ns; j++) m[(st + i) * ns + j] = c.weights[j * no + i]!;
      }
    }
    k.upload(m);
    return m;
  });

  // Block geometry: R = 2^b rows, the low b enumerated units vary inside a block.
  let b: number;
  if (opts.blockSize !== undefined) {
    if (!(opts.blockSize >= 1)) throw new SpecError('blockSize', 'must be >= 1');
    b = Math.min(N, Math.floor(Math.log2(opts.blockSize) + 1e-9));
  } else {
    b = Math.min(N, 20, Math.floor(Math.log2(blockRowsFor(Math.max(sumWidth, N, 1), 1 << 30))));
  }
  const R = 2 ** b;
  const hi = N - b;

  const X = k.alloc(Math.max(1, R * b));
  for (let r = 0; r < R; r++)
    for (let i = 0; i < b; i++) X[r * b + i] = (r >>> i) & 1 ? 1 : off[i]!;
  k.upload(X);

  // Q[r] = 1/2 x_low^T J_ll x_low, via one sgemm when the low units interact.
  const Q = new Float64Array(R);
  let lowInteract = false;
  for (let i = 0; i < b && !lowInteract; i++)
    for (let j = 0; j < b; j++) if (J[i * N + j] !== 0) lowInteract = true;
  if (lowInteract) {
    const Jll = k.alloc(b * b);
    for (let i = 0; i < b; i++) for (let j = 0; j < b; j++) Jll[i * b + j] = J[i * N + j]!;
    k.upload(Jll);
    const Y = k.alloc(R * b);
    k.sgemm(false, false, R, b, b, 1, X, b, Jll, b, 0, Y, b);
    k.download(Y);
    for (let r = 0; r < R; r++) {
      let s = 0;
      for (let i = 0; i < b; i++) s += X[r * b + i]! * Y[r * b + i]!;
      Q[r] = 0.5 * s;
    }
  }

  // Fields the low units send to each summed-out layer: F_s = X M_s[low rows].
  const F = plan.summed.map((s, si) => {
    const ns = layers[s]!.size;
    const f = k.alloc(R * ns);
    if (b > 0) k.sgemm(false, false, R, ns, b, 1, X, b, M[si]!, ns, 0, f, ns);
    return f;
  });
  const sBias = plan.summed.map((s) => k.alloc(layers[s]!.size));
  const beff = k.alloc(Math.max(1, b));
  const lin = k.alloc(R);
  const lp = k.alloc(R);
  const xh = new Float64Array(hi);
  const t = new Float64Array(R);
  const acc = new LogSumExp();

  const blocks = 2 ** hi;
  for (let hs = 0; hs < blocks; hs++) {
    for (let q = 0; q < hi; q++) xh[q] = Math.floor(hs / 2 ** q) % 2 === 1 ? 1 : off[b + q]!;
    // Constant part of the block: high units' bias and mutual terms.
    let cst = 0;
    for (let q = 0; q < hi; q++) {
      const e = b + q;
      let s = bE[e]!;
      for (let p = 0; p < hi; p++) s += 0.5 * J[e * N + b + p]! * xh[p]!;
      cst += s * xh[q]!;
    }
    // Low units: bias shifted by their couplings to the high ones.
    if (b > 0) {
      for (let i = 0; i < b; i++) {
        let s = bE[i]!;
        for (let q = 0; q < hi; q++) s += J[i * N + b + q]! * xh[q]!;
        beff[i] = s;
      }
      k.upload(beff);
      k.sgemm(false, false, R, 1, b, 1, X, b, beff, 1, 0, lin, 1);
      k.download(lin);
    }
    let acc0 = false;
    plan.summed.forEach((s, si) => {
      const layer = layers[s]!;
      const ns = layer.size;
      const bias = network.biases[s]!;
      const sb = sBias[si]!;
      const m = M[si]!;
      for (let j = 0; j < ns; j++) {
        let v = bias[j]!;
        for (let q = 0; q < hi; q++) v += xh[q]! * m[(b + q) * ns + j]!;
        sb[j] = v;
      }
      k.upload(sb);
      k.logPartitionRows(layer.type, R, ns, F[si]!, ns, sb, 1, lp, acc0);
      acc0 = true;
      if (layer.type === UnitType.Gaussian) cst += gaussianConst(bias, ns);
    });
    if (acc0) k.download(lp);
    for (let r = 0; r < R; r++) t[r] = Q[r]! + (b > 0 ? lin[r]! : 0) + (acc0 ? lp[r]! : 0) + cst;
    acc.addAll(t, R);
  }
  return acc.value();
}

export interface FreeEnergyOptions {
  /** Rows per block. Default: keeps scratch matrices under 16 MiB. */
  blockRows?: number;
}

/**
 * Free energy F(v) = -log sum_h exp(-E(v, h)) of each of `rows` visible vectors (v is
 * rows x size, row-major), for networks where the other layers factorise given the visible one
 * (no laterals on them, every connection touches the visible layer; the visible layer may have
 * laterals): F(v) = E_visible(v) - sum_{hidden layers} sum_j g(field_j + bias_j) (- the
 * Gaussian constants n/2 log 2pi - |b|^2/2 for Gaussian hidden layers), where E_visible is
 * -b.v - 1/2 v^T L v for binary and |v - b|^2/2 for Gaussian visible units and g is softplus,
 * log 2cosh or a^2/2. Float64 results in `out` (allocated when omitted).
 */
export function freeEnergy(
  network: Network,
  visibleName: string,
  v: Float32Array,
  rows: number,
  out?: Float64Array,
  opts: FreeEnergyOptions = {},
): Float64Array {
  const k = network.kernels;
  const vis = network.layerIndex(visibleName);
  const hidden = factorisingHidden(network, vis, 'freeEnergy');
  checkData(network, vis, v, rows, 'v');
  const res = out ?? new Float64Array(rows);
  if (res.length < rows) throw new SpecError('out', `holds ${res.length} values, needs ${rows}`);
  const nv = network.layers[vis]!.size;
  const maxH = hidden.reduce((m, h) => Math.max(m, network.layers[h]!.size), 0);
  const B = blockRowsFor(Math.max(nv, maxH), rows, opts.blockRows);
  const V = k.alloc(B * nv);
  const A = k.alloc(Math.max(1, B * maxH));
  const lx = network.laterals[vis] ? k.alloc(B * nv) : null;
  const lp = k.alloc(B);
  const e = new Float64Array(B);
  let hconst = 0;
  for (const h of hidden) {
    const layer = network.layers[h]!;
    if (layer.type === UnitType.Gaussian) {
      k.download(network.biases[h]!);
      hconst += gaussianConst(network.biases[h]!, layer.size);
    }
  }
  for (let r0 = 0; r0 < rows; r0 += B) {
    const nr = Math.min(B, rows - r0);
    loadRows(k, v, r0, nr, nv, V);
    e.fill(0);
    addLayerEnergy(network, vis, V, nr, e, lx);
    hidden.forEach((h, hi) => {
      const layer = network.layers[h]!;
      const nh = layer.size;
      let first = true;
      for (const { conn } of neighbours(network, h)) {
        // every neighbour is the visible layer
        const ns = nv;
        if (conn.to === h)
          k.sgemm(false, false, nr, nh, ns, 1, V, ns, conn.weights, nh, first ? 0 : 1, A, nh);
        else k.sgemm(false, true, nr, nh, ns, 1, V, ns, conn.weights, ns, first ? 0 : 1, A, nh);
        first = false;
      }
      if (first) A.fill(0, 0, nr * nh);
      k.logPartitionRows(layer.type, nr, nh, A, nh, network.biases[h]!, 1, lp, hi > 0);
    });
    if (hidden.length > 0) k.download(lp);
    for (let r = 0; r < nr; r++) res[r0 + r] = e[r]! - (hidden.length > 0 ? lp[r]! : 0) - hconst;
  }
  return res;
}

/** mean over rows of -F(v) (nats), for networks freeEnergy accepts. */
export function meanNegFreeEnergy(
  network: Network,
  visibleName: string,
  data: Float32Array,
  rows: number,
  opts: FreeEnergyOptions = {},
): number {
  if (rows === 0) throw new SpecError('rows', 'must be positive');
  const F = freeEnergy(network, visibleName, data, rows, undefined, opts);
  let s = 0;
  for (let r = 0; r < rows; r++) s -= F[r]!;
  return s / rows;
}

export interface ExactLogLikelihoodOptions extends FreeEnergyOptions {
  /** The visible layer. @defaultValue the layer named 'v', else the first */
  visible?: string;
}

/**
 * Average log-likelihood in nats per example: mean_v(-F(v)) - log Z, with log Z from exactLogZ
 * unless given. data is rows x visible size.
 */
export function exactLogLikelihood(
  network: Network,
  data: Float32Array,
  rows: number,
  logZ?: number,
  opts: ExactLogLikelihoodOptions = {},
): number {
  const vis = resolveVisible(network, opts.visible);
  const name = network.layers[vis]!.name;
  const m = meanNegFreeEnergy(network, name, data, rows, opts);
  return m - (logZ ?? exactLogZ(network));
}
