import { describe, expect, it } from 'vitest';
import { SpecError } from '../src/errors.js';
import {
  binarize,
  checkDataset,
  columnMeans,
  epochOrder,
  gatherRows,
  scale01,
  split,
  subset,
  type Dataset,
} from '../src/data/dataset.js';

function isPermutation(p: Uint32Array, n: number): boolean {
  if (p.length !== n) return false;
  const seen = new Uint8Array(n);
  for (const v of p) {
    if (v >= n || seen[v]) return false;
    seen[v] = 1;
  }
  return true;
}

function toy(rows: number, dims: number): Dataset {
  const x = Float32Array.from({ length: rows * dims }, (_, i) => i);
  const labels = Int32Array.from({ length: rows }, (_, r) => r * 10);
  return { x, rows, dims, labels, name: 'toy' };
}

describe('epochOrder', () => {
  it('is a permutation for any size', () => {
    for (const n of [0, 1, 2, 3, 17, 1000])
      expect(isPermutation(epochOrder(n, 5, 0), n)).toBe(true);
  });

  it('is deterministic in (seed, epoch) and differs across epochs and seeds', () => {
    const a = epochOrder(500, 42, 3);
    expect(Array.from(epochOrder(500, 42, 3))).toEqual(Array.from(a));
    expect(Array.from(epochOrder(500, 42, 4))).not.toEqual(Array.from(a));
    expect(Array.from(epochOrder(500, 43, 3))).not.toEqual(Array.from(a));
    expect(Array.from(epochOrder(500, 42n + 2n ** 40n, 3))).not.toEqual(Array.from(a));
    // Not the identity, and not secretly related across epochs.
    let fixed = 0;
    for (let i = 0; i < 500; i++) if (a[i] === i) fixed++;
    expect(fixed).toBeLessThan(10);
  });

  it('puts every row in every position about equally often', () => {
    const n = 5;
    const epochs = 4000;
    const counts = new Array<number>(n * n).fill(0);
    for (let e = 0; e < epochs; e++) {
      const p = epochOrder(n, 7, e);
      for (let i = 0; i < n; i++) counts[i * n + p[i]!]!++;
    }
    // Each cell ~ Binomial(4000, 1/5): mean 800, sd ~25.
    for (const c of counts) expect(Math.abs(c - epochs / n)).toBeLessThan(125);
  });

  it('rejects bad arguments', () => {
    expect(() => epochOrder(-1, 0, 0)).toThrow(SpecError);
    expect(() => epochOrder(10, 0, -1)).toThrow(SpecError);
    expect(() => epochOrder(10, 0.5, 0)).toThrow(SpecError);
  });
});

describe('gatherRows', () => {
  it('copies the batch rows and labels in order, cutting the last batch short', () => {
    const ds = toy(5, 3);
    const out = new Float32Array(2 * 3);
    const labels = new Int32Array(2);
    const order = Uint32Array.from([4, 0, 2, 1, 3]);
    expect(gatherRows(ds, order, 0, 2, out, labels)).toBe(2);
    expect(Array.from(out)).toEqual([12, 13, 14, 0, 1, 2]);
    expect(Array.from(labels)).toEqual([40, 0]);
    expect(gatherRows(ds, order, 4, 2, out)).toBe(1);
    expect(Array.from(out.subarray(0, 3))).toEqual([9, 10, 11]);
    expect(gatherRows(ds, order, 5, 2, out)).toBe(0);
  });

  it('refuses a buffer that is too small and bad row indices', () => {
    const ds = toy(5, 3);
    expect(() => gatherRows(ds, [0, 1], 0, 2, new Float32Array(5))).toThrow(SpecError);
    expect(() => gatherRows(ds, [7], 0, 1, new Float32Array(3))).toThrow(SpecError);
  });
});

