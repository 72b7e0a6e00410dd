// Argument checks shared by every implementation, so a bad call fails the same way (a
// RangeError naming the op and the argument) whichever kernels are loaded, instead of reading
// undefined as NaN in TypeScript or being caught only by the addon's last-ditch guards.

import type { RngSite } from './kernels.js';

const MAX_DIM = 0x7fffffff;

export function checkDim(op: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > MAX_DIM) {
    throw new RangeError(`${op}: ${name} must be an integer in [0, 2^31), got ${v}`);
  }
}

/** Elements a rows x cols row-major block with row stride ld spans. */
export function extent(rows: number, cols: number, ld: number): number {
  return rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 0;
}

export function checkMatrix(
  op: string,
  name: string,
  arr: ArrayLike<number>,
  rows: number,
  cols: number,
  ld: number,
  ldName = 'ld',
): void {
  checkDim(op, ldName, ld);
  if (ld < cols) {
    throw new RangeError(`${op}: ${ldName} (${ld}) is smaller than the row length ${cols}`);
  }
  const need = extent(rows, cols, ld);
  if (arr.length < need) {
    throw new RangeError(
      `${op}: ${name} holds ${arr.length} elements; a ${rows}x${cols} block with ${ldName} ` +
        `${ld} needs ${need}`,
    );
  }
}

/** A rows x cols block with row stride ld starting at element `off` of arr. */
function checkBlock(
  op: string,
  name: string,
  arr: ArrayLike<number>,
  off: number,
  rows: number,
  cols: number,
  ld: number,
): void {
  checkDim(op, `${name} offset`, off);
  checkDim(op, `${name} ld`, ld);
  if (ld < cols) {
    throw new RangeError(`${op}: ${name} ld (${ld}) is smaller than the row length ${cols}`);
  }
  const need = off + extent(rows, cols, ld);
  if (rows > 0 && cols > 0 && arr.length < need) {
    throw new RangeError(
      `${op}: ${name} holds ${arr.length} elements; a ${rows}x${cols} block with ld ${ld} ` +
        `from element ${off} needs ${need}`,
    );
  }
}

export function checkVector(op: string, name: string, arr: ArrayLike<number>, n: number): void {
  if (arr.length < n) {
    throw new RangeError(`${op}: ${name} holds ${arr.length} elements, needs ${n}`);
  }
}

export function checkUnitType(op: string, type: number): void {
  if (type !== 0 && type !== 1 && type !== 2) {
    throw new RangeError(`${op}: unknown unit type ${type} (expected 0, 1 or 2)`);
  }
}

export function checkSite(op: string, site: RngSite): void {
  for (const k of ['seedLo', 'seedHi', 'unitOffset', 'chainOffset', 'step', 'stream'] as const) {
    const v = site[k];
    if (!Number.isInteger(v)) {
      throw new RangeError(`${op}: site.${k} must be an integer, got ${v}`);
    }
  }
}

/** rows and n, and a rows x n block with row stride ld in arr (the row-wise kernels). */
function checkRows(
  op: string,
  name: string,
  arr: ArrayLike<number>,
  rows: number,
  n: number,
  ld: number,
): void {
  checkDim(op, 'rows', rows);
  checkDim(op, 'n', n);
  checkMatrix(op, name, arr, rows, n, ld);
}

/** The arguments of Kernels.sampleUnits. */
export function checkSampleUnits(
  type: number,
  rows: number,
  n: number,
  field: ArrayLike<number>,
  ld: number,
  bias: ArrayLike<number>,
  mean: ArrayLike<number> | null,
  out: ArrayLike<number> | null,
  site: RngSite,
): void {
  const op = 'sampleUnits';
  checkUnitType(op, type);
  checkRows(op, 'field', field, rows, n, ld);
  checkVector(op, 'bias', bias, n);
  if (mean) checkMatrix(op, 'mean', mean, rows, n, ld);
  if (out) checkMatrix(op, 'out', out, rows, n, ld);
  checkSite(op, site);
}

/** The arguments of Kernels.uniform. */
export function checkUniform(
  out: ArrayLike<number>,
  count: number,
  n: number,
  site: RngSite,
): void {
  const op = 'uniform';
  checkDim(op, 'count', count);
  checkDim(op, 'n', n);
  checkVector(op, 'out', out, count);
  if (count > 0 && n === 0) throw new RangeError(`${op}: n must be positive`);
  checkSite(op, site);
}

/** The arguments of Kernels.logPartitionRows. */
export function checkLogPartitionRows(
  type: number,
  rows: number,
  n: number,
  x: ArrayLike<number>,
  ld: number,
  bias: ArrayLike<number> | null,
  out: ArrayLike<number>,
): void {
  const op = 'logPartitionRows';
  checkUnitType(op, type);
  checkRows(op, 'x', x, rows, n, ld);
  if (bias) checkVector(op, 'bias', bias, n);
  checkVector(op, 'out', out, rows);
}

/** The arguments of Kernels.colSums. */
export function checkColSums(
  rows: number,
  n: number,
  x: ArrayLike<number>,
  ld: number,
  out: ArrayLike<number>,
): void {
  const op = 'colSums';
  checkRows(op, 'x', x, rows, n, ld);
  checkVector(op, 'out', out, n);
}

/** The arguments of Kernels.shiftScaleRows. */
export function checkShiftScaleRows(
  rows: number,
  n: number,
  x: ArrayLike<number>,
  ld: number,
  offset: ArrayLike<number> | null,
): void {
  const op = 'shiftScaleRows';
  checkRows(op, 'x', x, rows, n, ld);
  if (offset) checkVector(op, 'offset', offset, n);
}

