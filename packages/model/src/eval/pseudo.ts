// Pseudo-log-likelihood (Besag 1975).
//
// Definition used here: for a visible vector v with binary units (Bernoulli or Ising),
//   PL(v) = sum_{i = 1..n_v} log p(v_i | v_{-i}),
// where p(v) is the marginal of the visible layer (all other layers summed out), and the
// reported value is the mean of PL(v) over the examples, in nats. It is the full sum over all
// units: NOT divided by n_v, and NOT the one-random-site estimate n_v * log p(v_i | v_{-i}) that
// scikit-learn's BernoulliRBM.score_samples returns (that has the same expectation over the
// random site but is noisy and not comparable example by example).
//
// Computation. With F(v) the free energy (see exact.ts) and v~ the vector v with unit i flipped
// (0 <-> 1, or -1 <-> +1),
//   log p(v_i | v_{-i}) = -softplus(F(v) - F(v~)).
// For a network where the other layers factorise given v (RBM, semi-restricted BM, several
// hidden layers each connected only to v), F(v~) - F(v) = dE_visible - sum_h [G_h(A_h + d W_h[i])
// - G_h(A_h)] with A_h = v W_h the hidden fields (one sgemm per block of examples), d = v~_i -
// v_i per example, G_h = sum_j g(. + c_j) the hidden log-partition (logPartitionRows), and dE
// the change of the visible energy -d (b_i + (L v)_i). Per unit that is a copy of A_h, a rank-1
// sgemm correction and one logPartitionRows over the block: n_v * rows * n_h evaluations of g in
// total, all in kernels. A fully visible network (one layer, laterals allowed, nothing else)
// has the conditionals in closed form: log p(v_i | v_{-i}) = v_i a_i - g(a_i) with
// a = b + L v, so PL(v) = v.a - sum_i g(a_i) (one sgemm and one logPartitionRows per block).
// Gaussian visible units are not supported (the conditional of a Gaussian-Bernoulli RBM's
// marginal is a mixture, not available in closed form).
import { UnitType } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Network } from '../network.js';
import {
  addField,
  blockRowsFor,
  checkData,
  copyBuf,
  factorisingHidden,
  loadRows,
  neighbours,
  resolveVisible,
  softplus,
} from './common.js';

export interface PseudoLikelihoodOptions {
  /** The visible layer. @defaultValue 'v', else the first layer */
  visible?: string;
  /** Examples per block. Default: keeps the scratch field matrices under 16 MiB each. */
  blockRows?: number;
  /** When given, receives PL(v) of each example (length >= rows). */
  perExample?: Float64Array;
}

/**
 * Mean over the rows of data (rows x visible size, binary values) of the full
 * pseudo-log-likelihood sum_i log p(v_i | v_-i), in nats (see the file header).
 */