describe('binarize, scale01, subset, split', () => {
  it('threshold and none', () => {
    const ds: Dataset = { x: Float32Array.from([0, 0.49, 0.5, 1]), rows: 2, dims: 2, name: 'd' };
    expect(Array.from(binarize(ds, 'threshold').x)).toEqual([0, 0, 1, 1]);
    expect(Array.from(binarize(ds, 'threshold', 0.25).x)).toEqual([0, 1, 1, 1]);
    expect(binarize(ds, 'none')).toBe(ds);
  });

  it('bernoulli draws each pixel with its intensity, deterministically by seed', () => {
    const rows = 200;
    const dims = 50;
    const x = Float32Array.from({ length: rows * dims }, (_, i) => (i % dims) / (dims - 1));
    const ds: Dataset = { x, rows, dims, name: 'ramp' };
    const a = binarize(ds, 'bernoulli', 0.5, 9);
    expect(Array.from(binarize(ds, 'bernoulli', 0.5, 9).x)).toEqual(Array.from(a.x));
    expect(Array.from(binarize(ds, 'bernoulli', 0.5, 10).x)).not.toEqual(Array.from(a.x));
    for (const v of a.x) expect(v === 0 || v === 1).toBe(true);
    for (let j = 0; j < dims; j++) {
      let s = 0;
      for (let r = 0; r < rows; r++) s += a.x[r * dims + j]!;
      const p = j / (dims - 1);
      expect(Math.abs(s / rows - p)).toBeLessThanOrEqual(
        4 * Math.sqrt((p * (1 - p)) / rows) + 1e-9,
      );
    }
    expect(a.x[0]).toBe(0);
    expect(a.x[dims - 1]).toBe(1);
  });

  it('scale01 globally and per column', () => {
    const ds: Dataset = {
      x: Float32Array.from([0, 10, 5, 20, 10, 10]),
      rows: 3,
      dims: 2,
      name: 'd',
    };
    expect(Array.from(scale01(ds).x)).toEqual([0, 0.5, 0.25, 1, 0.5, 0.5]);
    expect(Array.from(scale01(ds, { perColumn: true }).x)).toEqual([0, 0, 0.5, 1, 1, 0]);
    const flat: Dataset = { x: Float32Array.from([3, 3]), rows: 2, dims: 1, name: 'f' };
    expect(Array.from(scale01(flat).x)).toEqual([0, 0]);
  });

  it('subset by count or indices', () => {
    const ds = toy(4, 2);
    const first = subset(ds, 2);
    expect(first.rows).toBe(2);
    expect(Array.from(first.x)).toEqual([0, 1, 2, 3]);
    expect(Array.from(first.labels!)).toEqual([0, 10]);
    expect(subset(ds, 10).rows).toBe(4);
    const picked = subset(ds, [3, 1, 3]);
    expect(Array.from(picked.x)).toEqual([6, 7, 2, 3, 6, 7]);
    expect(Array.from(picked.labels!)).toEqual([30, 10, 30]);
    checkDataset(picked);
    expect(() => subset(ds, [4])).toThrow(SpecError);
  });

  it('split is disjoint, complete and seeded', () => {
    const ds = toy(10, 1);
    const plain = split(ds, 0.7);
    expect(Array.from(plain.train.x)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(Array.from(plain.test.x)).toEqual([7, 8, 9]);
    const s = split(ds, 0.7, { seed: 1 });
    expect(s.train.rows).toBe(7);
    expect(s.test.rows).toBe(3);
    const all = [...s.train.x, ...s.test.x].sort((a, b) => a - b);
    expect(all).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(Array.from(s.train.x)).not.toEqual(Array.from(plain.train.x));
    expect(Array.from(split(ds, 0.7, { seed: 1 }).train.x)).toEqual(Array.from(s.train.x));
    expect(() => split(ds, 1.5)).toThrow(SpecError);
  });

  it('checkDataset catches inconsistent fields', () => {
    expect(() => checkDataset({ x: new Float32Array(5), rows: 2, dims: 2, name: 'bad' })).toThrow(
      SpecError,
    );
    expect(() =>
      checkDataset({ x: new Float32Array(4), rows: 2, dims: 2, shape: [3], name: 'bad' }),
    ).toThrow(SpecError);
  });
});

describe('columnMeans', () => {
  it('keeps the means of a data array, hands out copies, and tells other shapes apart', () => {
    const x = Float32Array.from([1, 0, 0.5, 1, 1, 0.25]);
    const data = { x, rows: 3, dims: 2 };
    const first = columnMeans(data);
    expect(Array.from(first)).toEqual([(1 + 0.5 + 1) / 3, (0 + 1 + 0.25) / 3]);
    first[0] = 99; // a caller's copy
    expect(columnMeans(data)).toEqual(Float64Array.from([(1 + 0.5 + 1) / 3, (0 + 1 + 0.25) / 3]));
    // the same array read as 2 rows of 3, or over its first row only
    expect(Array.from(columnMeans({ x, rows: 2, dims: 3 }))).toEqual([1, 0.5, 0.375]);
    expect(Array.from(columnMeans({ x, rows: 1, dims: 3 }))).toEqual([1, 0, 0.5]);
  });
});
