// The sharding library's boundaries: layout and option validation with errors naming the
// field, message validation, fresh initialisation slice by slice, assembly, the wire size, and
// Trainer's `statistics: 'samples'` (the single-process reference of a sharded run).
import { describe, expect, it } from 'vitest';
import { type Kernels, NativeKernels, PortableKernels, nativeAvailable } from '@spinmesh/kernels';
import {
  Network,
  type NetworkSpec,
  type ShardLayout,
  ShardTrainer,
  type ShardTrainerOptions,
  SpecError,
  type State,
  Trainer,
  type TrainOptions,
  assemble,
  evenLayout,
  initSource,
  networkSource,
  rbmSpec,
  shapeNetwork,
  validateLayout,
} from '../src/index.js';
import { cluster, randomBinary, stepsOf } from './shard-helpers.js';
import { initial, lcg } from './nets.js';

const portable = new PortableKernels();
const native: Kernels | null = nativeAvailable().ok ? new NativeKernels({ threads: 1 }) : null;

const srbm: NetworkSpec = {
  layers: [
    { name: 'v', size: 6, lateral: true },
    { name: 'h', size: 4 },
  ],
  connections: [{ from: 'v', to: 'h' }],
};

function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}

describe('layouts', () => {
  const net = shapeNetwork(rbmSpec(7, 5));
  it('bad layouts get a SpecError naming the field', () => {
    const bad: [unknown, RegExp][] = [
      [[], /^layout must be a non-empty array/],
      [{ v: [0, 7] }, /^layout must be a non-empty array/],
      [[{ v: [0, 7], h: [0, 5] }, {}], /^layout\[1\] owns no units/],
      [[{ v: [0, 7], x: [0, 5] }], /^layout\[0\]\.x is not a layer/],
      [[{ v: [3, 2], h: [0, 5] }], /^layout\[0\]\.v must be \[start, end\]/],
      [[{ v: [0, 8], h: [0, 5] }], /^layout\[0\]\.v must be/],
      [[{ v: [0, 1.5], h: [0, 5] }], /^layout\[0\]\.v must be/],
      [[{ v: [0, 4], h: [0, 5] }, { v: [3, 7] }], /^layout\[1\]\.v overlaps/],
      [[{ v: [0, 3], h: [0, 5] }, { v: [4, 7] }], /^layout\[1\]\.v leaves units 3\.\.3 of v/],
      [[{ v: [0, 7], h: [0, 4] }], /^layout leaves units 4\.\.4 of layer h/],
    ];
    for (const [layout, re] of bad) {
      const e = thrown(() => validateLayout(net, layout));
      expect(e, JSON.stringify(layout)).toBeInstanceOf(SpecError);
      expect(e.message).toMatch(re);
    }
    const lat = shapeNetwork(srbm);
    expect(
      thrown(() => validateLayout(lat, [{ v: [0, 3], h: [0, 4] }, { v: [3, 6] }])).message,
    ).toMatch(/^layout\[1\]\.v splits lateral layer v/);
    const gauss = shapeNetwork(rbmSpec(4, 3, 'gaussian'));
    expect(thrown(() => validateLayout(gauss, [{ v: [0, 4] }, { h: [0, 3] }])).message).toMatch(
      /^layout\[0\]\.v gaussian layer v must lie within one shard/,
    );
    expect(validateLayout(gauss, [{ v: [0, 4], h: [0, 3] }])).toHaveLength(1);
  });

  it('evenLayout splits every layer and keeps lateral layers whole', () => {
    expect(evenLayout(rbmSpec(7, 5), 3)).toEqual([
      { v: [0, 2], h: [0, 1] },
      { v: [2, 4], h: [1, 3] },
      { v: [4, 7], h: [3, 5] },
    ]);
    const l = evenLayout(srbm, 2);
    expect(l).toEqual([{ v: [0, 6], h: [0, 2] }, { h: [2, 4] }]);
    expect(validateLayout(shapeNetwork(srbm), l)).toEqual(l);
  });
});

