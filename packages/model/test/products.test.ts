// train.productBlock: fields cut at fixed unit indices are the same bits whatever the layout,
// with the native kernels (OpenBLAS) too, where one product per shard rounds a column according
// to where it lies in the call. Without the native kernels these tests fail: the set-up builds
// them.
import { describe, expect, it } from 'vitest';
import { type Kernels, NativeKernels } from '@spinmesh/kernels';
import {
  type ShardLayout,
  type TrainOptions,
  balancedLayout,
  evenLayout,
  rbmSpec,
  relayout,
} from '../src/index.js';
import { alignedBoundary, unitsProduct } from '../src/products.js';
import { cluster, randomBinary, reference } from './shard-helpers.js';
import { initial, lcg } from './nets.js';

const native = new NativeKernels({ threads: 1 });

/**
 * The kernels, recording the field of every unit drawn from step `from` on, keyed by the draw's
 * counter (step, stream, chain, unit): a sharded run draws each with the counter one process
 * uses, so the two runs' records compare value for value.
 */
function recording(k: Kernels, from: number): { kernels: Kernels; seen: Map<string, number> } {
  const seen = new Map<string, number>();
  const sampleUnits: Kernels['sampleUnits'] = (
    type,
    rows,
    n,
    field,
    ld,
    bias,
    beta,
    mean,
    out,
    site,
  ) => {
    if (site.step >= from)
      for (let r = 0; r < rows; r++)
        for (let j = 0; j < n; j++)
          seen.set(
            `${site.step}/${site.stream}/${site.chainOffset + r}/${site.unitOffset + j}`,
            field[r * ld + j]!,
          );
    k.sampleUnits(type, rows, n, field, ld, bias, beta, mean, out, site);
  };
  const kernels = new Proxy(k, {
    get(target, p) {
      if (p === 'sampleUnits') return sampleUnits;
      const v = Reflect.get(target, p) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { kernels, seen };
}

function random(n: number, seed: number, scale: number): Float32Array {
  const r = lcg(seed);
  return Float32Array.from({ length: n }, () => (r() - 0.5) * scale);
}

/** The fields of units [a, b) from the slab a shard of those units holds (its own copy). */
function shardFields(
  unitsAreRows: boolean,
  X: Float32Array,
  W: Float32Array,
  rows: number,
  K: number,
  n: number,
  [a, b]: readonly [number, number],
  block: number,
): Float32Array {
  const w = b - a;
  const slab = new Float32Array(K * w);
  for (let i = 0; i < K; i++)
    for (let j = 0; j < w; j++)
      slab[unitsAreRows ? j * K + i : i * w + j] = unitsAreRows
        ? W[(a + j) * K + i]!
        : W[i * n + a + j]!;
  const out = new Float32Array(rows * w);
  unitsProduct(
    native,
    unitsAreRows,
    rows,
    a,
    b,
    K,
    X,
    K,
    slab,
    unitsAreRows ? K : w,
    0,
    out,
    w,
    block,
  );
  return out;
}

/** Every layout's shard fields, put together as the whole layer's (rows x n). */
function layoutFields(unitsAreRows: boolean, cuts: number[], block: number): Float32Array {
  const [rows, K, n] = [100, 784, 500];
  const X = randomBinary(rows, K, 3, 0.3);
  const W = random(K * n, 5, 0.1);
  const out = new Float32Array(rows * n);
  const bounds = [0, ...cuts, n];
  for (let s = 0; s + 1 < bounds.length; s++) {
    const [a, b] = [bounds[s]!, bounds[s + 1]!];
    const f = shardFields(unitsAreRows, X, W, rows, K, n, [a, b], block);
    for (let r = 0; r < rows; r++) out.set(f.subarray(r * (b - a), (r + 1) * (b - a)), r * n + a);
  }
  return out;
}

describe('productBlock', () => {
  for (const unitsAreRows of [false, true]) {
    it(`gives every layout cut at its multiples the same fields (${unitsAreRows ? 'X W^T' : 'X W'})`, () => {
      const whole = layoutFields(unitsAreRows, [], 64);
      for (const cuts of [[256], [192], [64, 448], [128, 192, 320]])
        expect(layoutFields(unitsAreRows, cuts, 64)).toEqual(whole);
    });
  }

  it('moves layout boundaries to its multiples where the ranges stay non-empty', () => {
    expect(alignedBoundary(250, 64, 1, 499)).toBe(256);
    expect(alignedBoundary(100, 64, 1, 199)).toBe(128);
    expect(alignedBoundary(8, 64, 1, 15)).toBe(8); // no multiple within [1, 15]
    expect(alignedBoundary(250, 0, 1, 499)).toBe(250);
    const spec = rbmSpec(784, 500);
    expect(evenLayout(spec, 2, 64)).toEqual([
      { v: [0, 384], h: [0, 256] },
      { v: [384, 784], h: [256, 500] },
    ]);
    expect(balancedLayout(spec, [1, 3], 64)).toEqual([
      { v: [0, 192], h: [0, 128] },
      { v: [192, 784], h: [128, 500] },
    ]);
    expect(evenLayout(rbmSpec(12, 8), 2, 64)).toEqual(evenLayout(rbmSpec(12, 8), 2));
  });

  const job = {
    spec: rbmSpec(200, 150),
    train: {
      negative: 'pcd',
      chains: 20,
      k: 2,
      batchSize: 20,
      learningRate: 0.1,
      centring: true,
      momentum: 0.5,
      seed: 3,
      productBlock: 64,
    } as TrainOptions,
    data: randomBinary(120, 200, 2, 0.3),
    rows: 120,
    epochs: 3,
  };
  const aligned: ShardLayout = [
    { v: [0, 64], h: [0, 128] },
    { v: [64, 200], h: [128, 150] },
  ];

  it('makes the fields of sharded runs with native kernels those of one process, moved runs too', () => {
    const fields = (run: (k: Kernels) => void): Map<string, number> => {
      // from step 13: Trainer's monitor redraws units with training's counters on an epoch's first batch (step 12)
      const r = recording(native, 13);
      run(r.kernels);
      return r.seen;
    };
    const init = (k: Kernels) => initial(job.spec, k, 7, 0.1);
    const want = fields((k) => reference(job, init(k)));
    expect(want.size).toBe(5 * (20 * 150 + 2 * 20 * 350)); // 5 steps: positive h, 2 sweeps of v and h
    let at6: Map<number, Uint8Array> | undefined;
    const even = fields((k) => {
      const c = cluster(job, init(k), evenLayout(job.spec, 2, 64), k, { checkpointEvery: 6 });
      expect(c.run()).toBe('done');
      at6 = c.checkpoints.get(6)!;
    });
    expect(even).toEqual(want);
    const skewed = fields((k) => expect(cluster(job, init(k), aligned, k).run()).toBe('done'));
    expect(skewed).toEqual(want);
    const moved = fields((k) => {
      const c = cluster(job, init(k), aligned, k);
      relayout([at6!.get(0)!, at6!.get(1)!], aligned).forEach((b, s) => c.trainers[s]!.restore(b));
      expect(c.run()).toBe('done');
    });
    expect(moved).toEqual(want);
  });

  it('is refused with owned tiles, whose fields are summed in parts', () => {
    const init = initial(job.spec, native, 7, 0.1);
    expect(() => cluster(job, init, aligned, native, { tiles: 'owned' })).toThrow(
      /train.productBlock must be 0 with tiles 'owned'/,
    );
  });
});
