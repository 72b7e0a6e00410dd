// The one narrow interface for dense float32 work. Models call only this for their hot paths,
// so an implementation (native OpenBLAS, portable TypeScript, CUDA) can be swapped
// without touching them.
//
// Conventions (all implementations):
// - Matrices are row-major Float32Arrays; `ld*` is the row stride in elements. A matrix
//   argument may be a `subarray` view: implementations honour byteOffset.
// - No implementation allocates per call on the hot paths (sgemm, sampleUnits, axpby, ...).
// - Buffers that models use with kernels are allocated with `alloc` and, after JS code writes
//   into one, it calls `upload(buf)`; before JS reads one that a kernel wrote, `download(buf)`.
//   Both are no-ops for host implementations. A device implementation (cuda.ts) keeps a
//   device mirror of every allocated buffer and uses these two calls to keep them in step, so
//   models need no change to run on it.
// - Dimensions and strides are integers in [0, 2^31). A call whose buffers are too small for
//   its dimensions and strides, or whose ld is less than the row length, throws a RangeError
//   before touching anything.

/** How a layer's units turn a local field into states. */
export const UnitType = {
  /** {0,1} units: p(x=1) = sigmoid(beta * a). */
  Bernoulli: 0,
  /** {-1,+1} units: E[x] = tanh(beta * a), p(x=+1) = sigmoid(2 * beta * a). */
  Ising: 1,
  /** real-valued units with unit variance: x ~ N(a, 1/beta). */
  Gaussian: 2,
} as const;
export type UnitType = (typeof UnitType)[keyof typeof UnitType];

export const UNIT_TYPE_NAMES = ['bernoulli', 'ising', 'gaussian'] as const;

/**
 * Where a draw's randomness comes from.
 *
 * Exact definition (both implementations, bit for bit): words w0..w3 = Philox4x32-10(counter =
 * [unit, chain, step, stream], key = [seedLo, seedHi]). A uniform is u = (w0 >>> 8) * 2^-24.
 * Bernoulli: x = u < sigmoid(beta*a) ? 1 : 0. Ising: x = u < sigmoid(2*beta*a) ? 1 : -1.
 * Gaussian (Box-Muller): u1 = ((w0 >>> 8) + 1) * 2^-24, u2 = (w1 >>> 8) * 2^-24,
 * z = sqrt(-2 ln u1) * cos(2 pi u2), x = mean + z / sqrt(beta).
 * Probabilities are computed in float32 or float64 depending on the implementation, so the two
 * may disagree on a draw when u lies within rounding of p (tests allow for that). The Philox-4x32-10 counter of the draw for unit
 * `unitOffset + j` of chain `chainOffset + r` is (unit, chain, step, stream) and its key is the
 * seed, so a draw depends on (seed, chain, unit, step, stream) only: never on how units are
 * split across shards, on batch layout, or on timing. Every field is an integer and is taken
 * modulo 2^32 (so unitOffset + j wraps past 2^32 - 1).
 */
export interface RngSite {
  /** 64-bit seed as two 32-bit halves [lo, hi]. */
  seedLo: number;
  seedHi: number;
  /** global index of the first unit (column) of the block. */
  unitOffset: number;
  /** global index of the first chain (row) of the block. */
  chainOffset: number;
  /** the step (sweep) number, 32-bit. */
  step: number;
  /** distinguishes several draws of one unit in one step (phase, sub-sweep, purpose). */
  stream: number;
}

export interface Kernels {
  /** 'cuda' (cuBLAS and CUDA kernels), 'native' (OpenBLAS through N-API) or 'portable'. */
  readonly name: string;
  /** Threads the implementation uses for sgemm (native: OpenBLAS's process-wide setting). */
  readonly threads: number;
  /** Human-readable description for start-up logs and bench output (library, version, threads). */
  describe(): string;

  alloc(n: number): Float32Array;
  upload(buf: Float32Array): void;
  download(buf: Float32Array): void;

