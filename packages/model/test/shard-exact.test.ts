// Staleness 0: a sharded run equals the single-process Trainer (statistics 'samples') bit for
// bit, for any number of shards and any layout, with the portable kernels.
import { describe, expect, it } from 'vitest';
import { type Kernels, NativeKernels, PortableKernels, nativeAvailable } from '@spinmesh/kernels';
import { type NetworkSpec, type ShardLayout, type TrainOptions, rbmSpec } from '../src/index.js';
import { type Job, cluster, compare, randomBinary, reference } from './shard-helpers.js';
import { dbm, dbmLayouts, dbmRules, rbmLayouts, rbmRules, smallJob } from './shard-cases.js';
import { initial } from './nets.js';

const portable = new PortableKernels();
const native: Kernels | null = nativeAvailable().ok ? new NativeKernels({ threads: 2 }) : null;

describe('staleness 0 reproduces Trainer bit for bit (portable kernels)', () => {
  for (const [rule, train] of rbmRules) {
    for (const [name, layout] of rbmLayouts) {
      it(`RBM 7-5, ${rule}, ${name}`, () => {
        const j = smallJob(rbmSpec(7, 5), train, 7);
        const init = initial(j.spec, portable, 3, 0.5);
        const ref = reference(j, init);
        const c = cluster(j, init, layout, portable);
        c.run();
        const got = c.assemble();
        expect(compare(got, ref)).toEqual({ maxDiff: 0, identical: true });
        // a real run moved the parameters
        expect(compare(ref, init).maxDiff).toBeGreaterThan(0.05);
      });
    }
  }
  for (const [rule, train] of dbmRules) {
    for (const [name, layout] of dbmLayouts) {
      it(`deep BM 6-5-4, ${rule}, ${name}`, () => {
        const j = smallJob(dbm, train, 6);
        const init = initial(j.spec, portable, 4, 0.5);
        const ref = reference(j, init);
        const c = cluster(j, init, layout, portable);
        c.run();
        expect(compare(c.assemble(), ref)).toEqual({ maxDiff: 0, identical: true });
        expect(compare(ref, init).maxDiff).toBeGreaterThan(0.05);
      });
    }
  }
});

describe('more unit types and lateral layers, staleness 0 (portable kernels)', () => {
  const ising: NetworkSpec = {
    layers: [
      { name: 'v', size: 7, units: 'ising' },
      { name: 'h', size: 5, units: 'ising' },
    ],
    connections: [{ from: 'v', to: 'h' }],
  };
  // a laterally connected layer lies within one shard; its neighbours may be split
  const srbm: NetworkSpec = {
    layers: [
      { name: 'v', size: 7, lateral: true },
      { name: 'h', size: 5 },
    ],
    connections: [{ from: 'v', to: 'h' }],
  };
  const cases: [string, NetworkSpec, TrainOptions, ShardLayout][] = [
    [
      'Ising RBM, PCD-1, centring',
      ising,
      { negative: 'pcd', chains: 6, centring: true, momentum: 0.5 },
      rbmLayouts[3]![1],
    ],
    [
      'semi-restricted BM (lateral visible layer), PCD-2, centring, decay',
      srbm,
      { negative: 'pcd', chains: 6, k: 2, centring: true, weightDecay: 0.01 },
      [{ v: [0, 7], h: [0, 1] }, { h: [1, 3] }, { h: [3, 5] }],
    ],
    [
      'semi-restricted BM, CD-1',
      srbm,
      { negative: 'cd', momentum: 0.5 },
      [{ h: [0, 5] }, { v: [0, 7] }],
    ],
  ];
  for (const [name, spec, train, layout] of cases) {
    it(name, () => {
      const j = smallJob(spec, train, 7);
      if (spec === ising) j.data = j.data.map((x) => (x > 0 ? 1 : -1));
      const init = initial(j.spec, portable, 6, 0.4);
      const ref = reference(j, init);
      const c = cluster(j, init, layout, portable);
      c.run();
      expect(compare(c.assemble(), ref)).toEqual({ maxDiff: 0, identical: true });
      expect(compare(ref, init).maxDiff).toBeGreaterThan(0.05);
    });
  }
});

