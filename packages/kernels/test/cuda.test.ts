// The cuda kernels against the CPU kernels, op by op, on device buffers (alloc/upload/download)
// and on staged host arrays. They need an NVIDIA GPU: without one, a single test says how many
// comparisons did not run and why, and the tests that need no device (the addon builds and
// loads, `auto` falls back, `cuda` fails clearly) run instead. A machine with a GPU whose addon
// does not load fails here rather than skipping.

import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';

import {
  CudaKernels,
  NativeKernels,
  PortableKernels,
  UnitType,
  cudaAddonLoads,
  cudaAvailable,
  cudaPhilox4x32,
  cudaProbe,
  loadKernels,
  nativeAvailable,
  philox4x32,
  philoxW0,
  wordToUniform,
  type Kernels,
} from '../src/index.js';

import { PHILOX_KATS, gemmRef, hex, randomArray, sigmoid, site } from './helpers.js';

const gpu = cudaAvailable();
/** The reference: native where its addon loads (as on CI), else portable. */
const ref: Kernels = nativeAvailable().ok ? new NativeKernels() : new PortableKernels();
let cached: CudaKernels | undefined;
/** fp32 sgemm whatever SPINMESH_CUDA_TF32 says: the tolerances below are fp32's. */
const cuda = (): CudaKernels => (cached ??= new CudaKernels({ tf32: false }));

/** Where a device is visible to this machine at all, whether or not CUDA answers. */
function devicePresent(): string | undefined {
  if (existsSync('/dev/nvidia0')) return '/dev/nvidia0 exists';
  const smi = spawnSync('nvidia-smi', ['-L'], { encoding: 'utf8' });
  if (!smi.error && smi.status === 0 && /GPU \d/.test(smi.stdout)) return 'nvidia-smi lists a GPU';
  return undefined;
}

function nvccPresent(): boolean {
  if (process.env['NVCC']) return existsSync(process.env['NVCC']);
  return existsSync(`${process.env['CUDA_HOME'] || '/usr/local/cuda'}/bin/nvcc`);
}

/** Runs fn on device buffers: each host array is alloc'ed, uploaded, and downloaded after. */
function onDevice(C: CudaKernels, arrays: Float32Array[], fn: (d: Float32Array[]) => void): void {
  const d = arrays.map((a) => {
    const b = C.alloc(a.length);
    b.set(a);
    C.upload(b);
    return b;
  });
  fn(d);
  d.forEach((b, i) => {
    C.download(b);
    arrays[i]!.set(b);
  });
}

/** Elementwise |a - b| <= tol(i), with the first offender in the message. */
function expectClose(a: ArrayLike<number>, b: ArrayLike<number>, tol: (i: number) => number): void {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= tol(i))) {
      expect.fail(`element ${i}: ${a[i]} vs ${b[i]} (|d| = ${d} > ${tol(i)})`);
    }
  }
}

const EPS = 2 ** -24;

