import { describe, expect, it } from 'vitest';
import { SpecError } from '../src/errors.js';
import { barsAndStripes, basLogLikelihoodOptimum, basPatternCount } from '../src/data/bas.js';

function isBarsOrStripes(img: Float32Array, n: number): { bars: boolean; stripes: boolean } {
  let bars = true;
  let stripes = true;
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      if (img[i * n + j] !== img[j]) bars = false; // every row equals the first: vertical bars
      if (img[i * n + j] !== img[i * n]) stripes = false; // each row constant: stripes
    }
  }
  return { bars, stripes };
}

describe('bars and stripes', () => {
  it('4x4 has the 30 distinct patterns, each a bar or stripe image, shared ones once', () => {
    const ds = barsAndStripes(4);
    expect(ds.rows).toBe(30);
    expect(ds.dims).toBe(16);
    expect(ds.shape).toEqual([4, 4]);
    expect(ds.x.length).toBe(30 * 16);
    const seen = new Set<string>();
    let bars = 0;
    let stripes = 0;
    for (let r = 0; r < ds.rows; r++) {
      const img = ds.x.subarray(r * 16, r * 16 + 16);
      for (const v of img) expect(v === 0 || v === 1).toBe(true);
      const k = isBarsOrStripes(img, 4);
      expect(k.bars || k.stripes).toBe(true);
      if (k.bars) bars++;
      if (k.stripes) stripes++;
      expect(ds.labels![r]).toBe(k.bars ? 0 : 1);
      seen.add(Array.from(img).join(''));
    }
    expect(seen.size).toBe(30);
    expect(seen.has('0'.repeat(16))).toBe(true);
    expect(seen.has('1'.repeat(16))).toBe(true);
    // 16 bar images, 16 stripe images, of which all-off and all-on are both.
    expect(bars).toBe(16);
    expect(stripes).toBe(16);
  });

  it('counts 2^(n+1) - 2 for every size, and is the complete set', () => {
    for (let n = 1; n <= 6; n++) {
      const ds = barsAndStripes(n);
      expect(ds.rows).toBe(2 ** (n + 1) - 2);
      expect(basPatternCount(n)).toBe(ds.rows);
      const seen = new Set<string>();
      for (let r = 0; r < ds.rows; r++)
        seen.add(Array.from(ds.x.subarray(r * n * n, (r + 1) * n * n)).join(''));
      expect(seen.size).toBe(ds.rows);
    }
    // Exhaustive check for 3x3: every one of the 512 images is in the set iff it qualifies.
    const ds = barsAndStripes(3);
    const set = new Set<string>();
    for (let r = 0; r < ds.rows; r++) set.add(Array.from(ds.x.subarray(r * 9, r * 9 + 9)).join(''));
    let qualifying = 0;
    for (let m = 0; m < 512; m++) {
      const img = Float32Array.from({ length: 9 }, (_, i) => (m >> i) & 1);
      const k = isBarsOrStripes(img, 3);
      if (k.bars || k.stripes) qualifying++;
      expect(set.has(Array.from(img).join(''))).toBe(k.bars || k.stripes);
    }
    expect(qualifying).toBe(14);
  });

  it('optimum log-likelihood is -log(count)', () => {
    expect(basLogLikelihoodOptimum(4)).toBeCloseTo(-Math.log(30), 12);
    expect(basLogLikelihoodOptimum(2)).toBeCloseTo(-Math.log(6), 12);
  });

  it('rejects bad sizes', () => {
    expect(() => barsAndStripes(0)).toThrow(SpecError);
    expect(() => barsAndStripes(2.5)).toThrow(SpecError);
    expect(() => barsAndStripes(100)).toThrow(SpecError);
  });
});
