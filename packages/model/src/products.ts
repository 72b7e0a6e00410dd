// Fields cut at fixed unit indices (TrainOptions.productBlock). A BLAS library rounds a column
// of a product according to where the column lies in the call: OpenBLAS's single-threaded
// sgemm on the benchmark machine computes the first 8 and the last 8-15 columns of a call, and
// those beside its internal 320-column blocks, in another order than the rest. The same units'
// fields computed by one call per shard therefore differ in the last bit from one layout to
// the next. Cut at multiples of a fixed block, the piece holding a unit is the same call (same
// shape, same operands) in every layout whose shard boundaries are multiples of the block, and
// in one process, whatever the library does inside a call.
import type { Kernels } from '@spinmesh/kernels';

/**
 * out (rows x (b - a), row stride ldOut) = X W + beta out for the units [a, b) of a layer:
 * X is rows x K (stride ldX); the units' weights are the columns of a K x (b - a) matrix
 * (`unitsAreRows` false: unit j's weight k at W[k * ldW + j - a]) or the rows of a (b - a) x K
 * one (true: X W^T). With block > 0 the units are computed in pieces cut at the multiples of
 * block, one product each; with 0 in one product.
 */
export function unitsProduct(
  k: Kernels,
  unitsAreRows: boolean,
  rows: number,
  a: number,
  b: number,
  K: number,
  X: Float32Array,
  ldX: number,
  W: Float32Array,
  ldW: number,
  beta: number,
  out: Float32Array,
  ldOut: number,
  block: number,
): void {
  for (let j = a; j < b;) {
    const end = block > 0 ? Math.min(b, (Math.floor(j / block) + 1) * block) : b;
    const o = j - a;
    const w = end - j;
    const at = out.subarray(o);
    if (unitsAreRows)
      k.sgemm(false, true, rows, w, K, 1, X, ldX, W.subarray(o * ldW), ldW, beta, at, ldOut);
    else k.sgemm(false, false, rows, w, K, 1, X, ldX, W.subarray(o), ldW, beta, at, ldOut);
    j = end;
  }
}

/**
 * The boundary between two shards' units of a layer, moved to the nearest multiple of `block`
 * that stays within [lo, hi]; `at` itself where none does (or block is 0).
 */
export function alignedBoundary(at: number, block: number, lo: number, hi: number): number {
  if (block <= 0) return at;
  const down = Math.floor(at / block) * block;
  const up = down + block;
  const near = at - down <= up - at ? [down, up] : [up, down];
  return near.find((x) => x >= lo && x <= hi) ?? at;
}