const comparisons: [string, () => void][] = [
  [
    'Philox4x32-10 on the device matches the known answers and the TypeScript one',
    () => {
      cuda();
      const w = new Uint32Array(4);
      for (const { ctr, key, out } of PHILOX_KATS) {
        cudaPhilox4x32(ctr[0]!, ctr[1]!, ctr[2]!, ctr[3]!, key[0]!, key[1]!, w);
        expect(hex(w)).toEqual(out);
      }
      const v = new Uint32Array(4);
      const r = randomArray(120, 5, 0, 2 ** 32);
      for (let i = 0; i < 120; i += 6) {
        const a = Array.from(r.subarray(i, i + 6), (x) => Math.floor(x));
        cudaPhilox4x32(a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, w);
        philox4x32(a[0]!, a[1]!, a[2]!, a[3]!, a[4]!, a[5]!, v);
        expect(w).toEqual(v);
      }
    },
  ],
  [
    'sgemm agrees on all transposes, strides and offsets, on device and staged buffers',
    () => {
      const C = cuda();
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
        const g = gemmRef(ta, tb, m, n, k, 1.5, a, ac + 1, b, bc + 2, 0.5, c, n + 3);
        const cr = c.slice();
        ref.sgemm(ta, tb, m, n, k, 1.5, a, ac + 1, b, bc + 2, 0.5, cr, n + 3);
        const staged = c.slice();
        C.sgemm(ta, tb, m, n, k, 1.5, a, ac + 1, b, bc + 2, 0.5, staged, n + 3);
        const dev = c.slice();
        onDevice(C, [a.slice(), b.slice(), dev], ([da, db, dc]) =>
          C.sgemm(ta, tb, m, n, k, 1.5, da!, ac + 1, db!, bc + 2, 0.5, dc!, n + 3),
        );
        // Both sides sum k products in float in their own order: each is within k*eps*mag of
        // the exact value (Higham's gamma_k), so they are within twice that of each other.
        // Outside the block (the stride's gap) nothing may change.
        const tol = (i: number): number => {
          const r = Math.floor(i / (n + 3));
          const j = i % (n + 3);
          return j >= n ? 0 : 2 * (k + 2) * EPS * g.mag[r * n + j]!;
        };
        expectClose(staged, cr, tol);
        expectClose(dev, cr, tol);
      }
    },
  ],
  [
    'sgemm with TF32 stays within the 10-bit mantissa bound of fp32',
    () => {
      const [m, n, k] = [256, 500, 784];
      const a = randomArray(m * k, 21);
      const b = randomArray(k * n, 22);
      const c = new Float32Array(m * n);
      const g = gemmRef(false, false, m, n, k, 1, a, k, b, n, 0, c, n);
      const t = new CudaKernels({ tf32: true });
      try {
        expect(t.describe()).toMatch(/TF32/);
        t.sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n);
      } finally {
        cached = new CudaKernels({ tf32: false }); // one math mode per process
      }
      // TF32 rounds each input to 10 mantissa bits (relative 2^-11 each, so 2^-10 a product),
      // then accumulates in float.
      expectClose(c, g.c, (i) => (2 ** -10 + 2 * k * EPS) * g.mag[i]!);
    },
  ],
  [
    'sampleUnits: the same means, and the same draws wherever u is not within rounding of p',
    () => {
      const C = cuda();
      const [rows, n, ld] = [100, 500, 503];
      const field = randomArray(rows * ld, 7, -4, 4);
      const bias = randomArray(n, 8, -1, 1);
      const beta = 0.9;
      const s = site({ unitOffset: 2 ** 32 - 200, chainOffset: 45 });
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        const mr = new Float32Array(rows * ld);
        const or = new Float32Array(rows * ld);
        ref.sampleUnits(type, rows, n, field, ld, bias, beta, mr, or, s);
        const ms = new Float32Array(rows * ld);
        const os = new Float32Array(rows * ld);
        C.sampleUnits(type, rows, n, field, ld, bias, beta, ms, os, s);
        const md = new Float32Array(rows * ld);
        const od = field.slice(); // in place: out is field
        onDevice(C, [od, bias.slice(), md], ([df, db, dm]) =>
          C.sampleUnits(type, rows, n, df!, ld, db!, beta, dm!, df!, s),
        );
        let compared = 0;
        for (const [m, o] of [
          [ms, os],
          [md, od],
        ] as const) {
          for (let r = 0; r < rows; r++) {
            for (let j = 0; j < ld; j++) {
              const i = r * ld + j;
              if (j >= n) {
                expect(m[i]).toBe(0); // the gap between rows is left alone
                continue;
              }
              // Means: expf/tanhf on the device (2 ulps at most), Cephes polynomials on the
              // CPU, each a few float ulps from the truth; |mean| <= 1, where an ulp is at most
              // 2^-23, so 16 EPS is 8 ulps. Gaussian means are field + bias, one rounding on
              // both sides: exact.
              expect(Math.abs(m[i]! - mr[i]!)).toBeLessThanOrEqual(
                type === UnitType.Gaussian ? 0 : 16 * EPS,
              );
              if (type === UnitType.Gaussian) {
                // Box-Muller through logf and cospif against log_f and cos_2pi_f: a few ulps of
                // z, which is at most about 5.7 in magnitude.
                expect(Math.abs(o[i]! - or[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(or[i]!)));
                compared++;
                continue;
              }
              const a = beta * (field[i]! + bias[j]!);
              const p = sigmoid(type === UnitType.Ising ? 2 * a : a);
              const u = wordToUniform(
                philoxW0(
                  (s.unitOffset + j) >>> 0,
                  s.chainOffset + r,
                  s.step,
                  s.stream,
                  s.seedLo,
                  s.seedHi,
                ),
              );
              // Where u lies within rounding of p the two may disagree; 1e-5 is far outside
              // both sides' error in p (a few float ulps) and still leaves almost every draw.
              if (Math.abs(u - p) < 1e-5) continue;
              expect(o[i], `draw (${r}, ${j})`).toBe(or[i]);
              compared++;
            }
          }
        }
        expect(compared).toBeGreaterThan(2 * rows * n * 0.999);
      }
    },
  ],
  [
    'uniform is bit-identical, across the 2^32 wrap of the unit counter',
    () => {
      const C = cuda();
      const s = site({ unitOffset: 2 ** 32 - 100, chainOffset: 3 });
      const a = new Float32Array(5000);
      const b = new Float32Array(5000);
      ref.uniform(b, 4999, 333, s);
      C.uniform(a, 4999, 333, s);
      expect(a).toEqual(b);
      const d = new Float32Array(5000);
      onDevice(C, [d], ([x]) => C.uniform(x!, 4999, 333, s));
      expect(d).toEqual(b);
    },
  ],
  [
    'logPartitionRows agrees to float rounding of each term',
    () => {
      const C = cuda();
      const [rows, n] = [20, 300];
      const x = randomArray(rows * n, 9, -20, 20);
      const bias = randomArray(n, 10);
      for (const type of [UnitType.Bernoulli, UnitType.Ising, UnitType.Gaussian]) {
        const a = new Float32Array(rows).fill(1);
        const b = new Float32Array(rows).fill(1);
        ref.logPartitionRows(type, rows, n, x, n, bias, 1.1, b, true);
        onDevice(C, [x.slice(), bias.slice(), a], ([dx, db, da]) =>
          C.logPartitionRows(type, rows, n, dx!, n, db!, 1.1, da!, true),
        );
        // Every term is positive, each within a few ulps (2^-23 relative each) on either side,
        // summed in double: the sums' relative difference is at most the terms' largest.
        expectClose(a, b, (r) => 2e-6 * b[r]!);
      }
    },
  ],
  [
    'axpby, colSums, shiftScaleRows, copyBlock, sumSquares and dot agree',
    () => {
      const C = cuda();
      const n = 777;
      const x = randomArray(n, 11);
      const y0 = randomArray(n, 12);
      const yr = y0.slice();
      ref.axpby(n, 0.3, x, 0.9, yr);
      const yd = y0.slice();
      onDevice(C, [x.slice(), yd], ([dx, dy]) => C.axpby(n, 0.3, dx!, 0.9, dy!));
      // Two products and a sum in float, possibly fused on the device: within 2 ulps of 1.
      expectClose(yd, yr, () => 4 * EPS);

      const rows = 21;
      const m = randomArray(rows * n, 13);
      const c0 = randomArray(n, 14);
      const cr = c0.slice();
      ref.colSums(rows, n, m, n, 0.1, 0.7, cr);
      const cd = c0.slice();
      onDevice(C, [m.slice(), cd], ([dm, dc]) => C.colSums(rows, n, dm!, n, 0.1, 0.7, dc!));
      // The same double sum in the same order, then alpha * sum + beta * out in double (fused
      // or not), rounded once to float: one ulp apart at most, 2^-23 relative.
      expectClose(cd, cr, (j) => 2 * EPS * Math.abs(cr[j]!));

      const sr = m.slice();
      ref.shiftScaleRows(rows, n, sr, n, cr, 1.7);
      const sd = m.slice();
      onDevice(C, [sd, cr.slice()], ([dx, doff]) => C.shiftScaleRows(rows, n, dx!, n, doff!, 1.7));
      expect(sd).toEqual(sr); // two correctly rounded operations in the same order

      const src = randomArray(50 * 40, 16);
      const dst = new Float32Array(60 * 50);
      const dr = dst.slice();
      ref.copyBlock(30, 20, src, 7, 40, dr, 11, 50);
      onDevice(C, [src.slice(), dst], ([ds, dd]) => C.copyBlock(30, 20, ds!, 7, 40, dd!, 11, 50));
      expect(dst).toEqual(dr);

      // Double sums of float products in different orders: relative 1e-12 is thousands of
      // double ulps, far above the reordering error of 777 terms.
      const dx = C.alloc(n);
      dx.set(x);
      C.upload(dx);
      const dy = C.alloc(n);
      dy.set(yr);
      C.upload(dy);
      expect(Math.abs(C.sumSquares(n, dx) - ref.sumSquares(n, x))).toBeLessThan(
        1e-12 * ref.sumSquares(n, x),
      );
      const dotRef = ref.dot(n, x, yr);
      expect(Math.abs(C.dot(n, dx, dy) - dotRef)).toBeLessThan(1e-12 * n);
      expect(Math.abs(C.dot(n, x, yr) - dotRef)).toBeLessThan(1e-12 * n);
    },
  ],
  [
    'device buffers stay on the device until downloaded',
    () => {
      const C = cuda();
      const y = C.alloc(4);
      y.set([1, 2, 3, 4]);
      C.upload(y);
      const x = C.alloc(4);
      x.set([10, 10, 10, 10]);
      C.upload(x);
      C.axpby(4, 1, x, 1, y);
      expect(Array.from(y)).toEqual([1, 2, 3, 4]); // the host copy is not touched
      C.download(y);
      expect(Array.from(y)).toEqual([11, 12, 13, 14]);
      const view = y.subarray(1, 3); // a view maps to the same device memory at its offset
      C.axpby(2, 0, x, 2, view);
      C.download(y);
      expect(Array.from(y)).toEqual([11, 24, 26, 14]);
      // copyBlock copies the host arrays too: the models use it between a download and an
      // upload, as a host operation (src/cuda.ts).
      const z = C.alloc(4);
      C.copyBlock(1, 2, y, 1, 2, z, 2, 2);
      expect(Array.from(z)).toEqual([0, 0, 24, 26]);
      z.fill(-1);
      C.download(z);
      expect(Array.from(z)).toEqual([0, 0, 24, 26]);
    },
  ],
  [
    'packSpins, unpackSpins and packColumns are bit-identical; bitCorrelation within one ulp',
    () => {
      const C = cuda();
      const n = 1003;
      const x = randomArray(n, 15);
      const pr = new Uint8Array(126);
      const pd = new Uint8Array(126);
      ref.packSpins(n, x, pr);
      const dx = C.alloc(n);
      dx.set(x);
      C.upload(dx);
      C.packSpins(n, dx, pd);
      expect(pd).toEqual(pr);
      const ur = new Float32Array(n);
      ref.unpackSpins(n, pr, -1, ur);
      const ud = C.alloc(n);
      C.unpackSpins(n, pd, -1, ud);
      C.download(ud);
      expect(ud).toEqual(ur);

      const [m, w, R, Cn] = [70, 45, 37, 33];
      const X = randomArray((R + Cn) * m, 5).map((v) => (v > 0.2 ? 1 : 0));
      const Y = randomArray((R + Cn) * w, 6).map((v) => (v > 0.4 ? 1 : 0));
      X[5 * m + 3] = 0.5; // an odd unit
      const words = (rows: number, k: number): Uint32Array =>
        new Uint32Array(k * Math.ceil(rows / 32));
      const pack = (K: Kernels, src: Float32Array[]): [Uint32Array[], Uint8Array[], boolean[]] => {
        const bits = [words(R, m), words(Cn, m), words(R, w), words(Cn, w)];
        const odd = [new Uint8Array(m), new Uint8Array(w)];
        const ok = [
          K.packColumns(R, m, src[0]!, m, bits[0]!, odd[0]!),
          K.packColumns(Cn, m, src[0]!.subarray(R * m), m, bits[1]!, odd[0]!),
          K.packColumns(R, w, src[1]!, w, bits[2]!, odd[1]!),
          K.packColumns(Cn, w, src[1]!.subarray(R * w), w, bits[3]!, odd[1]!),
        ];
        return [bits, odd, ok];
      };
      const [br, or, okr] = pack(ref, [X, Y]);
      const dX = C.alloc(X.length);
      dX.set(X);
      C.upload(dX);
      const dY = C.alloc(Y.length);
      dY.set(Y);
      C.upload(dY);
      const [bd, od, okd] = pack(C, [dX, dY]);
      expect(bd).toEqual(br);
      expect(od).toEqual(or);
      expect(okd).toEqual(okr);
      expect(okd[0]).toBe(false);

      const mu = randomArray(m, 17, 0, 1);
      const lam = randomArray(w, 18, 0, 1);
      const outR = randomArray(m * (w + 2), 19);
      const outD = outR.slice();
      ref.bitCorrelation(
        m,
        w,
        R,
        Cn,
        br[0]!,
        br[1]!,
        br[2]!,
        br[3]!,
        mu,
        lam,
        or[0]!,
        or[1]!,
        outR,
        w + 2,
      );
      onDevice(C, [mu.slice(), lam.slice(), outD], ([dmu, dlam, dout]) =>
        C.bitCorrelation(
          m,
          w,
          R,
          Cn,
          bd[0]!,
          bd[1]!,
          bd[2]!,
          bd[3]!,
          dmu!,
          dlam!,
          od[0]!,
          od[1]!,
          dout!,
          w + 2,
        ),
      );
      // The same double expression rounded once to float; the CPU compiler may fuse a multiply
      // and add (1e-16 absolute), which can move the float result by one ulp at most.
      expectClose(outD, outR, (i) => EPS * 2 * Math.abs(outR[i]!) + 1e-15);
    },
  ],
];

