// The portable kernels' matrix product: a blocked GEMM in plain TypeScript, with its packing
// buffers allocated once.

// GEMM blocking (GotoBLAS layout): a KC x NC panel of op(B) and an MC x KC block of op(A) are
// packed into MR/NR-wide slivers so the 4x4 micro-kernel streams both from L1 with unit stride.
// 4x4 keeps the 16 accumulators plus 8 operands within x64's 16 SSE registers under V8.
const MR = 4;
const NR = 4;
const KC = 256;
const MC = 64;
const NC = 1024;

/** C += alpha op(A) op(B), block by block; PortableKernels.sgemm has checked and scaled C. */
export class BlockedGemm {
  private readonly packA = new Float32Array(MC * KC);
  private readonly packB = new Float32Array(KC * NC);
  private readonly tile = new Float64Array(MR * NR);

  accumulate(
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
    c: Float32Array,
    ldc: number,
  ): void {
    for (let jc = 0; jc < n; jc += NC) {
      const nc = Math.min(NC, n - jc);
      for (let pc = 0; pc < k; pc += KC) {
        const kc = Math.min(KC, k - pc);
        this.packPanelB(transB, b, ldb, pc, jc, kc, nc);
        for (let ic = 0; ic < m; ic += MC) {
          const mc = Math.min(MC, m - ic);
          this.packBlockA(transA, a, lda, ic, pc, mc, kc);
          this.macroKernel(mc, nc, kc, alpha, c, ic, jc, ldc);
        }
      }
    }
  }

  /** packB[(s*kc + p)*NR + jj] = op(B)[pc + p, jc + s*NR + jj], zero-padded past nc. */
  private packPanelB(
    transB: boolean,
    b: Float32Array,
    ldb: number,
    pc: number,
    jc: number,
    kc: number,
    nc: number,
  ): void {
    const bp = this.packB;
    for (let j0 = 0; j0 < nc; j0 += NR) {
      const w = Math.min(NR, nc - j0);
      let o = j0 * kc;
      if (!transB) {
        let src = pc * ldb + jc + j0;
        if (w === NR) {
          for (let p = 0; p < kc; p++, o += NR, src += ldb) {
            bp[o] = b[src]!;
            bp[o + 1] = b[src + 1]!;
            bp[o + 2] = b[src + 2]!;
            bp[o + 3] = b[src + 3]!;
          }
        } else {
          for (let p = 0; p < kc; p++, o += NR, src += ldb) {
            for (let jj = 0; jj < NR; jj++) bp[o + jj] = jj < w ? b[src + jj]! : 0;
          }
        }
      } else {
        // op(B)[p, j] = b[j*ldb + p]: each sliver column is a contiguous run of b.
        const r0 = (jc + j0) * ldb + pc;
        if (w === NR) {
          const r1 = r0 + ldb;
          const r2 = r1 + ldb;
          const r3 = r2 + ldb;
          for (let p = 0; p < kc; p++, o += NR) {
            bp[o] = b[r0 + p]!;
            bp[o + 1] = b[r1 + p]!;
            bp[o + 2] = b[r2 + p]!;
            bp[o + 3] = b[r3 + p]!;
          }
        } else {
          for (let p = 0; p < kc; p++, o += NR) {
            for (let jj = 0; jj < NR; jj++) bp[o + jj] = jj < w ? b[r0 + jj * ldb + p]! : 0;
          }
        }
      }
    }
  }

  /** packA[(s*kc + p)*MR + ii] = op(A)[ic + s*MR + ii, pc + p], zero-padded past mc. */
  private packBlockA(
    transA: boolean,
    a: Float32Array,
    lda: number,
    ic: number,
    pc: number,
    mc: number,
    kc: number,
  ): void {
    const ap = this.packA;
    for (let i0 = 0; i0 < mc; i0 += MR) {
      const h = Math.min(MR, mc - i0);
      let o = i0 * kc;
      if (!transA) {
        const r0 = (ic + i0) * lda + pc;
        if (h === MR) {
          const r1 = r0 + lda;
          const r2 = r1 + lda;
          const r3 = r2 + lda;
          for (let p = 0; p < kc; p++, o += MR) {
            ap[o] = a[r0 + p]!;
            ap[o + 1] = a[r1 + p]!;
            ap[o + 2] = a[r2 + p]!;
            ap[o + 3] = a[r3 + p]!;
          }
        } else {
          for (let p = 0; p < kc; p++, o += MR) {
            for (let ii = 0; ii < MR; ii++) ap[o + ii] = ii < h ? a[r0 + ii * lda + p]! : 0;
          }
        }
      } else {
        // op(A)[i, p] = a[p*lda + i]: a sliver step is a contiguous run of a row of a.
        let src = pc * lda + ic + i0;
        if (h === MR) {
          for (let p = 0; p < kc; p++, o += MR, src += lda) {
            ap[o] = a[src]!;
            ap[o + 1] = a[src + 1]!;
            ap[o + 2] = a[src + 2]!;
            ap[o + 3] = a[src + 3]!;
          }
        } else {
          for (let p = 0; p < kc; p++, o += MR, src += lda) {
            for (let ii = 0; ii < MR; ii++) ap[o + ii] = ii < h ? a[src + ii]! : 0;
          }
        }
      }
    }
  }

