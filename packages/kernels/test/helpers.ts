// Shared test data and double-precision references. Not a test file itself.

import type { RngSite } from '../src/index.js';

/** Deterministic pseudo-random floats in [lo, hi) (mulberry32), so failures reproduce. */
export function randomArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = lo + (((t ^ (t >>> 14)) >>> 0) / 4294967296) * (hi - lo);
  }
  return out;
}

export interface GemmRef {
  c: Float64Array;
  /** sum_p |alpha * a_ip * b_pj| + |beta * c_ij|: the scale of the rounding error bound. */
  mag: Float64Array;
}

/** C = alpha op(A) op(B) + beta C in double, with the magnitudes for an error bound. */
export function gemmRef(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  alpha: number,
  a: Float32Array,
  lda: number,
  b: Float32Array,
  ldb: number,
  beta: number,
  c: Float32Array,
  ldc: number,
): GemmRef {
  const out = new Float64Array(m * n);
  const mag = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      let g = 0;
      for (let p = 0; p < k; p++) {
        const av = transA ? a[p * lda + i]! : a[i * lda + p]!;
        const bv = transB ? b[j * ldb + p]! : b[p * ldb + j]!;
        s += av * bv;
        g += Math.abs(av * bv);
      }
      const cv = beta === 0 ? 0 : beta * c[i * ldc + j]!;
      out[i * n + j] = alpha * s + cv;
      mag[i * n + j] = Math.abs(alpha) * g + Math.abs(cv);
    }
  }
  return { c: out, mag };
}

export function site(over: Partial<RngSite> = {}): RngSite {
  return {
    seedLo: 0x2545f491,
    seedHi: 0x4f6cdd1d,
    unitOffset: 0,
    chainOffset: 0,
    step: 7,
    stream: 1,
    ...over,
  };
}

export function sigmoid(a: number): number {
  return a >= 0 ? 1 / (1 + Math.exp(-a)) : Math.exp(a) / (1 + Math.exp(a));
}

/** Random123's known-answer vectors for philox4x32_10. */
export const PHILOX_KATS: { ctr: number[]; key: number[]; out: string[] }[] = [
  { ctr: [0, 0, 0, 0], key: [0, 0], out: ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8'] },
  {
    ctr: [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff],
    key: [0xffffffff, 0xffffffff],
    out: ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd'],
  },
  {
    ctr: [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
    key: [0xa4093822, 0x299f31d0],
    out: ['d16cfe09', '94fdcceb', '5001e420', '24126ea1'],
  },
];

export const hex = (w: Uint32Array): string[] =>
  Array.from(w, (x) => x.toString(16).padStart(8, '0'));
