// Kernels in plain TypeScript: the reference the native addon is tested against, and the
// fallback wherever the addon cannot be built. Element-wise math is done in double precision.

import {
  checkColSums,
  checkCopyBlock,
  checkLogPartitionRows,
  checkPackSpins,
  checkSampleUnits,
  checkSgemm,
  checkShiftScaleRows,
  checkUniform,
  checkUnpackSpins,
  checkPackColumns,
  checkBitCorrelation,
  bitWords,
  checkVectors,
  HostBuffers,
} from './checks.js';
import { UnitType, type Kernels, type RngSite } from './kernels.js';
import { philox4x32, philoxW0, UNIFORM_SCALE } from './philox.js';
import { BlockedGemm } from './portable-gemm.js';

const TWO_PI = 2 * Math.PI;

function sigmoid(a: number): number {
  if (a >= 0) return 1 / (1 + Math.exp(-a));
  const e = Math.exp(a);
  return e / (1 + e);
}

function softplus(a: number): number {
  return a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a));
}

function log2cosh(a: number): number {
  const z = Math.abs(a);
  return z + Math.log1p(Math.exp(-2 * z));
}

export class PortableKernels extends HostBuffers implements Kernels {
  readonly name = 'portable';
  readonly threads = 1;

  private readonly gemm = new BlockedGemm();
  private readonly words = new Uint32Array(4);
  private colAcc = new Float64Array(0);

  describe(): string {
    return 'portable (TypeScript, 1 thread)';
  }

