// Locality of the learning rules: the update of w_ij reads nothing but units i and j (their
// phase states and centring offsets), w_ij itself and its own velocity. Method: apply the rule
// to fixed phase states from a fixed training state; then, from the same training state,
// perturb every other unit's states and offsets, every other parameter (weights, laterals,
// biases) and every other velocity, apply the rule again, and require the change of w_ij to be
// bit-identical. Conversely, perturbing only unit i must leave the update of every synapse not
// touching i bit-identical.
import { describe, expect, it } from 'vitest';
import { type Kernels, NativeKernels, PortableKernels, nativeAvailable } from '@spinmesh/kernels';
import {
  Network,
  type NetworkSpec,
  type State,
  Trainer,
  type TrainOptions,
  createHopfield,
  rbmSpec,
  storeHebbian,
} from '../src/index.js';
import { lcg } from './nets.js';

const portable = new PortableKernels();
const native: Kernels | null = nativeAvailable().ok ? new NativeKernels({ threads: 1 }) : null;

type StateArrays = Record<string, { data: Float32Array; shape: number[] }>;

/** Phase states: {0,1} for layer 0, probabilities elsewhere. */
function phase(net: Network, rows: number, r: () => number): State {
  return net.layers.map((l) =>
    Float32Array.from({ length: rows * l.size }, () => (l.index === 0 ? (r() < 0.5 ? 1 : 0) : r())),
  );
}

/** A synapse: connection c (or lateral of layer `lat`) between unit i of layer a and unit j of layer b. */
interface Synapse {
  param: string;
  index: number;
  units: [layer: number, unit: number][];
}

function synapses(net: Network, r: () => number): Synapse[] {
  const out: Synapse[] = [];
  for (const c of net.connections) {
    const f = net.layers[c.from]!;
    const t = net.layers[c.to]!;
    for (let s = 0; s < 3; s++) {
      const i = Math.floor(r() * f.size);
      const j = Math.floor(r() * t.size);
      const param = `${f.name}-${t.name}.weights`;
      out.push({
        param,
        index: i * t.size + j,
        units: [
          [c.from, i],
          [c.to, j],
        ],
      });
    }
  }
  for (const l of net.layers) {
    if (!net.laterals[l.index]) continue;
    for (let s = 0; s < 3; s++) {
      const i = Math.floor(r() * l.size);
      let j = Math.floor(r() * (l.size - 1));
      if (j >= i) j++;
      out.push({
        param: `${l.name}.lateral`,
        index: i * l.size + j,
        units: [
          [l.index, i],
          [l.index, j],
        ],
      });
    }
  }
  return out;
}

const isKept = (syn: Synapse, layer: number, unit: number): boolean =>
  syn.units.some(([l, u]) => l === layer && u === unit);

/** Whether entry e of parameter `name` is the synapse itself (for a lateral: L_ij or L_ji). */
function isOwn(syn: Synapse, name: string, e: number, net: Network): boolean {
  if (name !== syn.param) return false;
  if (e === syn.index) return true;
  if (!name.endsWith('.lateral')) return false;
  const n = net.layers[syn.units[0]![0]]!.size;
  return e === (syn.index % n) * n + Math.floor(syn.index / n);
}

/** The change of every parameter when the rule is applied from (params, training state). */
function update(
  spec: NetworkSpec,
  k: Kernels,
  opts: TrainOptions,
  params: Network,
  st: StateArrays,
  pos: State,
  neg: State,
  P: number,
  Q: number,
): Map<string, Float32Array> {
  const net = new Network(spec, k);
  net.copyFrom(params);
  const tr = new Trainer(net, opts);
  tr.restoreState(st);
  const before = net.parameters().map((p) => p.data.slice());
  tr.applyUpdate(pos, P, neg, Q);
  return new Map(
    net.parameters().map((p, i) => [p.name, p.data.map((v, j) => v - before[i]![j]!)]),
  );
}