  /**
   * C = alpha * op(A) * op(B) + beta * C, row-major. op(A) is m x k, op(B) is k x n, C is m x n.
   * With transA, A is stored k x m (lda >= m); otherwise m x k (lda >= k). Same for B.
   * As in BLAS, beta = 0 overwrites C without reading it (NaN in C does not survive), and A and
   * B are not read when alpha = 0 or k = 0.
   */
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
  ): void;

  /**
   * Fused "add bias, squash, draw" over a rows x n block (row stride ld for field/mean/out).
   * a = beta * (field[r,j] + bias[j]).
   * mean[r,j] (when mean is not null): Bernoulli sigmoid(a); Ising tanh(a); Gaussian field+bias.
   * out[r,j] (when out is not null): a draw from the unit's conditional (see UnitType), using
   *   the counter-based generator at `site`. For Gaussian the draw is N(field+bias, 1/beta).
   * mean and out may be the same array as field (in-place); they may not alias each other.
   */
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
  ): void;

  /**
   * Fill out[0..count) with uniforms in [0,1) (24-bit resolution) from the generator: element
   * i uses counter (unitOffset + i % n, chainOffset + floor(i / n), step, stream).
   */
  uniform(out: Float32Array, count: number, n: number, site: RngSite): void;

  /**
   * out[r] = sum_j g(beta * (x[r,j] + bias[j])) over a rows x n block (row stride ld), where g is
   * the log-partition function of one unit of the type: Bernoulli softplus(a) = log(1+e^a);
   * Ising log(2 cosh a); Gaussian a^2/(2 beta) (+ const dropped: documented in model). Accumulates:
   * out[r] = accumulate ? out[r] + s : s. bias may be null (zeros).
   */
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
  ): void;

  /** y[i] = alpha * x[i] + beta * y[i] for i < n; beta = 0 does not read y. */
  axpby(n: number, alpha: number, x: Float32Array, beta: number, y: Float32Array): void;

  /**
   * Column sums of a rows x n block: out[j] = alpha * sum_r x[r,j] + beta * out[j].
   * (Bias gradients, data means.) Sums are accumulated in double; beta = 0 does not read out.
   */
  colSums(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    alpha: number,
    beta: number,
    out: Float32Array,
  ): void;

  /**
   * x[r,j] = scale * (x[r,j] - offset[j]) over a rows x n block (centring and scaling stacked
   * phase rows before a correlation GEMM). offset may be null (no shift).
   */
  shiftScaleRows(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    offset: Float32Array | null,
    scale: number,
  ): void;

  /**
   * dst[dstOff + r*dstLd + j] = src[srcOff + r*srcLd + j] for r < rows, j < n: a block of one
   * row-major matrix copied into another (a shard's columns into a whole layer's rows and back).
   * src and dst must not overlap. Models use it on the host, between a download of src and an
   * upload of dst, so a device implementation copies the host arrays as well as the mirrors.
   */
  copyBlock(
    rows: number,
    n: number,
    src: Float32Array,
    srcOff: number,
    srcLd: number,
    dst: Float32Array,
    dstOff: number,
    dstLd: number,
  ): void;

  /** sum_i x[i]^2 over i < n, accumulated in double. */
  sumSquares(n: number, x: Float32Array): number;

  /** sum_i x[i] * y[i] over i < n, accumulated in double. */
  dot(n: number, x: Float32Array, y: Float32Array): number;

  /**
   * Bit-pack spins: bit i of out (little-endian within bytes) is set when x[i] > 0 (so {0,1}
   * and {-1,+1} both map to 0/1). out must hold ceil(n/8) bytes.
   */
  packSpins(n: number, x: Float32Array, out: Uint8Array): void;

  /** Inverse of packSpins: x[i] = bit ? 1 : off, where off is 0 ({0,1}) or -1 (Ising). */
  unpackSpins(n: number, packed: Uint8Array, off: number, x: Float32Array): void;

  /**
   * Column bits of a rows x n block of 0s and 1s: bit r % 32 of out[i * words + r / 32] is
   * x[r * ld + i] == 1, words = ceil(rows / 32) (the spare high bits are 0); odd[i] is set to 1
   * (never cleared) for a column holding a value other than 0 and 1.
   * @returns whether no value was odd.
   */
  packColumns(
    rows: number,
    n: number,
    x: Float32Array,
    ld: number,
    out: Uint32Array,
    odd: Uint8Array,
  ): boolean;

  /**
   * The centred correlation of two layers of 0s and 1s over R positive and C negative rows,
   * from their column bits (packColumns of each phase): out[i * ld + j] = sum over the rows r
   * of a_r (x_ri - mu_i)(y_rj - lam_j) with a_r = 1/R on positive rows and -1/C on negative
   * ones, as sgemm computes it from the centred, scaled rows, but counted (popcount), summed in
   * double and rounded once: each value depends only on its own two units, whatever the block.
   * mu and lam may be null (no centring). Elements of an odd unit (oddX[i] or oddY[j], when
   * given) are left as they are.
   */
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
  ): void;
}
