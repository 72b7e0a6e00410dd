// Locality of a shard's rule (in the style of locality.test.ts): the updates a shard applies to
// w_ij read nothing but the spins of units i and j (and their offsets, which are running means
// of those spins), w_ij and its own velocity. Method: apply four updates from fixed phase
// states; then, from parameters where everything but w_ij is perturbed and from states where
// every unit but i and j is redrawn, apply them again: w_ij must come out bit-identical, on
// the owner and on the replica. Conversely, redrawing only unit i's spins leaves every weight
// not touching i bit-identical.
import { describe, expect, it } from 'vitest';
import { type Kernels, NativeKernels, PortableKernels, nativeAvailable } from '@spinmesh/kernels';
import {
  Network,
  type NetworkSpec,
  type ParameterSource,
  type ShardLayout,
  ShardTrainer,
  type TrainOptions,
  networkSource,
  rbmSpec,
} from '../src/index.js';
import { lcg } from './nets.js';
import { dbm } from './shard-cases.js';

const portable = new PortableKernels();
const native: Kernels | null = nativeAvailable().ok ? new NativeKernels({ threads: 1 }) : null;

type Phase = Float32Array[];

interface Synapse {
  conn: number;
  i: number;
  j: number;
}

const P = 6;
const Q = 5;
const UPDATES = 4;

function phases(net: Network, rows: number, r: () => number): Phase {
  return net.layers.map((l) =>
    Float32Array.from({ length: rows * l.size }, () => (r() < 0.5 ? 1 : 0)),
  );
}

/** Applies the updates on shard `shard` and returns its weight tiles by name. */
function apply(
  spec: NetworkSpec,
  k: Kernels,
  train: TrainOptions,
  layout: ShardLayout,
  shard: number,
  params: ParameterSource,
  data: Float32Array,
  states: [Phase, Phase][],
): ShardTrainer {
  const tr = new ShardTrainer({
    network: spec,
    train: { batchSize: P, chains: Q, ...train },
    layout,
    shard,
    kernels: k,
    data: { x: data, rows: 4 },
    params,
  });
  for (const [pos, neg] of states) tr.applyUpdate(pos, P, neg, Q);
  return tr;
}

/** The value of w_ij in every tile of `tr` that holds it. */
function weightAt(tr: ShardTrainer, net: Network, s: Synapse): number[] {
  const c = net.connections[s.conn]!;
  const name = `${net.layers[c.from]!.name}-${net.layers[c.to]!.name}.weights`;
  return tr
    .weightTiles()
    .filter(
      (t) =>
        t.name === name &&
        s.i >= t.rows[0] &&
        s.i < t.rows[1] &&
        s.j >= t.cols[0] &&
        s.j < t.cols[1],
    )
    .map((t) => t.data[(s.i - t.rows[0]) * (t.cols[1] - t.cols[0]) + (s.j - t.cols[0])]!);
}

