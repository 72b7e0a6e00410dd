// Bars and stripes (MacKay 2003): n x n binary images in which either every column is all on
// or all off (bars), or every row is (stripes). There are 2^n bar images and 2^n stripe
// images, but the all-off and all-on images are both bars and stripes, so the set of distinct
// patterns has 2^(n+1) - 2 members (30 for 4 x 4). Each is kept once here: the dataset is the
// support of the target distribution, uniform over it, and a model that learns it perfectly
// has average log-likelihood -log(2^(n+1) - 2). Some papers keep the duplicates (2^(n+1)
// rows, with the two shared patterns at double weight); compare numbers accordingly.
import { SpecError } from '../errors.js';
import type { Dataset } from './dataset.js';

/** Largest n accepted: 2^(n+1) rows of n^2 floats stays under ~70 MB. */
const MAX_N = 12;

/** Number of distinct bars-and-stripes patterns of size n x n: 2^(n+1) - 2. */
export function basPatternCount(n: number): number {
  checkN(n);
  return 2 ** (n + 1) - 2;
}

function checkN(n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > MAX_N) {
    throw new SpecError('bars-and-stripes n', `must be an integer in 1..${MAX_N}, got ${n}`);
  }
}

/**
 * All distinct n x n bars-and-stripes patterns as {0,1} rows (row-major pixels, shape [n, n]).
 * Order: the 2^n bar patterns (column c on when bit c of the index is set, index 0..2^n-1),
 * then the 2^n - 2 stripe patterns that are not also bars (row r on when bit r of the index is
 * set, index 1..2^n-2). Labels: 0 for bars (including all-off and all-on), 1 for stripes.
 */
export function barsAndStripes(n: number): Dataset {
  const rows = basPatternCount(n);
  const dims = n * n;
  const x = new Float32Array(rows * dims);
  const labels = new Int32Array(rows);
  let r = 0;
  for (let m = 0; m < 2 ** n; m++, r++) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) x[r * dims + i * n + j] = (m >> j) & 1;
    }
  }
  for (let m = 1; m < 2 ** n - 1; m++, r++) {
    labels[r] = 1;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) x[r * dims + i * n + j] = (m >> i) & 1;
    }
  }
  return { x, rows, dims, labels, shape: [n, n], name: `bars-and-stripes-${n}x${n}` };
}

/**
 * The best achievable average log-likelihood (nats per pattern) of the patterns of
 * `barsAndStripes(n)`: that of the uniform distribution over them, -log(2^(n+1) - 2).
 */
export function basLogLikelihoodOptimum(n: number): number {
  return -Math.log(basPatternCount(n));
}
