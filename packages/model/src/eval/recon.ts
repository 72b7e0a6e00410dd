// Reconstruction error.
//
// Definition: for each example v, the hidden layers' mean-field values m_h = E[h | v] (sigmoid,
// tanh or the Gaussian mean of field + bias; no sampling), then the reconstruction
// r = E[v | h = m_h] (the visible layer's mean function of sum_h m_h W_h^T + b), and
//   error = mean over examples of sum_i (v_i - r_i)^2
// (a sum over the visible units, not a per-unit mean). Deterministic: probabilities both ways.
// It is a training diagnostic, not a likelihood: it can fall while the model gets worse.
// Needs a network whose non-visible layers connect only to the visible layer and no laterals
// anywhere (so that both conditionals factorise).
import { type RngSite } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Network } from '../network.js';
import {
  addField,
  blockRowsFor,
  checkData,
  factorisingHidden,
  loadRows,
  neighbours,
  resolveVisible,
} from './common.js';

export interface ReconstructionOptions {
  /** The visible layer. @defaultValue 'v', else the first layer */
  visible?: string;
  /** Examples per block. Default: keeps scratch matrices under 16 MiB. */
  blockRows?: number;
}

const NO_DRAW: RngSite = {
  seedLo: 0,
  seedHi: 0,
  unitOffset: 0,
  chainOffset: 0,
  step: 0,
  stream: 0,
};

/** Mean over examples of sum_i (v_i - E[v_i | h = E[h | v]])^2 (see the file header). */
export function reconstructionError(
  network: Network,
  data: Float32Array,
  rows: number,
  opts: ReconstructionOptions = {},
): number {
  const k = network.kernels;
  const vis = resolveVisible(network, opts.visible);
  const hidden = factorisingHidden(network, vis, 'reconstructionError');
  if (network.laterals[vis]) {
    throw new SpecError(
      'network',
      `reconstructionError needs no laterals on the visible layer '${network.layers[vis]!.name}'`,
    );
  }
  checkData(network, vis, data, rows);
  if (rows < 1) throw new SpecError('rows', 'must be positive');
  const vl = network.layers[vis]!;
  const nv = vl.size;
  const maxH = hidden.reduce((m, h) => Math.max(m, network.layers[h]!.size), 0);
  const B = blockRowsFor(Math.max(nv, maxH), rows, opts.blockRows);
  const V = k.alloc(B * nv);
  const R = k.alloc(B * nv);
  const M = hidden.map((h) => k.alloc(B * network.layers[h]!.size));
  let total = 0;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const nr = Math.min(B, rows - r0);
    loadRows(k, data, r0, nr, nv, V);
    hidden.forEach((h, hi) => {
      const layer = network.layers[h]!;
      const m = M[hi]!;
      let first = true;
      for (const { conn } of neighbours(network, h)) {
        addField(network, conn, h, V, nr, 1, first ? 0 : 1, m);
        first = false;
      }
      if (first) m.fill(0, 0, nr * layer.size);
      k.sampleUnits(
        layer.type,
        nr,
        layer.size,
        m,
        layer.size,
        network.biases[h]!,
        1,
        m,
        null,
        NO_DRAW,
      );
    });
    let first = true;
    hidden.forEach((h, hi) => {
      for (const { conn } of neighbours(network, h)) {
        addField(network, conn, vis, M[hi]!, nr, 1, first ? 0 : 1, R);
        first = false;
      }
    });
    if (first) R.fill(0, 0, nr * nv);
    k.sampleUnits(vl.type, nr, nv, R, nv, network.biases[vis]!, 1, R, null, NO_DRAW);
    k.axpby(nr * nv, -1, V, 1, R);
    total += k.sumSquares(nr * nv, R);
  }
  return total / rows;
}