function check(
  spec: NetworkSpec,
  k: Kernels,
  train: TrainOptions,
  layout: ShardLayout,
  synapses: Synapse[],
): void {
  const r = lcg(31);
  const net = Network.create(spec, k, { seed: 3, weightStd: 0.5 });
  for (const b of net.biases) for (let j = 0; j < b.length; j++) b[j] = r() - 0.5;
  const nv = net.layers[0]!.size;
  const data = Float32Array.from({ length: 4 * nv }, () => (r() < 0.5 ? 1 : 0));
  const states: [Phase, Phase][] = Array.from({ length: UPDATES }, () => [
    phases(net, P, r),
    phases(net, Q, r),
  ]);
  const shards = layout.map((_, s) => s);
  const ref = shards.map((s) => apply(spec, k, train, layout, s, networkSource(net), data, states));
  for (const syn of synapses) {
    const c = net.connections[syn.conn]!;
    const keep = (l: number, u: number): boolean =>
      (l === c.from && u === syn.i) || (l === c.to && u === syn.j);
    const holders = shards.filter((s) => weightAt(ref[s]!, net, syn).length > 0);
    expect(holders.length).toBeGreaterThan(0);
    const want = weightAt(ref[holders[0]!]!, net, syn)[0]!;
    // the update moved it
    expect(want).not.toBe(
      net.connections[syn.conn]!.weights[syn.i * net.layers[c.to]!.size + syn.j],
    );

    // 1. everything else perturbed: parameters, data columns, states
    const other = net.clone();
    for (const p of other.parameters()) {
      for (let e = 0; e < p.data.length; e++) {
        const own =
          p.name === `${net.layers[c.from]!.name}-${net.layers[c.to]!.name}.weights` &&
          e === syn.i * net.layers[c.to]!.size + syn.j;
        if (!own) p.data[e] = p.data[e]! + (r() - 0.5);
      }
    }
    const data2 = data.map((v, e) => (c.from === 0 && e % nv === syn.i ? v : r() < 0.5 ? 1 : 0));
    const redraw = (ph: Phase): Phase =>
      ph.map((x, l) => {
        const n = net.layers[l]!.size;
        return x.map((v, e) => (keep(l, e % n) ? v : r() < 0.5 ? 1 : 0));
      });
    const states2 = states.map(([a, b]) => [redraw(a), redraw(b)] as [Phase, Phase]);
    for (const s of holders) {
      const got = apply(spec, k, train, layout, s, networkSource(other), data2, states2);
      for (const v of weightAt(got, net, syn))
        expect(v, `shard ${s} w[${syn.i},${syn.j}]`).toBe(want);
    }

    // 2. only unit i redrawn: no weight of another unit changes
    const only = (ph: Phase): Phase =>
      ph.map((x, l) => {
        const n = net.layers[l]!.size;
        return x.map((v, e) => (l === c.from && e % n === syn.i ? 1 - v : v));
      });
    const states3 = states.map(([a, b]) => [only(a), only(b)] as [Phase, Phase]);
    for (const s of shards) {
      const got = apply(spec, k, train, layout, s, networkSource(net), data, states3);
      const a = ref[s]!.weightTiles();
      got.weightTiles().forEach((t, ti) => {
        const tc = net.connections.find(
          (x) => `${net.layers[x.from]!.name}-${net.layers[x.to]!.name}.weights` === t.name,
        )!;
        const w = t.cols[1] - t.cols[0];
        for (let e = 0; e < t.data.length; e++) {
          const row = t.rows[0] + Math.floor(e / w);
          const col = t.cols[0] + (e % w);
          const touches =
            (tc.from === c.from && row === syn.i) || (tc.to === c.from && col === syn.i);
          if (!touches) expect(t.data[e], `${t.name}[${row},${col}]`).toBe(a[ti]!.data[e]);
        }
      });
    }
  }
}

describe("locality of a shard's rule", () => {
  const full: TrainOptions = {
    learningRate: 0.1,
    negative: 'pcd',
    centring: true,
    centringRate: 0.2,
    momentum: 0.5,
    weightDecay: 0.01,
  };
  for (const [kname, k] of [
    ['portable', portable],
    ['native', native],
  ] as const) {
    const run = k ? it : it.skip;
    run(`RBM, cross-shard tiles, centring + momentum + decay (${kname})`, () => {
      const layout: ShardLayout = [{ v: [0, 3], h: [0, 2] }, { v: [3, 7] }, { h: [2, 5] }];
      check(rbmSpec(7, 5), k!, full, layout, [
        { conn: 0, i: 1, j: 3 }, // owner 0, replica 2
        { conn: 0, i: 5, j: 0 }, // owner 1, replica 0
        { conn: 0, i: 2, j: 1 }, // within shard 0
        { conn: 0, i: 6, j: 4 }, // owner 1, replica 2
      ]);
    });
    run(`deep BM, sampled positive phase, centring + momentum + decay (${kname})`, () => {
      const layout: ShardLayout = [
        { v: [0, 3], h1: [0, 2] },
        { v: [3, 6], h2: [0, 4] },
        { h1: [2, 5] },
      ];
      check(dbm, k!, { ...full, positive: 'sample' }, layout, [
        { conn: 0, i: 4, j: 1 },
        { conn: 1, i: 3, j: 2 },
        { conn: 1, i: 0, j: 0 },
      ]);
    });
  }
});
