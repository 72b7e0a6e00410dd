// The measured update of a shard (monitorNextUpdate / lastUpdateStats) and its spin-update and
// sweep counters. The figures are over the weights a shard owns, so those of all shards make up
// the whole network's: one shard owning everything gives the single-process Trainer's update
// norm, and the shards of any layout give the same norm (in squares) and correlation means
// (weighted by owned weights). The correlations are checked against a direct count.
import { describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import {
  Network,
  type NetworkSpec,
  type ShardLayout,
  ShardTrainer,
  type ShardUpdateStats,
  Trainer,
  type TrainOptions,
  networkSource,
} from '../src/index.js';
import { lcg } from './nets.js';

const k = new PortableKernels();
const P = 6;
const Q = 5;

// v -> h with a lateral layer z (laterals lie within one shard) connected to h.
const spec: NetworkSpec = {
  layers: [
    { name: 'v', size: 7 },
    { name: 'h', size: 5 },
    { name: 'z', size: 4, lateral: true },
  ],
  connections: [
    { from: 'v', to: 'h' },
    { from: 'h', to: 'z' },
  ],
};

type Phase = Float32Array[];

function phases(net: Network, rows: number, r: () => number): Phase {
  return net.layers.map((l) =>
    Float32Array.from({ length: rows * l.size }, () => (r() < 0.5 ? 1 : 0)),
  );
}

/** Applies the updates, measuring the last, on every shard of `layout`. */
function measured(
  net: Network,
  train: TrainOptions,
  layout: ShardLayout,
  states: [Phase, Phase][],
): ShardUpdateStats[] {
  return layout.map((_, shard) => {
    const tr = new ShardTrainer({
      network: spec,
      train: { batchSize: P, chains: Q, negative: 'pcd', positive: 'sample', ...train },
      layout,
      shard,
      kernels: k,
      data: { x: new Float32Array(4 * 7), rows: 4 },
      params: networkSource(net),
    });
    expect(tr.lastUpdateStats).toBeNull();
    states.forEach(([pos, neg], i) => {
      if (i === states.length - 1) tr.monitorNextUpdate();
      tr.applyUpdate(pos, P, neg, Q);
    });
    const s = tr.lastUpdateStats!;
    expect(s.step).toBe(states.length - 1);
    return s;
  });
}

/** Mean over all weights and off-diagonal laterals of <x_i x_j> over the rows of one phase. */
function directMean(net: Network, ph: Phase, rows: number): number {
  let sum = 0;
  let count = 0;
  const pair = (a: number, i: number, b: number, j: number): number => {
    let s = 0;
    const na = net.layers[a]!.size;
    const nb = net.layers[b]!.size;
    for (let r = 0; r < rows; r++) s += ph[a]![r * na + i]! * ph[b]![r * nb + j]!;
    return s / rows;
  };
  for (const c of net.connections)
    for (let i = 0; i < net.layers[c.from]!.size; i++)
      for (let j = 0; j < net.layers[c.to]!.size; j++) {
        sum += pair(c.from, i, c.to, j);
        count++;
      }
  const z = net.layers[2]!;
  for (let i = 0; i < z.size; i++)
    for (let j = 0; j < z.size; j++) {
      if (i === j) continue;
      sum += pair(2, i, 2, j);
      count++;
    }
  return sum / count;
}

describe('a shard measures its update on request', () => {
  const r = lcg(5);
  const net = Network.create(spec, k, { seed: 3, weightStd: 0.5 });
  const states: [Phase, Phase][] = Array.from({ length: 3 }, () => [
    phases(net, P, r),
    phases(net, Q, r),
  ]);
  const whole: ShardLayout = [{ v: [0, 7], h: [0, 5], z: [0, 4] }];
  const split: ShardLayout = [{ v: [0, 3], h: [0, 2] }, { v: [3, 7], z: [0, 4] }, { h: [2, 5] }];

  // (Centring is left to the layout test: Trainer.applyUpdate and ShardTrainer start their
  // visible offsets differently when no epoch has run.)
  for (const [name, train, vsTrainer] of [
    ['plain', { learningRate: 0.1 }, true],
    ['momentum and decay', { learningRate: 0.1, momentum: 0.5, weightDecay: 0.01 }, true],
    ['centring', { learningRate: 0.1, momentum: 0.5, centring: true }, false],
  ] as const) {
    if (vsTrainer)
      it(`one shard: the Trainer's update norm, and correlations as counted (${name})`, () => {
        const [s] = measured(net, train, whole, states);
        const ref = new Trainer(net.clone(), {
          batchSize: P,
          chains: Q,
          negative: 'pcd',
          positive: 'sample',
          statistics: 'samples',
          ...train,
        });
        let want = NaN;
        for (const [pos, neg] of states) want = ref.applyUpdate(pos, P, neg, Q).updateNorm;
        expect(want).toBeGreaterThan(0);
        expect(s!.updateNorm).toBeCloseTo(want, 5);
        expect(s!.weights).toBe(7 * 5 + 5 * 4 + 4 * 3);
        const [pos, neg] = states.at(-1)!;
        expect(s!.dataCorrelation).toBeCloseTo(directMean(net, pos, P), 12);
        expect(s!.modelCorrelation).toBeCloseTo(directMean(net, neg, Q), 12);
        expect(s!.learningRate).toBe(0.1);
      });

    it(`three shards make up the one shard's figures (${name})`, () => {
      const [one] = measured(net, train, whole, states);
      const parts = measured(net, train, split, states);
      const norm = Math.sqrt(parts.reduce((a, p) => a + p.updateNorm ** 2, 0));
      expect(norm).toBeCloseTo(one!.updateNorm, 6);
      const weights = parts.reduce((a, p) => a + p.weights, 0);
      expect(weights).toBe(one!.weights);
      const mean = (f: (p: ShardUpdateStats) => number): number =>
        parts.reduce((a, p) => a + (p.weights > 0 ? f(p) * p.weights : 0), 0) / weights;
      expect(mean((p) => p.dataCorrelation)).toBeCloseTo(one!.dataCorrelation, 12);
      expect(mean((p) => p.modelCorrelation)).toBeCloseTo(one!.modelCorrelation, 12);
    });
  }

  it('counts spin updates and sweeps as it draws', () => {
    // RBM 7-5, exact positive phase, PCD-2: a step is 1 positive stage (hidden) and 2 sweeps of
    // 2 stages; shard 0 owns v[0,3) and h[0,2).
    const rbm: NetworkSpec = {
      layers: [
        { name: 'v', size: 7 },
        { name: 'h', size: 5 },
      ],
      connections: [{ from: 'v', to: 'h' }],
    };
    const layout: ShardLayout = [
      { v: [0, 3], h: [0, 2] },
      { v: [3, 7], h: [2, 5] },
    ];
    const rows = 4;
    const data = Float32Array.from({ length: rows * 7 }, () => (r() < 0.5 ? 1 : 0));
    const trainers = layout.map(
      (_, shard) =>
        new ShardTrainer({
          network: rbm,
          train: { batchSize: rows, chains: 3, negative: 'pcd', k: 2, learningRate: 0.1 },
          layout,
          shard,
          kernels: k,
          data: { x: data, rows },
          steps: 2,
        }),
    );
    // Deliver messages by hand until both are done.
    for (let guard = 0; guard < 100 && !trainers.every((t) => t.done); guard++) {
      for (const t of trainers) {
        t.advance();
        for (const m of t.outgoing())
          for (const to of m.to) trainers[to]!.receive(m.from, m.step, m.stage, m.layer, m.packed);
      }
    }
    const s = trainers[0]!.stats();
    expect(trainers.every((t) => t.done)).toBe(true);
    // per step: positive 4 rows x 2 hidden; negative 2 sweeps x 3 chains x (3 visible + 2 hidden)
    expect(s.spinUpdates).toBe(2 * (rows * 2 + 2 * 3 * (3 + 2)));
    expect(s.sweeps).toBe(2 * (1 + 2));
  });
});