export function pseudoLogLikelihood(
  network: Network,
  data: Float32Array,
  rows: number,
  opts: PseudoLikelihoodOptions = {},
): number {
  // Long by design (exempt in test/shape.test.ts): a numeric kernel, one pass over the rows.
  const k = network.kernels;
  const vis = resolveVisible(network, opts.visible);
  const vl = network.layers[vis]!;
  if (vl.type === UnitType.Gaussian) {
    throw new SpecError(
      'network',
      `pseudo-likelihood needs binary visible units; '${vl.name}' is gaussian`,
    );
  }
  const hidden = factorisingHidden(network, vis, 'pseudoLogLikelihood');
  checkData(network, vis, data, rows);
  if (rows < 1) throw new SpecError('rows', 'must be positive');
  if (opts.perExample && opts.perExample.length < rows)
    throw new SpecError('perExample', `must hold ${rows} values`);
  const nv = vl.size;
  const ising = vl.type === UnitType.Ising;
  const maxH = hidden.reduce((m, h) => Math.max(m, network.layers[h]!.size), 0);
  const B = blockRowsFor(Math.max(nv, maxH), rows, opts.blockRows);
  const L = network.laterals[vis];
  const b = network.biases[vis]!;
  k.download(b);

  const V = k.alloc(B * nv);
  const phi = k.alloc(B * nv); // visible fields b + L v (only the L v part is computed by sgemm)
  const A = hidden.map((h) => k.alloc(B * network.layers[h]!.size));
  const T = k.alloc(Math.max(1, B * maxH));
  const G0 = hidden.map(() => new Float64Array(B));
  const lp = k.alloc(B);
  const d = k.alloc(B);
  const pl = new Float64Array(B);
  let total = 0;

  for (let r0 = 0; r0 < rows; r0 += B) {
    const nr = Math.min(B, rows - r0);
    loadRows(k, data, r0, nr, nv, V);
    for (let i = 0; i < nr * nv; i++) {
      const x = V[i]!;
      if (ising ? x !== 1 && x !== -1 : x !== 0 && x !== 1) {
        throw new SpecError(
          'data',
          `must be binary (${ising ? '-1/+1' : '0/1'}) for the pseudo-likelihood; row ${r0 + Math.floor(i / nv)} holds ${x}`,
        );
      }
    }
    if (L) k.sgemm(false, false, nr, nv, nv, 1, V, nv, L, nv, 0, phi, nv);
    else phi.fill(0, 0, nr * nv);
    k.download(phi);
    pl.fill(0);

    if (hidden.length === 0) {
      // closed-form conditionals: PL = v.a - sum_i g(a_i), a = b + L v
      k.logPartitionRows(vl.type, nr, nv, phi, nv, b, 1, lp, false);
      k.download(lp);
      for (let r = 0; r < nr; r++) {
        let s = 0;
        const o = r * nv;
        for (let i = 0; i < nv; i++) s += V[o + i]! * (phi[o + i]! + b[i]!);
        pl[r] = s - lp[r]!;
      }
    } else {
      hidden.forEach((h, hi) => {
        const nh = network.layers[h]!.size;
        let first = true;
        for (const { conn } of neighbours(network, h)) {
          addField(network, conn, h, V, nr, 1, first ? 0 : 1, A[hi]!);
          first = false;
        }
        if (first) A[hi]!.fill(0, 0, nr * nh);
        k.logPartitionRows(
          network.layers[h]!.type,
          nr,
          nh,
          A[hi]!,
          nh,
          network.biases[h]!,
          1,
          lp,
          false,
        );
        k.download(lp);
        for (let r = 0; r < nr; r++) G0[hi]![r] = lp[r]!;
      });
      const dF = new Float64Array(nr);
      for (let i = 0; i < nv; i++) {
        // d = flipped - current; dE_visible = -d (b_i + (L v)_i)
        for (let r = 0; r < nr; r++) {
          const x = V[r * nv + i]!;
          const dd = ising ? -2 * x : 1 - 2 * x;
          d[r] = dd;
          dF[r] = -dd * (b[i]! + phi[r * nv + i]!);
        }
        k.upload(d);
        hidden.forEach((h, hi) => {
          const layer = network.layers[h]!;
          const nh = layer.size;
          copyBuf(k, nr * nh, A[hi]!, T);
          for (const { conn } of neighbours(network, h)) {
            // rank-1 update T += d * (row i of the visible->h weights)
            if (conn.from === vis)
              k.sgemm(
                false,
                false,
                nr,
                nh,
                1,
                1,
                d,
                1,
                conn.weights.subarray(i * nh),
                nh,
                1,
                T,
                nh,
              );
            else k.sgemm(false, true, nr, nh, 1, 1, d, 1, conn.weights.subarray(i), nv, 1, T, nh);
          }
          k.logPartitionRows(layer.type, nr, nh, T, nh, network.biases[h]!, 1, lp, false);
          k.download(lp);
          const g0 = G0[hi]!;
          for (let r = 0; r < nr; r++) dF[r] = dF[r]! - (lp[r]! - g0[r]!);
        });
        // log p(v_i | v_-i) = -softplus(F(v) - F(v~)) = -softplus(-dF)
        for (let r = 0; r < nr; r++) pl[r] = pl[r]! - softplus(-dF[r]!);
      }
    }
    for (let r = 0; r < nr; r++) {
      total += pl[r]!;
      if (opts.perExample) opts.perExample[r0 + r] = pl[r]!;
    }
  }
  return total / rows;
}
