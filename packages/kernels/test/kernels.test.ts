// The contract of kernels.ts, checked against double-precision references for every
// implementation that is available here (native.test.ts fails on its own when the addon that
// should be there is not). SPINMESH_KERNELS=portable restricts it to the portable kernels.

import { describe, expect, it } from 'vitest';

import {
  NativeKernels,
  PortableKernels,
  UnitType,
  nativeAvailable,
  philox4x32,
  type Kernels,
} from '../src/index.js';

import { gemmRef, randomArray, sigmoid, site } from './helpers.js';

const impls: Kernels[] = [new PortableKernels()];
if (process.env.SPINMESH_KERNELS !== 'portable' && nativeAvailable().ok) {
  impls.push(new NativeKernels());
}

const EPS = 2 ** -24;

describe.each(impls.map((k) => [k.name, k] as const))('%s kernels', (_name, K) => {
  describe('sgemm', () => {
    const combos = [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const;

    it.each(combos)('transA=%s transB=%s matches a double reference', (ta, tb) => {
      // Odd sizes straddle the 4x4 tiles and the 256-deep k blocks; the padded strides and
      // subarray offsets check that ld and byteOffset are honoured.
      for (const [m, n, k] of [
        [1, 1, 1],
        [7, 5, 3],
        [37, 53, 301],
        [66, 9, 17],
      ] as const) {
        const [ar, ac] = ta ? [k, m] : [m, k];
        const [br, bc] = tb ? [n, k] : [k, n];
        const lda = ac + 3;
        const ldb = bc + 1;
        const ldc = n + 2;
        const a = randomArray(5 + ar * lda, 1 + m).subarray(5);
        const b = randomArray(3 + br * ldb, 2 + n).subarray(3);
        const c = randomArray(7 + m * ldc, 3 + k).subarray(7);
        for (const [alpha, beta] of [
          [1, 0],
          [0.5, 1],
          [-2, 0.25],
        ] as const) {
          const c0 = c.slice();
          const ref = gemmRef(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
          K.sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              const err = Math.abs(c0[i * ldc + j]! - ref.c[i * n + j]!);
              // Worst-case float summation bound, for any order and with or without FMA.
              expect(err).toBeLessThanOrEqual((k + 2) * EPS * ref.mag[i * n + j]! + 1e-30);
            }
            // Padding between rows of C is left alone.
            for (let j = n; j < ldc && i < m - 1; j++) expect(c0[i * ldc + j]).toBe(c[i * ldc + j]);
          }
        }
      }
    });

    it('with beta = 0 does not read C (NaN does not leak) and k = 0 only scales C', () => {
      const a = randomArray(6, 1);
      const b = randomArray(6, 2);
      const c = new Float32Array(4).fill(NaN);
      K.sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2);
      expect(c.every(Number.isFinite)).toBe(true);
      const d = new Float32Array([1, 2, 3, 4]);
      K.sgemm(false, false, 2, 2, 0, 1, new Float32Array(0), 0, new Float32Array(0), 2, 3, d, 2);
      expect(Array.from(d)).toEqual([3, 6, 9, 12]);
    });

    it('rejects buffers too small for the shape', () => {
      const a = new Float32Array(5);
      const b = new Float32Array(6);
      const c = new Float32Array(4);
      expect(() => K.sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)).toThrow(RangeError);
      expect(() => K.sgemm(false, false, 2, 2, 3, 1, b, 2, b, 2, 0, c, 2)).toThrow(/lda/);
    });
  });

  describe('sampleUnits', () => {
    it('follows the Philox definition of the contract draw by draw', () => {
      const rows = 3;
      const n = 70; // more than one 64-unit native block
      const field = randomArray(rows * n, 11, -3, 3);
      const bias = randomArray(n, 12, -1, 1);
      const s = site({ unitOffset: 1000, chainOffset: 20 });
      const w = new Uint32Array(4);
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        const beta = 0.8;
        const out = new Float32Array(rows * n);
        K.sampleUnits(type, rows, n, field, n, bias, beta, null, out, s);
        let disagree = 0;
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < n; j++) {
            philox4x32(1000 + j, 20 + r, s.step, s.stream, s.seedLo, s.seedHi, w);
            const x = field[r * n + j]! + bias[j]!;
            const got = out[r * n + j]!;
            if (type === UnitType.Gaussian) {
              const u1 = ((w[0]! >>> 8) + 1) * EPS;
              const u2 = (w[1]! >>> 8) * EPS;
              const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
              expect(got).toBeCloseTo(x + z / Math.sqrt(beta), 5);
            } else {
              const u = (w[0]! >>> 8) * EPS;
              const p = sigmoid(type === UnitType.Ising ? 2 * beta * x : beta * x);
              const want = u < p ? 1 : type === UnitType.Ising ? -1 : 0;
              if (got !== want) disagree++;
              // Only a draw with u within float rounding of p may differ.
              if (got !== want) expect(Math.abs(u - p)).toBeLessThan(1e-6);
            }
          }
        }
        expect(disagree).toBeLessThanOrEqual(1);
      }
    });

    it('writes means: sigmoid, tanh, and field + bias', () => {
      const rows = 2;
      const n = 9;
      const ld = 11;
      const field = randomArray(rows * ld, 21, -6, 6);
      const bias = randomArray(n, 22);
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        const mean = new Float32Array(rows * ld).fill(-7);
        K.sampleUnits(type, rows, n, field, ld, bias, 1.5, mean, null, site());
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < ld; j++) {
            const got = mean[r * ld + j]!;
            if (j >= n) {
              expect(got).toBe(-7);
              continue;
            }
            const x = field[r * ld + j]! + bias[j]!;
            const want =
              type === UnitType.Bernoulli
                ? sigmoid(1.5 * x)
                : type === UnitType.Ising
                  ? Math.tanh(1.5 * x)
                  : x;
            expect(Math.abs(got - want)).toBeLessThan(1e-6);
          }
        }
      }
    });

    it('works in place (mean or out is field)', () => {
      const n = 100;
      const field = randomArray(n, 31, -2, 2);
      const bias = randomArray(n, 32);
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        const mean = new Float32Array(n);
        const out = new Float32Array(n);
        K.sampleUnits(type, 1, n, field, n, bias, 1, mean, out, site());
        const f1 = field.slice();
        const o1 = new Float32Array(n);
        K.sampleUnits(type, 1, n, f1, n, bias, 1, f1, o1, site());
        expect(f1).toEqual(mean);
        expect(o1).toEqual(out);
        const f2 = field.slice();
        const m2 = new Float32Array(n);
        K.sampleUnits(type, 1, n, f2, n, bias, 1, m2, f2, site());
        expect(m2).toEqual(mean);
        expect(f2).toEqual(out);
      }
    });

    it('does not depend on how units and chains are split into shards', () => {
      const rows = 64;
      const n = 100;
      const field = randomArray(rows * n, 41, -2, 2);
      const bias = randomArray(n, 42);
      const base = site({ unitOffset: 500, chainOffset: 3000 });
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        const whole = new Float32Array(rows * n);
        K.sampleUnits(type, rows, n, field, n, bias, 1, null, whole, base);

        // Columns 0..39 and 40..99 as two shards (subarray views with the full row stride).
        const cols = new Float32Array(rows * n);
        K.sampleUnits(type, rows, 40, field, n, bias, 1, null, cols, base);
        K.sampleUnits(
          type,
          rows,
          60,
          field.subarray(40),
          n,
          bias.subarray(40),
          1,
          null,
          cols.subarray(40),
          { ...base, unitOffset: base.unitOffset + 40 },
        );
        expect(cols).toEqual(whole);

        // Rows 0..31 and 32..63.
        const split = new Float32Array(rows * n);
        K.sampleUnits(type, 32, n, field, n, bias, 1, null, split, base);
        K.sampleUnits(
          type,
          32,
          n,
          field.subarray(32 * n),
          n,
          bias,
          1,
          null,
          split.subarray(32 * n),
          { ...base, chainOffset: base.chainOffset + 32 },
        );
        expect(split).toEqual(whole);

        // Another step or stream gives other draws.
        const other = new Float32Array(rows * n);
        K.sampleUnits(type, rows, n, field, n, bias, 1, null, other, { ...base, stream: 2 });
        expect(other).not.toEqual(whole);
      }
    });

    it('draws Bernoulli units with probability sigmoid(beta a)', () => {
      const rows = 4000;
      const n = 41;
      const beta = 0.7;
      const bias = new Float32Array(n).map((_, j) => -6 + (12 * j) / (n - 1));
      const field = new Float32Array(rows * n);
      const out = new Float32Array(rows * n);
      K.sampleUnits(UnitType.Bernoulli, rows, n, field, n, bias, beta, null, out, site());
      expect(out.every((x) => x === 0 || x === 1)).toBe(true);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += out[r * n + j]!;
        const p = sigmoid(beta * bias[j]!);
        const sd = Math.sqrt((p * (1 - p)) / rows);
        expect(Math.abs(s / rows - p)).toBeLessThanOrEqual(5 * sd + 1 / rows);
      }
    });

    it('draws Ising units with mean tanh(beta a)', () => {
      const rows = 4000;
      const n = 41;
      const beta = 1.3;
      const bias = new Float32Array(n).map((_, j) => -2 + (4 * j) / (n - 1));
      const field = new Float32Array(rows * n);
      const out = new Float32Array(rows * n);
      K.sampleUnits(UnitType.Ising, rows, n, field, n, bias, beta, null, out, site());
      expect(out.every((x) => x === -1 || x === 1)).toBe(true);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += out[r * n + j]!;
        const m = Math.tanh(beta * bias[j]!);
        const sd = Math.sqrt((1 - m * m) / rows);
        expect(Math.abs(s / rows - m)).toBeLessThanOrEqual(5 * sd + 2 / rows);
      }
    });

    it('draws Gaussian units from N(field + bias, 1/beta)', () => {
      const rows = 2000;
      const n = 50;
      const beta = 4;
      const bias = new Float32Array(n).map((_, j) => j / 10 - 2);
      const field = randomArray(rows * n, 51, -1, 1);
      const out = new Float32Array(rows * n);
      K.sampleUnits(UnitType.Gaussian, rows, n, field, n, bias, beta, null, out, site());
      const N = rows * n;
      let s = 0;
      let s2 = 0;
      let s4 = 0;
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < n; j++) {
          const d = out[r * n + j]! - (field[r * n + j]! + bias[j]!);
          s += d;
          s2 += d * d;
          s4 += d ** 4;
        }
      }
      const v = 1 / beta;
      expect(Math.abs(s / N)).toBeLessThan(5 * Math.sqrt(v / N));
      expect(Math.abs(s2 / N - v)).toBeLessThan(5 * Math.sqrt((2 * v * v) / N));
      // Kurtosis of a normal is 3: catches a uniform or otherwise wrongly shaped draw.
      expect(Math.abs(s4 / N / (v * v) - 3)).toBeLessThan(0.15);
    });
  });

  describe('uniform', () => {
    it('fills with 24-bit uniforms indexed by (unit, chain) and matches the generator', () => {
      const count = 1000;
      const n = 77;
      const out = new Float32Array(count + 1).fill(-1);
      const s = site({ unitOffset: 4294967290, chainOffset: 9 }); // units wrap past 2^32
      K.uniform(out, count, n, s);
      const w = new Uint32Array(4);
      let sum = 0;
      for (let i = 0; i < count; i++) {
        const u = out[i]!;
        expect(u).toBeGreaterThanOrEqual(0);
        expect(u).toBeLessThan(1);
        philox4x32(
          s.unitOffset + (i % n),
          9 + Math.floor(i / n),
          s.step,
          s.stream,
          s.seedLo,
          s.seedHi,
          w,
        );
        expect(u).toBe((w[0]! >>> 8) * EPS);
        sum += u;
      }
      expect(out[count]).toBe(-1);
      expect(Math.abs(sum / count - 0.5)).toBeLessThan(5 * Math.sqrt(1 / 12 / count));
    });
  });

  describe('logPartitionRows', () => {
    it('sums softplus, log 2cosh and a^2/(2 beta) per row, and accumulates', () => {
      const rows = 5;
      const n = 131;
      const ld = 140;
      const x = randomArray(rows * ld, 61, -30, 30);
      const bias = randomArray(n, 62, -1, 1);
      const beta = 0.9;
      const g = [
        (a: number): number => (a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a))),
        (a: number): number => Math.abs(a) + Math.log1p(Math.exp(-2 * Math.abs(a))),
        (a: number): number => (a * a) / (2 * beta),
      ];
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        for (const withBias of [true, false]) {
          const out = new Float32Array(rows).fill(2);
          K.logPartitionRows(type, rows, n, x, ld, withBias ? bias : null, beta, out, true);
          const fresh = new Float32Array(rows).fill(NaN);
          K.logPartitionRows(type, rows, n, x, ld, withBias ? bias : null, beta, fresh, false);
          for (let r = 0; r < rows; r++) {
            let want = 0;
            for (let j = 0; j < n; j++) {
              want += g[type]!(beta * (x[r * ld + j]! + (withBias ? bias[j]! : 0)));
            }
            expect(Math.abs(fresh[r]! - want)).toBeLessThanOrEqual(1e-6 * Math.abs(want));
            expect(Math.abs(out[r]! - (want + 2))).toBeLessThanOrEqual(1e-6 * Math.abs(want));
          }
        }
      }
    });

    it('is accurate for large |a| and tiny softplus values', () => {
      const x = new Float32Array([-80, -20, 0, 20, 80, 500]);
      const out = new Float32Array(1);
      K.logPartitionRows(UnitType.Bernoulli, 1, 6, x, 6, null, 1, out, false);
      const want = Math.log1p(Math.exp(-80)) + Math.log1p(Math.exp(-20)) + Math.LN2 + 20 + 80 + 500;
      expect(Math.abs(out[0]! - want) / want).toBeLessThan(1e-6);
      K.logPartitionRows(UnitType.Bernoulli, 1, 2, x, 2, null, 1, out, false);
      expect(Math.abs(out[0]! - Math.exp(-20)) / Math.exp(-20)).toBeLessThan(1e-5);
    });
  });

  describe('vector ops', () => {
    it('axpby', () => {
      const n = 1001;
      const x = randomArray(n + 3, 71).subarray(3);
      const y = randomArray(n + 1, 72);
      const y0 = y.slice();
      K.axpby(n, 0.5, x, -2, y);
      for (let i = 0; i < n; i++) {
        expect(Math.abs(y[i]! - (0.5 * x[i]! - 2 * y0[i]!))).toBeLessThan(1e-6);
      }
      expect(y[n]).toBe(y0[n]);
      const z = new Float32Array(n).fill(NaN);
      K.axpby(n, 3, x, 0, z);
      for (let i = 0; i < n; i++) expect(z[i]).toBeCloseTo(3 * x[i]!, 6);
    });

    it('colSums', () => {
      const rows = 37;
      const n = 300; // more than one 256-column native block
      const ld = 305;
      const x = randomArray(rows * ld, 81);
      const out = randomArray(n, 82);
      const out0 = out.slice();
      K.colSums(rows, n, x, ld, 0.5, 2, out);
      const fresh = new Float32Array(n).fill(NaN);
      K.colSums(rows, n, x, ld, 1, 0, fresh);
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let r = 0; r < rows; r++) s += x[r * ld + j]!;
        expect(Math.abs(out[j]! - (0.5 * s + 2 * out0[j]!))).toBeLessThan(1e-5);
        expect(Math.abs(fresh[j]! - s)).toBeLessThan(1e-5);
      }
    });

    it('shiftScaleRows', () => {
      const rows = 4;
      const n = 13;
      const ld = 15;
      const x = randomArray(rows * ld, 91);
      const off = randomArray(n, 92);
      for (const offset of [off, null]) {
        const y = x.slice();
        K.shiftScaleRows(rows, n, y, ld, offset, 3);
        for (let r = 0; r < rows; r++) {
          for (let j = 0; j < ld; j++) {
            const want = j < n ? 3 * (x[r * ld + j]! - (offset ? offset[j]! : 0)) : x[r * ld + j]!;
            expect(Math.abs(y[r * ld + j]! - want)).toBeLessThan(1e-6);
          }
        }
      }
    });

    it('sumSquares and dot accumulate in double', () => {
      const n = 1003;
      const x = randomArray(n, 101);
      const y = randomArray(n, 102);
      let ss = 0;
      let d = 0;
      for (let i = 0; i < n; i++) {
        ss += x[i]! * x[i]!;
        d += x[i]! * y[i]!;
      }
      expect(Math.abs(K.sumSquares(n, x) - ss)).toBeLessThan(1e-12 * ss);
      expect(Math.abs(K.dot(n, x, y) - d)).toBeLessThan(1e-12 * n);
      // 1 + 2^-30 sums that a float accumulator would lose.
      const big = new Float32Array([1, 2 ** -15, 2 ** -15]);
      expect(K.sumSquares(3, big)).toBe(1 + 2 ** -29);
      expect(K.dot(0, x, y)).toBe(0);
    });

    it('copyBlock copies a strided block between offsets and touches nothing else', () => {
      // widths on both sides of the portable kernels' switch from element loops to set()
      for (const [rows, n, sLd, dLd] of [
        [1, 1, 1, 1],
        [5, 8, 16, 32],
        [33, 3, 3, 3],
        [7, 64, 70, 64],
        [9, 100, 130, 101],
        [0, 4, 4, 4],
        [4, 0, 4, 4],
      ] as const) {
        const so = 3;
        const dOff = 5;
        const src = randomArray(so + rows * sLd + 2, rows + n);
        const dst = new Float32Array(dOff + rows * dLd + 2).fill(7);
        const before = dst.slice();
        K.copyBlock(rows, n, src, so, sLd, dst, dOff, dLd);
        const want = before.slice();
        for (let r = 0; r < rows; r++)
          for (let j = 0; j < n; j++) want[dOff + r * dLd + j] = src[so + r * sLd + j]!;
        expect(dst).toEqual(want);
      }
      const src = new Float32Array(20);
      const dst = new Float32Array(20);
      // 4 rows of 4 with stride 5 from element 4 end at element 4 + 3*5 + 4 = 23 > 20
      expect(() => K.copyBlock(4, 4, src, 4, 5, dst, 0, 4)).toThrow(/src holds 20 elements/);
      expect(() => K.copyBlock(4, 4, src, 0, 4, dst, 5, 4)).toThrow(/dst holds 20 elements/);
      expect(() => K.copyBlock(2, 4, src, 0, 3, dst, 0, 4)).toThrow(/src ld \(3\) is smaller/);
      expect(() => K.copyBlock(2, 4, src, -1, 4, dst, 0, 4)).toThrow(/src offset must be/);
    });

    it('packSpins and unpackSpins round-trip {0,1} and {-1,+1}', () => {
      for (const n of [0, 1, 8, 13, 64, 1001]) {
        for (const off of [0, -1]) {
          const x = randomArray(n, n + 7).map((v) => (v > 0 ? 1 : off));
          const packed = new Uint8Array(((n + 7) >> 3) + 1).fill(0xaa);
          K.packSpins(n, x, packed);
          for (let i = 0; i < n; i++) {
            expect((packed[i >> 3]! >> (i & 7)) & 1).toBe(x[i]! > 0 ? 1 : 0);
          }
          if (n % 8) expect(packed[n >> 3]! >> (n % 8)).toBe(0);
          expect(packed[(n + 7) >> 3]).toBe(0xaa);
          const y = new Float32Array(n + 1).fill(5);
          K.unpackSpins(n, packed, off, y);
          expect(y.subarray(0, n)).toEqual(x);
          expect(y[n]).toBe(5);
        }
      }
    });
  });

  describe('packColumns and bitCorrelation', () => {
    /** rows x n of 0s and 1s (density p), with an odd value at (row, col) for each of `odd`. */
    const bits01 = (rows: number, n: number, seed: number, odd: [number, number][] = []) => {
      const x = randomArray(rows * n, seed).map((v) => (v > 0.2 ? 1 : 0));
      for (const [r, c] of odd) x[r * n + c] = 0.5;
      return x;
    };
    /** out = sum_r a_r (x_ri - mu_i)(y_rj - lam_j), a_r = 1/R then -1/C, in double. */
    const reference = (
      R: number,
      C: number,
      m: number,
      w: number,
      X: Float32Array,
      Y: Float32Array,
      mu: Float32Array | null,
      lam: Float32Array | null,
    ): Float64Array => {
      const out = new Float64Array(m * w);
      for (let r = 0; r < R + C; r++) {
        const a = r < R ? 1 / R : -1 / C;
        for (let i = 0; i < m; i++)
          for (let j = 0; j < w; j++)
            out[i * w + j]! +=
              a * (X[r * m + i]! - (mu?.[i] ?? 0)) * (Y[r * w + j]! - (lam?.[j] ?? 0));
      }
      return out;
    };
    const pack = (rows: number, n: number, x: Float32Array, odd: Uint8Array): Uint32Array => {
      const out = new Uint32Array(n * Math.ceil(rows / 32) + 1).fill(0xdeadbeef);
      K.packColumns(rows, n, x, n, out, odd);
      return out;
    };

    it('packs column bits and marks the columns with values other than 0 and 1', () => {
      const [rows, n] = [70, 5]; // three words a column, the last one partly used
      const x = bits01(rows, n, 3, [[69, 2]]);
      const odd = new Uint8Array(n);
      const out = new Uint32Array(n * 3);
      expect(K.packColumns(rows, n, x, n, out, odd)).toBe(false);
      expect([...odd]).toEqual([0, 0, 1, 0, 0]);
      for (let i = 0; i < n; i++)
        for (let r = 0; r < rows; r++)
          expect((out[i * 3 + (r >> 5)]! >>> (r & 31)) & 1).toBe(x[r * n + i] === 1 ? 1 : 0);
      expect(out[3 * 0 + 2]! >>> 6).toBe(0); // the spare high bits
      // odd marks are kept (a second phase adds to them); an all-0/1 block says so
      expect(K.packColumns(2, n, bits01(2, n, 4), n, out, odd)).toBe(true);
      expect([...odd]).toEqual([0, 0, 1, 0, 0]);
    });

    it('equals the centred correlation, in any tile, and leaves odd units alone', () => {
      for (const [m, w, R, C, centred] of [
        [7, 5, 3, 4, true],
        [37, 29, 33, 100, true],
        [20, 12, 64, 1, false],
      ] as const) {
        const X = bits01(R + C, m, m);
        const Y = bits01(R + C, w, w + 1);
        const mu = centred ? randomArray(m, 5).map((v) => 0.5 + v / 4) : null;
        const lam = centred ? randomArray(w, 6).map((v) => 0.5 + v / 4) : null;
        const oddX = new Uint8Array(m);
        const oddY = new Uint8Array(w);
        const [xp, xn] = [pack(R, m, X, oddX), pack(C, m, X.subarray(R * m), oddX)];
        const [yp, yn] = [pack(R, w, Y, oddY), pack(C, w, Y.subarray(R * w), oddY)];
        const ref = reference(R, C, m, w, X, Y, mu, lam);
        const out = new Float32Array(m * w);
        K.bitCorrelation(m, w, R, C, xp, xn, yp, yn, mu, lam, null, null, out, w);
        for (let e = 0; e < m * w; e++) expect(out[e]).toBe(Math.fround(ref[e]!));
        // a tile: the same block of the whole, bit for bit
        const [r0, c0, tm, tw] = [2, 1, m - 3, w - 2];
        const [wr, wc] = [Math.ceil(R / 32), Math.ceil(C / 32)];
        const tile = new Float32Array(tm * (tw + 3)).fill(7);
        K.bitCorrelation(
          tm,
          tw,
          R,
          C,
          xp.subarray(r0 * wr),
          xn.subarray(r0 * wc),
          yp.subarray(c0 * wr),
          yn.subarray(c0 * wc),
          mu?.subarray(r0) ?? null,
          lam?.subarray(c0) ?? null,
          null,
          null,
          tile,
          tw + 3,
        );
        for (let i = 0; i < tm; i++) {
          for (let j = 0; j < tw; j++)
            expect(tile[i * (tw + 3) + j]).toBe(out[(r0 + i) * w + c0 + j]);
          expect(tile[i * (tw + 3) + tw]).toBe(7);
        }
        // odd units: their rows and columns are left as they were
        oddX[1] = 1;
        oddY[0] = 1;
        const kept = new Float32Array(m * w).fill(-3);
        K.bitCorrelation(m, w, R, C, xp, xn, yp, yn, mu, lam, oddX, oddY, kept, w);
        for (let i = 0; i < m; i++)
          for (let j = 0; j < w; j++)
            expect(kept[i * w + j]).toBe(i === 1 || j === 0 ? -3 : out[i * w + j]);
      }
    });
  });

  it('refuses a bad argument of every kernel with a RangeError naming the kernel and the argument', () => {
    // The same messages from every implementation: the checks are written once (checks.ts).
    const f = (n: number): Float32Array => new Float32Array(n);
    const u = (n: number): Uint32Array => new Uint32Array(n);
    const s = site();
    const cases: [() => unknown, RegExp][] = [
      [
        () => K.sampleUnits(0, 2, 3, f(5), 3, f(3), 1, null, null, s),
        /^sampleUnits: field holds 5/,
      ],
      [() => K.sampleUnits(0, 2, 3, f(6), 3, f(2), 1, null, null, s), /^sampleUnits: bias holds 2/],
      [() => K.sampleUnits(0, 2, 3, f(6), 3, f(3), 1, f(5), null, s), /^sampleUnits: mean holds 5/],
      [() => K.sampleUnits(0, 2, 3, f(6), 3, f(3), 1, null, f(5), s), /^sampleUnits: out holds 5/],
      [
        () => K.sampleUnits(3 as never, 1, 1, f(1), 1, f(1), 1, null, null, s),
        /unknown unit type 3/,
      ],
      [
        () => K.sampleUnits(0, 1, 1, f(1), 1, f(1), 1, null, null, { ...s, step: 0.5 }),
        /site\.step/,
      ],
      [() => K.uniform(f(3), 4, 2, s), /^uniform: out holds 3 elements, needs 4/],
      [() => K.uniform(f(4), 4, 0, s), /^uniform: n must be positive/],
      [
        () => K.logPartitionRows(0, 2, 3, f(5), 3, null, 1, f(2), false),
        /^logPartitionRows: x holds 5/,
      ],
      [() => K.logPartitionRows(0, 2, 3, f(6), 3, f(2), 1, f(2), false), /^logPartitionRows: bias/],
      [() => K.logPartitionRows(0, 2, 3, f(6), 3, null, 1, f(1), false), /^logPartitionRows: out/],
      [() => K.axpby(3, 1, f(3), 1, f(2)), /^axpby: y holds 2 elements, needs 3/],
      [() => K.axpby(-1, 1, f(3), 1, f(3)), /^axpby: n must be an integer/],
      [() => K.colSums(2, 3, f(6), 2, 1, 0, f(3)), /^colSums: ld \(2\) is smaller/],
      [() => K.colSums(2, 3, f(6), 3, 1, 0, f(2)), /^colSums: out holds 2/],
      [() => K.shiftScaleRows(2, 3, f(6), 3, f(2), 1), /^shiftScaleRows: offset holds 2/],
      [() => K.shiftScaleRows(2.5, 3, f(9), 3, null, 1), /^shiftScaleRows: rows must be/],
      [() => K.sumSquares(4, f(3)), /^sumSquares: x holds 3/],
      [() => K.dot(3, f(3), f(2)), /^dot: y holds 2/],
      [() => K.packSpins(9, f(9), new Uint8Array(1)), /^packSpins: out holds 1 elements, needs 2/],
      [() => K.packSpins(9, f(8), new Uint8Array(2)), /^packSpins: x holds 8/],
      [() => K.unpackSpins(9, new Uint8Array(1), 0, f(9)), /^unpackSpins: packed holds 1/],
      [() => K.unpackSpins(9, new Uint8Array(2), 0, f(8)), /^unpackSpins: x holds 8/],
      [
        () => K.packColumns(33, 2, f(66), 2, new Uint32Array(3), new Uint8Array(2)),
        /^packColumns: out holds 3 elements, needs 4/,
      ],
      [
        () => K.packColumns(2, 2, f(4), 2, new Uint32Array(2), new Uint8Array(1)),
        /^packColumns: odd holds 1/,
      ],
      [
        () =>
          K.bitCorrelation(2, 2, 33, 1, u(3), u(2), u(4), u(2), null, null, null, null, f(4), 2),
        /^bitCorrelation: xPos holds 3 elements, needs 4/,
      ],
      [
        () => K.bitCorrelation(2, 2, 1, 1, u(2), u(2), u(2), u(2), f(1), null, null, null, f(4), 2),
        /^bitCorrelation: mu holds 1/,
      ],
      [
        () => K.bitCorrelation(2, 2, 1, 1, u(2), u(2), u(2), u(2), null, null, null, null, f(4), 1),
        /^bitCorrelation: ld \(1\) is smaller/,
      ],
    ];
    for (const [call, message] of cases) {
      expect(call).toThrow(RangeError);
      expect(call).toThrow(message);
    }
  });

  it('describes itself and allocates', () => {
    expect(K.describe()).toContain(K.name);
    expect(K.threads).toBeGreaterThanOrEqual(1);
    const buf = K.alloc(10);
    expect(buf).toBeInstanceOf(Float32Array);
    expect(buf.length).toBe(10);
    K.upload(buf);
    K.download(buf);
  });
});