function checkRule(spec: NetworkSpec, k: Kernels, opts: TrainOptions, seed: number): void {
  const r = lcg(seed);
  const P = 6;
  const Q = 5;
  const net = Network.create(spec, k, { seed, weightStd: 0.5 });
  for (const b of net.biases) for (let j = 0; j < b.length; j++) b[j] = r() - 0.5;
  const tr = new Trainer(net, opts);
  // a few updates first, so that velocities and offsets are non-trivial
  for (let s = 0; s < 3; s++) tr.applyUpdate(phase(net, P, r), P, phase(net, Q, r), Q);
  const st = tr.state();
  const params = net.clone();
  const pos = phase(net, P, r);
  const neg = phase(net, Q, r);
  const ref = update(spec, k, opts, params, st, pos, neg, P, Q);

  for (const syn of synapses(net, r)) {
    // 1. perturb everything that does not belong to the synapse or its two units
    const p2 = params.clone();
    for (const p of p2.parameters()) {
      for (let i = 0; i < p.data.length; i++)
        if (!isOwn(syn, p.name, i, net)) p.data[i] = p.data[i]! + (r() - 0.5);
      const L = p.name.endsWith('.lateral') ? p : null;
      if (L) {
        // keep laterals symmetric with a zero diagonal (the model's invariant), and keep L_ji = L_ij
        const n = L.shape[0]!;
        for (let a = 0; a < n; a++) {
          L.data[a * n + a] = 0;
          for (let b = a + 1; b < n; b++) L.data[b * n + a] = L.data[a * n + b]!;
        }
      }
    }
    const st2: StateArrays = {};
    for (const [name, arr] of Object.entries(st)) {
      const data = arr.data.slice();
      if (name.startsWith('velocity.')) {
        const pname = name.slice('velocity.'.length);
        for (let i = 0; i < data.length; i++)
          if (!isOwn(syn, pname, i, net)) data[i] = data[i]! + (r() - 0.5) * 0.1;
        if (pname.endsWith('.lateral')) {
          const n = arr.shape[0]!;
          for (let a = 0; a < n; a++)
            for (let b = a + 1; b < n; b++) data[b * n + a] = data[a * n + b]!;
        }
      } else if (name.startsWith('offset.')) {
        const l = net.layerIndex(name.slice('offset.'.length));
        for (let i = 0; i < data.length; i++) if (!isKept(syn, l, i)) data[i] = r();
      }
      st2[name] = { data, shape: arr.shape };
    }
    const perturb = (s: State): State =>
      s.map((x, l) => {
        const n = net.layers[l]!.size;
        return x.map((v, e) => (isKept(syn, l, e % n) ? v : l === 0 ? (r() < 0.5 ? 1 : 0) : r()));
      });
    const got = update(spec, k, opts, p2, st2, perturb(pos), perturb(neg), P, Q);
    expect(got.get(syn.param)![syn.index], `${syn.param}[${syn.index}]`).toBe(
      ref.get(syn.param)![syn.index],
    );

    // 2. perturb only unit i (first unit of the synapse): every weight/lateral update that does
    // not touch unit i is unchanged
    const [li, ui] = syn.units[0]!;
    const only = (s: State): State =>
      s.map((x, l) => {
        const n = net.layers[l]!.size;
        return x.map((v, e) => (l === li && e % n === ui ? (l === 0 ? 1 - v : r()) : v));
      });
    const got2 = update(spec, k, opts, params, st, only(pos), only(neg), P, Q);
    for (const p of params.parameters()) {
      if (p.name.endsWith('.bias')) continue;
      const [rowsN, cols] = p.shape as [number, number];
      const [fname, tname] = p.name.endsWith('.lateral')
        ? [p.name.split('.')[0]!, p.name.split('.')[0]!]
        : (p.name.split('.')[0]!.split('-') as [string, string]);
      const lf = net.layerIndex(fname);
      const lt = net.layerIndex(tname);
      for (let a = 0; a < rowsN; a++) {
        for (let b = 0; b < cols; b++) {
          const touches = (lf === li && a === ui) || (lt === li && b === ui);
          if (touches) continue;
          expect(
            got2.get(p.name)![a * cols + b],
            `${p.name}[${a},${b}] reads unit ${li}:${ui}`,
          ).toBe(ref.get(p.name)![a * cols + b]);
        }
      }
    }
  }
}

const dbm: NetworkSpec = {
  layers: [
    { name: 'v', size: 5 },
    { name: 'h1', size: 4 },
    { name: 'h2', size: 3 },
  ],
  connections: [
    { from: 'v', to: 'h1' },
    { from: 'h1', to: 'h2' },
  ],
};
const srbm: NetworkSpec = {
  layers: [
    { name: 'v', size: 6, lateral: true },
    { name: 'h', size: 4 },
  ],
  connections: [{ from: 'v', to: 'h' }],
};

describe('locality of the Boltzmann rule', () => {
  const rules: [string, NetworkSpec, TrainOptions][] = [
    ['RBM, CD', rbmSpec(7, 5), { negative: 'cd' }],
    [
      'RBM, PCD, centring',
      rbmSpec(7, 5),
      { negative: 'pcd', chains: 5, centring: true, centringRate: 0.2 },
    ],
    [
      'RBM, CD, centring + momentum + decay',
      rbmSpec(7, 5),
      { negative: 'cd', centring: true, momentum: 0.9, weightDecay: 0.01 },
    ],
    [
      'deep BM, PCD, centring + momentum + decay',
      dbm,
      { negative: 'pcd', chains: 5, centring: true, momentum: 0.5, weightDecay: 0.01 },
    ],
    [
      'lateral weights (semi-restricted BM), momentum + decay',
      srbm,
      { negative: 'pcd', chains: 5, momentum: 0.5, weightDecay: 0.01 },
    ],
    ['lateral weights, centring', srbm, { negative: 'cd', centring: true, centringRate: 0.3 }],
  ];
  for (const [name, k] of [
    ['portable', portable],
    ['native', native],
  ] as const) {
    const run = k ? it : it.skip;
    for (const [rule, spec, opts] of rules) {
      run(`${rule} (${name})`, () => checkRule(spec, k!, { learningRate: 0.1, ...opts }, 17));
    }
  }

  it('Hebbian storage (hopfield.ts): L_ij reads only units i and j of the patterns', () => {
    const n = 8;
    const rows = 5;
    const r = lcg(3);
    const pats = Float32Array.from({ length: rows * n }, () => (r() < 0.5 ? 1 : -1));
    const ref = createHopfield(n, portable);
    storeHebbian(ref, pats, rows);
    for (const [i, j] of [
      [0, 1],
      [2, 7],
      [5, 3],
    ] as const) {
      const other = Float32Array.from(pats, (v, e) =>
        e % n === i || e % n === j ? v : r() < 0.5 ? 1 : -1,
      );
      const net = createHopfield(n, portable);
      // also start from different weights: storage must not read them
      net.laterals[0]!.fill(0.3);
      storeHebbian(net, other, rows);
      expect(net.laterals[0]![i * n + j]).toBe(ref.laterals[0]![i * n + j]);
      expect(net.laterals[0]![j * n + i]).toBe(ref.laterals[0]![j * n + i]);
    }
  });
});