describe('weight correlations counted from bits, staleness 0 (portable kernels)', () => {
  // With sampled statistics the states are 0 or 1 and both trainers count the correlations from
  // bits (Kernels.bitCorrelation); a unit with other values (here two real-valued data columns)
  // keeps the GEMM's values for its pairs. Per pair, so any layout still gives Trainer's model.
  const calls = { bits: 0, gemm: 0 };
  const counting = new Proxy(portable, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      return (...a: unknown[]) => {
        if (prop === 'bitCorrelation') calls.bits++;
        if (prop === 'sgemm' && a[0] === true && (a[3] as number) > 1) calls.gemm++;
        return (v as (...x: unknown[]) => unknown).apply(target, a);
      };
    },
  });
  for (const [name, odd] of [
    ['0/1 data', []],
    ['real values in data columns 1 and 5', [1, 5]],
  ] as const) {
    for (const [layoutName, layout] of rbmLayouts.slice(1)) {
      it(`RBM 7-5, PCD-2, centring, ${name}, ${layoutName}`, () => {
        const j = smallJob(rbmSpec(7, 5), rbmRules[1]![1], 7);
        for (let r = 0; r < j.rows; r++) for (const c of odd) j.data[r * 7 + c] = 0.25 + r / 26;
        const init = initial(j.spec, counting, 3, 0.5);
        calls.bits = calls.gemm = 0;
        const ref = reference(j, init);
        expect(calls.bits).toBeGreaterThan(0);
        expect(calls.gemm > 0).toBe(odd.length > 0);
        const c = cluster(j, init, layout, counting);
        c.run();
        expect(compare(c.assemble(), ref)).toEqual({ maxDiff: 0, identical: true });
      });
    }
  }
});

describe('native kernels (OpenBLAS), staleness 0', () => {
  // OpenBLAS's sgemm sums depend on the matrix shape (its edge kernels and thread split order
  // the additions differently), so a shard's slice of a product can differ from the same
  // elements of the whole product in the last bit. Those differences change a spin only when
  // its uniform falls within rounding (~1e-7) of its probability: over this run's ~2e4 draws
  // that happens with probability ~2e-3, and then a gradient entry would move by 1/chains *
  // lr = 1.2e-2. Without such a flip the parameters differ by rounding alone, about
  // steps * lr * 1e-6 = 2e-6 at most. So: agreement within 1e-5 (no spin differed), and
  // replicas computed by the same call on both sides stay bit-identical.
  const run = native ? it : it.skip;
  run('RBM 20-12, PCD-1, centring, momentum, decay: equals Trainer to rounding', () => {
    const j: Job = {
      spec: rbmSpec(20, 12),
      train: {
        batchSize: 8,
        learningRate: 0.1,
        seed: 2,
        negative: 'pcd',
        chains: 8,
        centring: true,
        momentum: 0.5,
        weightDecay: 0.01,
      },
      data: randomBinary(24, 20, 3, 0.4),
      rows: 24,
      epochs: 4,
    };
    const init = initial(j.spec, native!, 3, 0.3);
    const ref = reference(j, init);
    const c = cluster(j, init, [{ v: [0, 7], h: [0, 5] }, { v: [7, 20] }, { h: [5, 12] }], native!);
    c.run();
    const { maxDiff } = compare(c.assemble(), ref);
    expect(maxDiff).toBeLessThan(1e-5);
    expect(compare(ref, init).maxDiff).toBeGreaterThan(0.05);
    const tiles = new Map<string, Float32Array[]>();
    for (const t of c.trainers)
      for (const x of t!.weightTiles()) {
        const key = `${x.name}[${x.rows}][${x.cols}]`;
        tiles.set(key, [...(tiles.get(key) ?? []), x.data]);
      }
    let replicas = 0;
    for (const [key, copies] of tiles) {
      if (copies.length < 2) continue;
      replicas++;
      expect(Array.from(copies[1]!), key).toEqual(Array.from(copies[0]!));
    }
    expect(replicas).toBe(3);
  });
});
