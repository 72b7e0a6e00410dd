// Where a shard's parameters come from (a fresh initialisation drawn slice by slice, or an
// existing network), and how the model is assembled again from the blocks the shards own.
import type { Kernels } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import {
  type InitOptions,
  Network,
  type NetworkSpec,
  drawInitialLateral,
  drawInitialWeights,
} from '../network.js';
import { shapeNetwork } from './layout.js';

/** Reads slices of a network's parameters, so a shard never needs the whole model. */
export interface ParameterSource {
  /** Rows [r0, r1) x columns [c0, c1) of connection `conn`'s weights, row-major, into out. */
  weights(conn: number, r0: number, r1: number, c0: number, c1: number, out: Float32Array): void;
  /** Biases [j0, j1) of layer `layer` into out. */
  bias(layer: number, j0: number, j1: number, out: Float32Array): void;
  /** The whole lateral matrix (size x size) of layer `layer` into out. */
  lateral(layer: number, out: Float32Array): void;
}

/** Slices of an existing network (copies; the network may use other kernels). */
export function networkSource(net: Network): ParameterSource {
  const k = net.kernels;
  return {
    weights(conn, r0, r1, c0, c1, out) {
      const c = net.connections[conn]!;
      const nt = net.layers[c.to]!.size;
      k.download(c.weights);
      const w = c1 - c0;
      for (let i = r0; i < r1; i++)
        out.set(c.weights.subarray(i * nt + c0, i * nt + c1), (i - r0) * w);
    },
    bias(layer, j0, j1, out) {
      const b = net.biases[layer]!;
      k.download(b);
      out.set(b.subarray(j0, j1));
    },
    lateral(layer, out) {
      const L = net.laterals[layer];
      if (!L) throw new SpecError('lateral', `layer ${layer} has no lateral connections`);
      k.download(L);
      out.set(L);
    },
  };
}

/**
 * The parameters Network.create(spec, kernels, opts) would draw, bit for bit, produced one
 * slice at a time: weight (i, j) of connection c is the Gaussian draw at counter (unit j,
 * chain i, step 0, INIT_STREAM + c) scaled by weightStd, so any slice can be drawn alone.
 * Biases are zero.
 */
export function initSource(
  spec: NetworkSpec,
  kernels: Kernels,
  opts: InitOptions = {},
): ParameterSource {
  const net = shapeNetwork(spec);
  return {
    weights(conn, r0, r1, c0, c1, out) {
      drawInitialWeights(kernels, opts, conn, r0, r1, c0, c1, out);
    },
    bias(_layer, j0, j1, out) {
      out.fill(0, 0, j1 - j0);
    },
    lateral(layer, out) {
      drawInitialLateral(kernels, opts, layer, net.layers[layer]!.size, out);
    },
  };
}

/**
 * A block of parameters: rows [r0, r1) x columns [c0, c1) of the parameter `name` (the names of
 * Network.parameters(): `<layer>.bias` (one row), `<layer>.lateral`, `<from>-<to>.weights`).
 */
export interface ParameterBlock {
  name: string;
  rows: readonly [number, number];
  cols: readonly [number, number];
  /** (r1 - r0) x (c1 - c0), row-major; a copy. */
  data: Float32Array;
}

/** What one shard owns, at a step count. */
export interface ShardExport {
  shard: number;
  /** Updates applied to these parameters. */
  step: number;
  blocks: ParameterBlock[];
}

/**
 * Builds the network from the shards' owned blocks. Every parameter element must be covered
 * exactly once and all exports must be at the same step, so the result is one consistent model
 * (each cross-shard weight block comes from its single owner; a lateral matrix from the one
 * shard holding its layer, and it must be exactly symmetric). @throws SpecError
 */
export function assemble(
  spec: NetworkSpec,
  kernels: Kernels,
  exports: readonly ShardExport[],
): Network {
  const net = new Network(spec, kernels);
  const params = new Map(net.parameters().map((p) => [p.name, p]));
  const covered = new Map(net.parameters().map((p) => [p.name, new Uint8Array(p.data.length)]));
  const steps = new Set(exports.map((e) => e.step));
  if (steps.size > 1)
    throw new SpecError(
      'exports',
      `are at different steps (${[...steps].join(', ')}); assemble blocks of one step`,
    );
  for (const e of exports) {
    for (const b of e.blocks) {
      const p = params.get(b.name);
      const field = `exports[shard ${e.shard}].${b.name}`;
      if (!p) throw new SpecError(field, 'is not a parameter of the network');
      const cols = p.shape.length === 2 ? p.shape[1]! : p.shape[0]!;
      const rows = p.shape.length === 2 ? p.shape[0]! : 1;
      const [r0, r1] = b.rows;
      const [c0, c1] = b.cols;
      if (!(r0 >= 0 && r0 < r1 && r1 <= rows && c0 >= 0 && c0 < c1 && c1 <= cols))
        throw new SpecError(field, `block [${r0},${r1}) x [${c0},${c1}) is out of range`);
      const w = c1 - c0;
      if (b.data.length !== (r1 - r0) * w)
        throw new SpecError(field, `holds ${b.data.length} values, expected ${(r1 - r0) * w}`);
      const cov = covered.get(b.name)!;
      for (let i = r0; i < r1; i++) {
        for (let j = c0; j < c1; j++) {
          if (cov[i * cols + j]) throw new SpecError(field, `covers [${i}, ${j}] twice`);
          cov[i * cols + j] = 1;
          p.data[i * cols + j] = b.data[(i - r0) * w + (j - c0)]!;
        }
      }
    }
  }
  for (const p of net.parameters()) {
    const cov = covered.get(p.name)!;
    const miss = cov.indexOf(0);
    if (miss >= 0) throw new SpecError(`exports.${p.name}`, `do not cover element ${miss}`);
    if (p.name.endsWith('.lateral')) {
      const n = p.shape[0]!;
      for (let i = 0; i < n; i++)
        for (let j = i + 1; j < n; j++)
          if (p.data[i * n + j] !== p.data[j * n + i])
            throw new SpecError(`exports.${p.name}`, `is not symmetric at [${i}, ${j}]`);
    }
    kernels.upload(p.data);
  }
  return net;
}