const saved = { kernels: process.env['SPINMESH_KERNELS'] };
afterEach(() => {
  if (saved.kernels === undefined) delete process.env['SPINMESH_KERNELS'];
  else process.env['SPINMESH_KERNELS'] = saved.kernels;
});

describe('the cuda addon', () => {
  const present = devicePresent();
  if (present !== undefined) {
    it(`loads and finds the device (${present})`, () => {
      expect(
        gpu.ok,
        `${present} but the cuda kernels are not available: ${gpu.ok ? '' : gpu.reason}`,
      ).toBe(true);
    });
  }
  if (nvccPresent()) {
    it('is built wherever nvcc is installed, and loads without a device', () => {
      const l = cudaAddonLoads();
      expect(l.ok, `nvcc is installed but the addon does not load: ${l.ok ? '' : l.reason}`).toBe(
        true,
      );
    });
  }
});

if (gpu.ok) {
  describe(`cuda kernels (${gpu.device}) against the ${ref.name} kernels`, () => {
    for (const [name, fn] of comparisons) it(name, fn);

    it('are what auto picks', () => {
      delete process.env['SPINMESH_KERNELS'];
      expect(loadKernels().name).toBe('cuda');
    });
  });
} else {
  describe('cuda kernels without a device', () => {
    it(`report no device; ${comparisons.length} comparisons with the ${ref.name} kernels not run`, () => {
      const reason = gpu.reason;
      // Printed so a run log says plainly what was not tested here.
      console.log(`cuda kernels: no device, ${comparisons.length} comparisons not run (${reason})`);
      expect(reason).toMatch(/no device|not built/);
      expect(cudaProbe().ok).toBe(false);
    });

    it('auto falls back to the CPU kernels', () => {
      delete process.env['SPINMESH_KERNELS'];
      expect(loadKernels().name).toBe(nativeAvailable().ok ? 'native' : 'portable');
      expect(loadKernels('auto').name).toBe(nativeAvailable().ok ? 'native' : 'portable');
    });

    it('cuda, asked for, fails saying why and what to use instead', () => {
      expect(() => loadKernels('cuda')).toThrow(
        /cuda kernels requested but not available: (no device|addon not built).*SPINMESH_KERNELS=native or portable/,
      );
      process.env['SPINMESH_KERNELS'] = 'cuda';
      expect(() => loadKernels()).toThrow(/\(SPINMESH_KERNELS=cuda\)/);
      expect(() => new CudaKernels()).toThrow(/cuda kernels are not available/);
    });
  });
}