  /** C[ic.., jc..] += alpha * packA * packB over an mc x nc tile of C. */
  private macroKernel(
    mc: number,
    nc: number,
    kc: number,
    alpha: number,
    c: Float32Array,
    ic: number,
    jc: number,
    ldc: number,
  ): void {
    // Long by design (exempt in test/shape.test.ts): the unrolled 4x4 micro-kernel.
    const ap = this.packA;
    const bp = this.packB;
    for (let j0 = 0; j0 < nc; j0 += NR) {
      const w = Math.min(NR, nc - j0);
      const bBase = j0 * kc;
      for (let i0 = 0; i0 < mc; i0 += MR) {
        const h = Math.min(MR, mc - i0);
        // prettier-ignore
        let s00 = 0, s01 = 0, s02 = 0, s03 = 0;
        // prettier-ignore
        let s10 = 0, s11 = 0, s12 = 0, s13 = 0;
        // prettier-ignore
        let s20 = 0, s21 = 0, s22 = 0, s23 = 0;
        // prettier-ignore
        let s30 = 0, s31 = 0, s32 = 0, s33 = 0;
        let ao = i0 * kc;
        let bo = bBase;
        for (let p = 0; p < kc; p++, ao += MR, bo += NR) {
          const a0 = ap[ao]!;
          const a1 = ap[ao + 1]!;
          const a2 = ap[ao + 2]!;
          const a3 = ap[ao + 3]!;
          const b0 = bp[bo]!;
          const b1 = bp[bo + 1]!;
          const b2 = bp[bo + 2]!;
          const b3 = bp[bo + 3]!;
          s00 += a0 * b0;
          s01 += a0 * b1;
          s02 += a0 * b2;
          s03 += a0 * b3;
          s10 += a1 * b0;
          s11 += a1 * b1;
          s12 += a1 * b2;
          s13 += a1 * b3;
          s20 += a2 * b0;
          s21 += a2 * b1;
          s22 += a2 * b2;
          s23 += a2 * b3;
          s30 += a3 * b0;
          s31 += a3 * b1;
          s32 += a3 * b2;
          s33 += a3 * b3;
        }
        const o0 = (ic + i0) * ldc + jc + j0;
        if (h === MR && w === NR) {
          const o1 = o0 + ldc;
          const o2 = o1 + ldc;
          const o3 = o2 + ldc;
          c[o0] = c[o0]! + alpha * s00;
          c[o0 + 1] = c[o0 + 1]! + alpha * s01;
          c[o0 + 2] = c[o0 + 2]! + alpha * s02;
          c[o0 + 3] = c[o0 + 3]! + alpha * s03;
          c[o1] = c[o1]! + alpha * s10;
          c[o1 + 1] = c[o1 + 1]! + alpha * s11;
          c[o1 + 2] = c[o1 + 2]! + alpha * s12;
          c[o1 + 3] = c[o1 + 3]! + alpha * s13;
          c[o2] = c[o2]! + alpha * s20;
          c[o2 + 1] = c[o2 + 1]! + alpha * s21;
          c[o2 + 2] = c[o2 + 2]! + alpha * s22;
          c[o2 + 3] = c[o2 + 3]! + alpha * s23;
          c[o3] = c[o3]! + alpha * s30;
          c[o3 + 1] = c[o3 + 1]! + alpha * s31;
          c[o3 + 2] = c[o3 + 2]! + alpha * s32;
          c[o3 + 3] = c[o3 + 3]! + alpha * s33;
        } else {
          // Edge tile: only rows < h and columns < w exist in C.
          const t = this.tile;
          t[0] = s00;
          t[1] = s01;
          t[2] = s02;
          t[3] = s03;
          t[4] = s10;
          t[5] = s11;
          t[6] = s12;
          t[7] = s13;
          t[8] = s20;
          t[9] = s21;
          t[10] = s22;
          t[11] = s23;
          t[12] = s30;
          t[13] = s31;
          t[14] = s32;
          t[15] = s33;
          for (let ii = 0; ii < h; ii++) {
            const o = o0 + ii * ldc;
            for (let jj = 0; jj < w; jj++) c[o + jj] = c[o + jj]! + alpha * t[ii * NR + jj]!;
          }
        }
      }
    }
  }
}