  sgemm(
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
  ): void {
    const readsAB = alpha !== 0 && k > 0 && m > 0 && n > 0;
    checkSgemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, readsAB);
    if (m === 0 || n === 0) return;
    if (beta !== 1) {
      // beta = 0 overwrites without reading, as in BLAS, so NaN/garbage in c does not leak.
      for (let i = 0; i < m; i++) {
        const o = i * ldc;
        if (beta === 0) c.fill(0, o, o + n);
        else for (let j = o; j < o + n; j++) c[j] = beta * c[j]!;
      }
    }
    if (!readsAB) return;
    this.gemm.accumulate(transA, transB, m, n, k, alpha, a, lda, b, ldb, c, ldc);
  }

  sampleUnits(
    type: UnitType,
    rows: number,
    n: number,
    field: Float32Array,
    ld: number,
    bias: Float32Array,
    beta: number,
    mean: Float32Array | null,
    out: Float32Array | null,
    site: RngSite,
  ): void {
    checkSampleUnits(type, rows, n, field, ld, bias, mean, out, site);
    const k0 = site.seedLo | 0;
    const k1 = site.seedHi | 0;
    const step = site.step | 0;
    const stream = site.stream | 0;
    const words = this.words;
    const invSqrtBeta = 1 / Math.sqrt(beta);
    for (let r = 0; r < rows; r++) {
      const chain = (site.chainOffset + r) | 0;
      const base = r * ld;
      for (let j = 0; j < n; j++) {
        const i = base + j;
        const unit = (site.unitOffset + j) | 0;
        // Read before writing: mean or out may be field itself.
        const s = field[i]! + bias[j]!;
        if (type === UnitType.Bernoulli) {
          const p = sigmoid(beta * s);
          if (mean) mean[i] = p;
          if (out) {
            const u = (philoxW0(unit, chain, step, stream, k0, k1) >>> 8) * UNIFORM_SCALE;
            out[i] = u < p ? 1 : 0;
          }
        } else if (type === UnitType.Ising) {
          const a = beta * s;
          if (mean) mean[i] = Math.tanh(a);
          if (out) {
            const u = (philoxW0(unit, chain, step, stream, k0, k1) >>> 8) * UNIFORM_SCALE;
            out[i] = u < sigmoid(2 * a) ? 1 : -1;
          }
        } else {
          // Round the mean to float first, as the native kernel does, so draws agree more often.
          const mu = Math.fround(s);
          if (mean) mean[i] = mu;
          if (out) {
            philox4x32(unit, chain, step, stream, k0, k1, words);
            const u1 = ((words[0]! >>> 8) + 1) * UNIFORM_SCALE;
            const u2 = (words[1]! >>> 8) * UNIFORM_SCALE;
            const z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(TWO_PI * u2);
            out[i] = mu + z * invSqrtBeta;
          }
        }
      }
    }
  }

  uniform(out: Float32Array, count: number, n: number, site: RngSite): void {
    checkUniform(out, count, n, site);
    const k0 = site.seedLo | 0;
    const k1 = site.seedHi | 0;
    const step = site.step | 0;
    const stream = site.stream | 0;
    let chain = site.chainOffset | 0;
    let j = 0;
    for (let i = 0; i < count; i++) {
      const w = philoxW0((site.unitOffset + j) | 0, chain, step, stream, k0, k1);
      out[i] = (w >>> 8) * UNIFORM_SCALE;
      if (++j === n) {
        j = 0;
        chain = (chain + 1) | 0;
      }
    }
  }

  logPartitionRows(
    type: UnitType,
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    bias: Float32Array | null,
    beta: number,
    out: Float32Array,
    accumulate: boolean,
  ): void {
    checkLogPartitionRows(type, rows, n, x, ld, bias, out);
    const inv2b = 0.5 / beta;
    for (let r = 0; r < rows; r++) {
      const base = r * ld;
      let s = 0;
      for (let j = 0; j < n; j++) {
        const a = beta * (bias ? x[base + j]! + bias[j]! : x[base + j]!);
        s +=
          type === UnitType.Bernoulli
            ? softplus(a)
            : type === UnitType.Ising
              ? log2cosh(a)
              : a * a * inv2b;
      }
      out[r] = accumulate ? out[r]! + s : s;
    }
  }

  axpby(n: number, alpha: number, x: Float32Array, beta: number, y: Float32Array): void {
    checkVectors('axpby', n, x, y);
    if (beta === 0) {
      for (let i = 0; i < n; i++) y[i] = alpha * x[i]!;
    } else {
      for (let i = 0; i < n; i++) y[i] = alpha * x[i]! + beta * y[i]!;
    }
  }

  colSums(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    alpha: number,
    beta: number,
    out: Float32Array,
  ): void {
    checkColSums(rows, n, x, ld, out);
    if (this.colAcc.length < n) this.colAcc = new Float64Array(n);
    const acc = this.colAcc;
    acc.fill(0, 0, n);
    for (let r = 0; r < rows; r++) {
      const base = r * ld;
      for (let j = 0; j < n; j++) acc[j] = acc[j]! + x[base + j]!;
    }
    if (beta === 0) {
      for (let j = 0; j < n; j++) out[j] = alpha * acc[j]!;
    } else {
      for (let j = 0; j < n; j++) out[j] = alpha * acc[j]! + beta * out[j]!;
    }
  }

  shiftScaleRows(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    offset: Float32Array | null,
    scale: number,
  ): void {
    checkShiftScaleRows(rows, n, x, ld, offset);
    for (let r = 0; r < rows; r++) {
      const base = r * ld;
      if (offset) {
        for (let j = 0; j < n; j++) x[base + j] = scale * (x[base + j]! - offset[j]!);
      } else {
        for (let j = 0; j < n; j++) x[base + j] = scale * x[base + j]!;
      }
    }
  }

  copyBlock(
    rows: number,
    n: number,
    src: Float32Array,
    srcOff: number,
    srcLd: number,
    dst: Float32Array,
    dstOff: number,
    dstLd: number,
  ): void {
    checkCopyBlock(rows, n, src, srcOff, srcLd, dst, dstOff, dstLd);
    if (rows === 0 || n === 0) return;
    if (n === srcLd && n === dstLd) {
      dst.set(src.subarray(srcOff, srcOff + rows * n), dstOff);
    } else if (n >= 64) {
      // a view per row: set() copies like memcpy, far faster than an element loop this wide
      for (let r = 0; r < rows; r++)
        dst.set(src.subarray(srcOff + r * srcLd, srcOff + r * srcLd + n), dstOff + r * dstLd);
    } else {
      for (let r = 0; r < rows; r++) {
        const so = srcOff + r * srcLd;
        const d = dstOff + r * dstLd;
        for (let j = 0; j < n; j++) dst[d + j] = src[so + j]!;
      }
    }
  }

  sumSquares(n: number, x: Float32Array): number {
    checkVectors('sumSquares', n, x, null);
    let s = 0;
    for (let i = 0; i < n; i++) {
      const v = x[i]!;
      s += v * v;
    }
    return s;
  }

  dot(n: number, x: Float32Array, y: Float32Array): number {
    checkVectors('dot', n, x, y);
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i]! * y[i]!;
    return s;
  }

  packSpins(n: number, x: Float32Array, out: Uint8Array): void {
    checkPackSpins(n, x, out);
    const full = n >>> 3;
    for (let b = 0; b < full; b++) {
      const i = b << 3;
      out[b] =
        (x[i]! > 0 ? 1 : 0) |
        (x[i + 1]! > 0 ? 2 : 0) |
        (x[i + 2]! > 0 ? 4 : 0) |
        (x[i + 3]! > 0 ? 8 : 0) |
        (x[i + 4]! > 0 ? 16 : 0) |
        (x[i + 5]! > 0 ? 32 : 0) |
        (x[i + 6]! > 0 ? 64 : 0) |
        (x[i + 7]! > 0 ? 128 : 0);
    }
    if (n & 7) {
      let v = 0;
      for (let i = full << 3; i < n; i++) if (x[i]! > 0) v |= 1 << (i & 7);
      out[full] = v;
    }
  }

  unpackSpins(n: number, packed: Uint8Array, off: number, x: Float32Array): void {
    checkUnpackSpins(n, packed, x);
    for (let i = 0; i < n; i++) x[i] = (packed[i >>> 3]! >>> (i & 7)) & 1 ? 1 : off;
  }

  packColumns(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    out: Uint32Array,
    odd: Uint8Array,
  ): boolean {
    checkPackColumns(rows, n, x, ld, out, odd);
    const words = bitWords(rows);
    out.fill(0, 0, n * words);
    let none = true;
    for (let r = 0; r < rows; r++) {
      const w = r >>> 5;
      const bit = (1 << (r & 31)) >>> 0;
      for (let i = 0; i < n; i++) {
        const v = x[r * ld + i]!;
        if (v === 1) out[i * words + w] = (out[i * words + w]! | bit) >>> 0;
        else if (v !== 0) {
          odd[i] = 1;
          none = false;
        }
      }
    }
    return none;
  }

  bitCorrelation(
    m: number,
    w: number,
    R: number,
    C: number,
    xPos: Uint32Array,
    xNeg: Uint32Array,
    yPos: Uint32Array,
    yNeg: Uint32Array,
    mu: Float32Array | null,
    lam: Float32Array | null,
    oddX: Uint8Array | null,
    oddY: Uint8Array | null,
    out: Float32Array,
    ld: number,
  ): void {
    checkBitCorrelation(m, w, R, C, [xPos, xNeg, yPos, yNeg], mu, lam, [oddX, oddY], out, ld);
    const wr = bitWords(R);
    const wc = bitWords(C);
    const ir = R > 0 ? 1 / R : 0;
    const ic = C > 0 ? 1 / C : 0;
    const count = (a: Uint32Array, ao: number, b: Uint32Array | null, bo: number, n: number) => {
      let s = 0;
      for (let k = 0; k < n; k++) s += popcount32(b ? a[ao + k]! & b[bo + k]! : a[ao + k]!);
      return s;
    };
    const sy = new Float64Array(w);
    for (let j = 0; j < w; j++)
      sy[j] = count(yPos, j * wr, null, 0, wr) * ir - count(yNeg, j * wc, null, 0, wc) * ic;
    for (let i = 0; i < m; i++) {
      if (oddX && oddX[i]) continue;
      const sx = count(xPos, i * wr, null, 0, wr) * ir - count(xNeg, i * wc, null, 0, wc) * ic;
      const mi = mu ? mu[i]! : 0;
      for (let j = 0; j < w; j++) {
        if (oddY && oddY[j]) continue;
        const p = count(xPos, i * wr, yPos, j * wr, wr);
        const q = count(xNeg, i * wc, yNeg, j * wc, wc);
        out[i * ld + j] = p * ir - q * ic - (lam ? lam[j]! : 0) * sx - mi * sy[j]!;
      }
    }
  }
}

/** Set bits of a 32-bit word. */
function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return (((v + (v >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}