/** The arguments of the vector kernels (axpby, sumSquares, dot): n, x and y (when given) of n. */
export function checkVectors(
  op: string,
  n: number,
  x: ArrayLike<number>,
  y: ArrayLike<number> | null,
): void {
  checkDim(op, 'n', n);
  checkVector(op, 'x', x, n);
  if (y) checkVector(op, 'y', y, n);
}

/** The arguments of Kernels.packSpins: n spins in x, ceil(n / 8) bytes in out. */
export function checkPackSpins(n: number, x: ArrayLike<number>, out: ArrayLike<number>): void {
  checkDim('packSpins', 'n', n);
  checkVector('packSpins', 'x', x, n);
  checkVector('packSpins', 'out', out, (n + 7) >>> 3);
}

/** The arguments of Kernels.unpackSpins: ceil(n / 8) bytes in packed, n spins in x. */
export function checkUnpackSpins(n: number, packed: ArrayLike<number>, x: ArrayLike<number>): void {
  checkDim('unpackSpins', 'n', n);
  checkVector('unpackSpins', 'packed', packed, (n + 7) >>> 3);
  checkVector('unpackSpins', 'x', x, n);
}

/** 32-bit words of column bits per unit for `rows` rows (Kernels.packColumns). */
export function bitWords(rows: number): number {
  return Math.ceil(rows / 32);
}

/** The arguments of Kernels.packColumns: a rows x n block, n x ceil(rows / 32) words out. */
export function checkPackColumns(
  rows: number,
  n: number,
  x: ArrayLike<number>,
  ld: number,
  out: ArrayLike<number>,
  odd: ArrayLike<number>,
): void {
  const op = 'packColumns';
  checkRows(op, 'x', x, rows, n, ld);
  checkVector(op, 'out', out, n * bitWords(rows));
  checkVector(op, 'odd', odd, n);
}

/** The arguments of Kernels.bitCorrelation. */
export function checkBitCorrelation(
  m: number,
  w: number,
  R: number,
  C: number,
  bits: readonly [ArrayLike<number>, ArrayLike<number>, ArrayLike<number>, ArrayLike<number>],
  mu: ArrayLike<number> | null,
  lam: ArrayLike<number> | null,
  odd: readonly [ArrayLike<number> | null, ArrayLike<number> | null],
  out: ArrayLike<number>,
  ld: number,
): void {
  const op = 'bitCorrelation';
  for (const [name, v] of [
    ['m', m],
    ['w', w],
    ['R', R],
    ['C', C],
  ] as const)
    checkDim(op, name, v);
  const [xPos, xNeg, yPos, yNeg] = bits;
  checkVector(op, 'xPos', xPos, m * bitWords(R));
  checkVector(op, 'xNeg', xNeg, m * bitWords(C));
  checkVector(op, 'yPos', yPos, w * bitWords(R));
  checkVector(op, 'yNeg', yNeg, w * bitWords(C));
  if (mu) checkVector(op, 'mu', mu, m);
  if (lam) checkVector(op, 'lam', lam, w);
  if (odd[0]) checkVector(op, 'oddX', odd[0], m);
  if (odd[1]) checkVector(op, 'oddY', odd[1], w);
  checkMatrix(op, 'out', out, m, w, ld);
}

/** The arguments of Kernels.copyBlock (both implementations check them the same way). */
export function checkCopyBlock(
  rows: number,
  n: number,
  src: ArrayLike<number>,
  srcOff: number,
  srcLd: number,
  dst: ArrayLike<number>,
  dstOff: number,
  dstLd: number,
): void {
  const op = 'copyBlock';
  checkDim(op, 'rows', rows);
  checkDim(op, 'n', n);
  checkBlock(op, 'src', src, srcOff, rows, n, srcLd);
  checkBlock(op, 'dst', dst, dstOff, rows, n, dstLd);
}

export function checkSgemm(
  transA: boolean,
  transB: boolean,
  m: number,
  n: number,
  k: number,
  a: ArrayLike<number>,
  lda: number,
  b: ArrayLike<number>,
  ldb: number,
  c: ArrayLike<number>,
  ldc: number,
  readsAB: boolean,
): void {
  checkDim('sgemm', 'm', m);
  checkDim('sgemm', 'n', n);
  checkDim('sgemm', 'k', k);
  const [ar, ac] = transA ? [k, m] : [m, k];
  const [br, bc] = transB ? [n, k] : [k, n];
  // Like BLAS, a and b are not read (so their sizes do not matter) when alpha or k is zero,
  // but the strides must still be consistent.
  checkMatrix('sgemm', 'a', readsAB ? a : { length: Infinity }, ar, ac, lda, 'lda');
  checkMatrix('sgemm', 'b', readsAB ? b : { length: Infinity }, br, bc, ldb, 'ldb');
  checkMatrix('sgemm', 'c', c, m, n, ldc, 'ldc');
}

/**
 * Buffers of the host implementations: plain Float32Arrays, so upload and download have
 * nothing to do (a device implementation mirrors them instead).
 */
export class HostBuffers {
  alloc(n: number): Float32Array {
    checkDim('alloc', 'n', n);
    return new Float32Array(n);
  }

  upload(_buf: Float32Array): void {}

  download(_buf: Float32Array): void {}
}