describe('ShardTrainer boundaries', () => {
  const base = (o: Partial<ShardTrainerOptions> = {}): ShardTrainerOptions => ({
    network: rbmSpec(7, 5),
    train: { batchSize: 5, negative: 'pcd', chains: 4 },
    layout: [{ v: [0, 7] }, { h: [0, 5] }],
    shard: 0,
    kernels: portable,
    data: { x: randomBinary(13, 7, 1), rows: 13 },
    steps: 6,
    ...o,
  });

  it('bad options get a SpecError naming the field', () => {
    const bad: [Partial<ShardTrainerOptions>, RegExp][] = [
      [{ train: { statistics: 'means' } }, /^train\.statistics must be 'samples'/],
      [
        { network: { ...rbmSpec(7, 5), connections: [] }, train: { positive: 'meanfield' } },
        /^train\.positive/,
      ],
      [{ train: { learningRate: -1 } }, /^train\.learningRate/],
      [{ shard: 2 }, /^shard must be an integer in 0\.\.1/],
      [{ staleness: -1 }, /^staleness must be an integer >= 0 or Infinity/],
      [{ steps: 1.5 }, /^steps must be/],
      [{ checkpointEvery: Infinity }, /^checkpointEvery must be an integer >= 0$/],
      [{ data: { x: new Float32Array(10), rows: 13 } }, /^data\.x must be/],
      [{ data: { x: new Float32Array(0), rows: 0 } }, /^data\.rows/],
      [{ layout: [{ v: [0, 7] }] }, /^layout leaves units 0\.\.4 of layer h/],
    ];
    for (const [o, re] of bad) {
      const e = thrown(() => new ShardTrainer(base(o)));
      expect(e, JSON.stringify(o)).toBeInstanceOf(SpecError);
      expect(e.message).toMatch(re);
    }
  });

  it('refuses spins it cannot be meant to receive', () => {
    const tr = new ShardTrainer(base());
    // stages: 0 positive (h), 1 negative (v), 2 negative (h); shard 0 owns v, reads h
    expect(tr.plan.stages.map((s) => [s.phase, s.layers])).toEqual([
      ['positive', [1]],
      ['negative', [0]],
      ['negative', [1]],
    ]);
    const ok = new Uint8Array(Math.ceil((5 * 5) / 8));
    expect(tr.receive(1, 0, 0, 1, ok)).toBe(true);
    expect(tr.receive(1, 0, 0, 1, ok)).toBe(false); // duplicate
    expect(thrown(() => tr.receive(0, 0, 0, 1, ok)).message).toMatch(/^receive\.from/);
    expect(thrown(() => tr.receive(1, 0, 1, 0, ok)).message).toMatch(/^receive\.layer/);
    expect(thrown(() => tr.receive(1, 0, 2, 0, ok)).message).toMatch(/^receive\.layer/);
    expect(thrown(() => tr.receive(1, 0, 3, 1, ok)).message).toMatch(/^receive\.stage/);
    expect(thrown(() => tr.receive(1, 6, 0, 1, ok)).message).toMatch(/^receive\.step/);
    // the last batch of an epoch has 3 rows; chains always 4
    expect(thrown(() => tr.receive(1, 2, 0, 1, ok)).message).toMatch(
      /^receive\.packed must hold 2 bytes/,
    );
    expect(tr.receive(1, 2, 2, 1, new Uint8Array(3))).toBe(true);
    expect(tr.advance()).toEqual({
      state: 'waiting',
      waitingFor: [{ from: 1, step: 0, stage: 2, layer: 1 }],
    });
  });

  it('initSource draws exactly the slices Network.create draws', () => {
    for (const k of [portable, native]) {
      if (!k) continue;
      for (const spec of [rbmSpec(9, 7), srbm]) {
        const net = Network.create(spec, k, { seed: 5, weightStd: 0.3 });
        const src = initSource(spec, k, { seed: 5, weightStd: 0.3 });
        const c = net.connections[0]!;
        const nt = net.layers[c.to]!.size;
        const out = new Float32Array(6);
        src.weights(0, 1, 4, 1, 3, out);
        for (let i = 1; i < 4; i++)
          for (let j = 1; j < 3; j++) expect(out[(i - 1) * 2 + j - 1]).toBe(c.weights[i * nt + j]);
        if (net.laterals[0]) {
          const L = new Float32Array(36);
          src.lateral(0, L);
          expect(Array.from(L)).toEqual(Array.from(net.laterals[0]));
        }
      }
    }
  });

  it('assemble refuses blocks that overlap, leave gaps or mix steps', () => {
    const spec = rbmSpec(3, 2);
    const full = (step: number) => ({
      shard: 0,
      step,
      blocks: [
        { name: 'v.bias', rows: [0, 1] as const, cols: [0, 3] as const, data: new Float32Array(3) },
        { name: 'h.bias', rows: [0, 1] as const, cols: [0, 2] as const, data: new Float32Array(2) },
        {
          name: 'v-h.weights',
          rows: [0, 3] as const,
          cols: [0, 2] as const,
          data: new Float32Array(6),
        },
      ],
    });
    expect(assemble(spec, portable, [full(3)]).numUnits).toBe(5);
    expect(
      thrown(() => assemble(spec, portable, [full(3), { ...full(3), shard: 1 }])).message,
    ).toMatch(/covers \[0, 0\] twice/);
    expect(
      thrown(() => assemble(spec, portable, [full(3), { shard: 1, step: 4, blocks: [] }])).message,
    ).toMatch(/different steps/);
    const gap = full(3);
    gap.blocks.pop();
    expect(thrown(() => assemble(spec, portable, [gap])).message).toMatch(
      /^exports\.v-h\.weights do not cover element 0/,
    );
  });

  it('one bit per spin on the wire', () => {
    // RBM 7-5, shard 0 owns v, shard 1 owns h; batch 5 over 13 rows (5, 5, 3); PCD-1, 4 chains
    const j = {
      spec: rbmSpec(7, 5),
      train: { batchSize: 5, negative: 'pcd', chains: 4, seed: 1 } as TrainOptions,
      data: randomBinary(13, 7, 1),
      rows: 13,
      epochs: 2,
    };
    const c = cluster(
      j,
      initial(j.spec, portable, 1, 0.2),
      [{ v: [0, 7] }, { h: [0, 5] }],
      portable,
    );
    c.run();
    // per step: h positive (R x 5 bits), v negative (4 x 7), h negative (4 x 5)
    const per = (R: number): number =>
      Math.ceil((R * 5) / 8) + Math.ceil(28 / 8) + Math.ceil(20 / 8);
    expect(c.traffic.bytes).toBe(2 * (per(5) + per(5) + per(3)));
    expect(c.traffic.messages).toBe(3 * stepsOf(j));
    const st = c.stats().shards;
    expect(st[0]!.bytesSent + st[1]!.bytesSent).toBe(c.traffic.bytes);
    expect(st[0]!.bytesReceived).toBe(st[1]!.bytesSent);
  });
});

