// The native addon against the portable kernels, op by op. This file fails (it does not skip)
// when the addon is missing, unless SPINMESH_KERNELS=portable says that only the portable
// kernels are meant to be tested here.

import { describe, expect, it } from 'vitest';

import {
  NativeKernels,
  PortableKernels,
  UnitType,
  loadKernels,
  nativeAvailable,
  nativePhilox4x32,
  philox4x32,
} from '../src/index.js';

import { PHILOX_KATS, gemmRef, hex, randomArray, site } from './helpers.js';

const portableOnly = process.env.SPINMESH_KERNELS === 'portable';
const avail = nativeAvailable();

if (portableOnly) {
  describe('native kernels (SPINMESH_KERNELS=portable)', () => {
    it('are not tested: SPINMESH_KERNELS=portable asks for the portable kernels only', () => {
      expect(process.env.SPINMESH_KERNELS).toBe('portable');
    });
  });
} else {
  describe('native kernels', () => {
    it('are built and load', () => {
      if (!avail.ok) {
        throw new Error(
          `the native addon is not available: ${avail.reason}. Build it with ` +
            '`npm run build:native` (needs a C compiler and libopenblas-dev), or run the tests ' +
            'with SPINMESH_KERNELS=portable to test the portable kernels only.',
        );
      }
      expect(loadKernels('native').name).toBe('native');
      expect(loadKernels('auto').name).toBe('native');
    });

    describe.runIf(avail.ok)('against the portable kernels', () => {
      const N = avail.ok ? new NativeKernels() : (undefined as never);
      const P = new PortableKernels();

      it('reports OpenBLAS and honours a thread count', () => {
        const before = N.threads;
        expect(N.describe()).toMatch(/OpenBLAS/);
        const one = new NativeKernels({ threads: 1 });
        expect(one.threads).toBe(1);
        expect(N.threads).toBe(1); // one process-wide setting
        new NativeKernels({ threads: before });
        expect(N.threads).toBe(before);
        expect(() => new NativeKernels({ threads: 0 })).toThrow(RangeError);
      });

      it('computes the same Philox4x32-10 in C', () => {
        const w = new Uint32Array(4);
        for (const { ctr, key, out } of PHILOX_KATS) {
          nativePhilox4x32(ctr[0]!, ctr[1]!, ctr[2]!, ctr[3]!, key[0]!, key[1]!, w);
          expect(hex(w)).toEqual(out);
        }
        const v = new Uint32Array(4);
        const r = randomArray(600, 5, 0, 2 ** 32);
        for (let i = 0; i < 600; i += 6) {
          const a = Array.from(r.subarray(i, i + 6), (x) => Math.floor(x));
          nativePhilox4x32(a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, w);
          philox4x32(a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, v);
          expect(w).toEqual(v);
        }
      });

      it('sgemm agrees on all transpose combinations, strides and offsets', () => {
        for (const [ta, tb] of [
          [false, false],
          [true, false],
          [false, true],
          [true, true],
        ] as const) {
          const [m, n, k] = [61, 47, 515];
          const [ar, ac] = ta ? [k, m] : [m, k];
          const [br, bc] = tb ? [n, k] : [k, n];
          const a = randomArray(1 + ar * (ac + 1), 1).subarray(1);
          const b = randomArray(2 + br * (bc + 2), 2).subarray(2);
          const c = randomArray(3 + m * (n + 3), 3).subarray(3);
          const cn = c.slice();
          const cp = c.slice();
          const ref = gemmRef(ta, tb, m, n, k, 1.5, a, ac + 1, b, bc + 2, 0.5, c, n + 3);
          N.sgemm(ta, tb, m, n, k, 1.5, a, ac + 1, b, bc + 2, 0.5, cn, n + 3);
          P.sgemm(ta, tb, m, n, k, 1.5, a, ac + 1, b, bc + 2, 0.5, cp, n + 3);
          for (let i = 0; i < m; i++) {
            for (let j = 0; j < n; j++) {
              const d = Math.abs(cn[i * (n + 3) + j]! - cp[i * (n + 3) + j]!);
              expect(d).toBeLessThanOrEqual(1e-5 * (k / 100) * ref.mag[i * n + j]!);
            }
          }
        }
      });

      it('sampleUnits draws the same units and the same means', () => {
        const rows = 100;
        const n = 500;
        const field = randomArray(rows * n, 7, -4, 4);
        const bias = randomArray(n, 8, -1, 1);
        const s = site({ unitOffset: 123, chainOffset: 45 });
        for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
          const mn = new Float32Array(rows * n);
          const on = new Float32Array(rows * n);
          const mp = new Float32Array(rows * n);
          const op = new Float32Array(rows * n);
          N.sampleUnits(type, rows, n, field, n, bias, 0.9, mn, on, s);
          P.sampleUnits(type, rows, n, field, n, bias, 0.9, mp, op, s);
          let meanErr = 0;
          let differ = 0;
          let drawErr = 0;
          for (let i = 0; i < rows * n; i++) {
            meanErr = Math.max(meanErr, Math.abs(mn[i]! - mp[i]!));
            if (on[i] !== op[i]) differ++;
            drawErr = Math.max(drawErr, Math.abs(on[i]! - op[i]!) / (1 + Math.abs(op[i]!)));
          }
          expect(meanErr).toBeLessThan(1e-5);
          if (type === UnitType.Gaussian) expect(drawErr).toBeLessThan(1e-5);
          else expect(differ / (rows * n)).toBeLessThan(1e-3);
        }
      });

      it('uniform is bit-identical', () => {
        const a = new Float32Array(5000);
        const b = new Float32Array(5000);
        const s = site({ unitOffset: 2 ** 32 - 100, chainOffset: 3 });
        N.uniform(a, 4999, 333, s);
        P.uniform(b, 4999, 333, s);
        expect(a).toEqual(b);
      });

      it('logPartitionRows agrees', () => {
        const rows = 20;
        const n = 300;
        const x = randomArray(rows * n, 9, -20, 20);
        const bias = randomArray(n, 10);
        for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
          const a = new Float32Array(rows).fill(1);
          const b = new Float32Array(rows).fill(1);
          N.logPartitionRows(type, rows, n, x, n, bias, 1.1, a, true);
          P.logPartitionRows(type, rows, n, x, n, bias, 1.1, b, true);
          for (let r = 0; r < rows; r++) expect(Math.abs(a[r]! - b[r]!)).toBeLessThan(1e-6 * b[r]!);
        }
      });

      it('axpby, colSums, shiftScaleRows, sumSquares and dot agree', () => {
        const n = 777;
        const x = randomArray(n, 11);
        const y1 = randomArray(n, 12);
        const y2 = y1.slice();
        N.axpby(n, 0.3, x, 0.9, y1);
        P.axpby(n, 0.3, x, 0.9, y2);
        for (let i = 0; i < n; i++) expect(Math.abs(y1[i]! - y2[i]!)).toBeLessThan(1e-6);

        const rows = 21;
        const m = randomArray(rows * n, 13);
        const c1 = randomArray(n, 14);
        const c2 = c1.slice();
        N.colSums(rows, n, m, n, 0.1, 0.7, c1);
        P.colSums(rows, n, m, n, 0.1, 0.7, c2);
        for (let j = 0; j < n; j++) expect(Math.abs(c1[j]! - c2[j]!)).toBeLessThan(1e-6);

        const s1 = m.slice();
        const s2 = m.slice();
        N.shiftScaleRows(rows, n, s1, n, c2, 1.7);
        P.shiftScaleRows(rows, n, s2, n, c2, 1.7);
        for (let i = 0; i < rows * n; i++) expect(Math.abs(s1[i]! - s2[i]!)).toBeLessThan(1e-6);

        expect(N.sumSquares(n, x)).toBeCloseTo(P.sumSquares(n, x), 10);
        expect(N.dot(n, x, y1)).toBeCloseTo(P.dot(n, x, y1), 10);
      });

      it('packSpins and unpackSpins are bit-identical', () => {
        const n = 1003;
        const x = randomArray(n, 15);
        const a = new Uint8Array(126);
        const b = new Uint8Array(126);
        N.packSpins(n, x, a);
        P.packSpins(n, x, b);
        expect(a).toEqual(b);
        const u1 = new Float32Array(n);
        const u2 = new Float32Array(n);
        N.unpackSpins(n, a, -1, u1);
        P.unpackSpins(n, a, -1, u2);
        expect(u1).toEqual(u2);
      });

      it('rejects arrays of the wrong type rather than reading them as floats', () => {
        const y = new Float32Array(3);
        expect(() => N.axpby(3, 1, new Float64Array(3) as unknown as Float32Array, 0, y)).toThrow(
          TypeError,
        );
      });
    });
  });
}