describe("Trainer statistics: 'samples'", () => {
  it('is validated and off by default', () => {
    const net = Network.create(rbmSpec(4, 3), portable);
    expect(new Trainer(net).options.statistics).toBe('means');
    expect(thrown(() => new Trainer(net, { statistics: 'spins' as never })).message).toMatch(
      /^train\.statistics must be 'means' or 'samples'$/,
    );
  });

  // The sampled update is an unbiased estimate of the Rao-Blackwellised one: same chains, same
  // draws, only the statistics differ. With R positive rows and C chains every statistic is a
  // mean of values in [0, 1], so the two updates (lr 1) differ by at most 5 * 0.5 * sqrt(1/R +
  // 1/C) (five standard errors) per parameter, and differ somewhere.
  const dbm: NetworkSpec = {
    layers: [
      { name: 'v', size: 4 },
      { name: 'h1', size: 3 },
      { name: 'h2', size: 2 },
    ],
    connections: [
      { from: 'v', to: 'h1' },
      { from: 'h1', to: 'h2' },
    ],
  };
  const cases: [string, NetworkSpec, TrainOptions][] = [
    ['RBM, exact positive phase, CD', rbmSpec(5, 4), { negative: 'cd' }],
    ['RBM, exact positive phase, PCD', rbmSpec(5, 4), { negative: 'pcd', chains: 20000 }],
    ['deep BM, mean field', dbm, { negative: 'pcd', chains: 20000, positive: 'meanfield' }],
    ['deep BM, mean field, CD', dbm, { negative: 'cd', positive: 'meanfield' }],
    [
      'deep BM, sampled positive phase',
      dbm,
      { negative: 'pcd', chains: 20000, positive: 'sample', positiveIterations: 5 },
    ],
  ];
  for (const [name, spec, opts] of cases) {
    it(`samples estimate the same update (${name})`, () => {
      const net = initial(spec, portable, 2, 0.8);
      const nv = net.layers[0]!.size;
      const patterns = randomBinary(5, nv, 3);
      const rows = 20000;
      const batch = new Float32Array(rows * nv);
      for (let r = 0; r < rows; r++)
        batch.set(patterns.subarray((r % 5) * nv, ((r % 5) + 1) * nv), r * nv);
      const delta = (statistics: 'means' | 'samples'): Float32Array[] => {
        const n = net.clone();
        new Trainer(n, {
          batchSize: rows,
          learningRate: 1,
          seed: 9,
          statistics,
          ...opts,
        }).trainBatch(batch, rows, 0, false);
        return n
          .parameters()
          .map((p, i) => p.data.map((v, e) => v - net.parameters()[i]!.data[e]!));
      };
      const a = delta('means');
      const b = delta('samples');
      const C = opts.negative === 'pcd' ? opts.chains! : rows;
      const tol = 5 * 0.5 * Math.sqrt(1 / rows + 1 / C);
      let maxDiff = 0;
      a.forEach((x, i) =>
        x.forEach((v, e) => (maxDiff = Math.max(maxDiff, Math.abs(v - b[i]![e]!)))),
      );
      expect(maxDiff).toBeLessThan(tol);
      expect(maxDiff).toBeGreaterThan(0);
    });
  }

  it('applyUpdate of a shard and of Trainer agree on the same states', () => {
    // the pure rule, without sampling: K = 1 shard versus Trainer.applyUpdate
    const spec = srbm;
    const net = initial(spec, portable, 4, 0.5);
    const r = lcg(8);
    const st = (rows: number): State =>
      net.layers.map((l) =>
        Float32Array.from({ length: rows * l.size }, () => (r() < 0.5 ? 1 : 0)),
      );
    const train: TrainOptions = {
      batchSize: 6,
      negative: 'pcd',
      chains: 5,
      centring: true,
      momentum: 0.5,
      weightDecay: 0.01,
    };
    const layout: ShardLayout = [{ v: [0, 6], h: [0, 4] }];
    const data = randomBinary(6, 6, 2);
    const tr = new Trainer(net.clone(), { ...train, statistics: 'samples' });
    // the visible offsets start at the data means, as in ShardTrainer (and Trainer.trainEpoch)
    const mean = Array.from({ length: 6 }, (_, j) => {
      let s = 0;
      for (let i = 0; i < 6; i++) s += data[i * 6 + j]!;
      return s / 6;
    });
    tr.setOffsets('v', Float32Array.from(mean));
    const sh = new ShardTrainer({
      network: spec,
      train,
      layout,
      shard: 0,
      kernels: portable,
      data: { x: data, rows: 6 },
      params: networkSource(net),
    });
    for (let i = 0; i < 3; i++) {
      const pos = st(6);
      const neg = st(5);
      tr.applyUpdate(pos, 6, neg, 5);
      sh.applyUpdate(pos, 6, neg, 5);
    }
    const got = assemble(spec, portable, [sh.exportBlocks()]);
    got
      .parameters()
      .forEach((p, i) =>
        expect(Array.from(p.data)).toEqual(Array.from(tr.network.parameters()[i]!.data)),
      );
  });
});
