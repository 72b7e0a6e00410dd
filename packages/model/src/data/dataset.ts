// In-memory datasets and the seeded minibatch order used by training.
//
// Every random choice here (Bernoulli binarisation, epoch permutations, shuffled splits) is a
// pure function of (seed, position) through the counter-based Philox generator, so a worker
// that restarts, or a second worker given the same seed, sees exactly the same data order
// without any generator state being saved or shared.
import { philox4x32, seedHalves, wordToUniform } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';

export interface Dataset {
  /** rows x dims, row-major. */
  x: Float32Array;
  rows: number;
  dims: number;
  /** One integer class label per row, when the data has them. */
  labels?: Int32Array;
  /** Shape of one row when it is an image or other tensor, e.g. [28, 28]; product = dims. */
  shape?: number[];
  name: string;
}

// Stream words (the counter's 4th word) that keep the draws of each purpose independent of
// the others even under the same seed. Values are arbitrary but fixed forever: changing one
// would change every seeded result that depends on it.
const STREAM_EPOCH = 0x45504f43; // 'EPOC'
const STREAM_BINARIZE = 0x42494e41; // 'BINA'
const STREAM_SPLIT = 0x53504c54; // 'SPLT'

/** Column means by data array (columnMeans): rows and dims they were taken over, and them. */
const meansOf = new WeakMap<Float32Array, { rows: number; dims: number; mean: Float64Array }>();

/**
 * Mean of each column of the data, summed in float64 row by row. Kept by data array, which a
 * worker holds across a job's generations and reads for its visible biases and its centring
 * offsets: each a pass over the whole data set (60 ms for Fashion-MNIST) at every load.
 */
export function columnMeans(data: Pick<Dataset, 'x' | 'rows' | 'dims'>): Float64Array {
  const kept = meansOf.get(data.x);
  if (kept?.rows === data.rows && kept.dims === data.dims) return kept.mean.slice();
  const mean = new Float64Array(data.dims);
  for (let r = 0; r < data.rows; r++)
    for (let j = 0; j < data.dims; j++) mean[j]! += data.x[r * data.dims + j]!;
  for (let j = 0; j < data.dims; j++) mean[j]! /= data.rows;
  meansOf.set(data.x, { rows: data.rows, dims: data.dims, mean });
  return mean.slice();
}

/** Checks that a dataset's fields agree with each other. @throws SpecError */
export function checkDataset(ds: Dataset): void {
  if (!Number.isInteger(ds.rows) || ds.rows < 0)
    throw new SpecError('dataset.rows', 'must be a non-negative integer');
  if (!Number.isInteger(ds.dims) || ds.dims <= 0)
    throw new SpecError('dataset.dims', 'must be a positive integer');
  if (ds.x.length !== ds.rows * ds.dims) {
    throw new SpecError(
      'dataset.x',
      `has ${ds.x.length} elements, expected rows x dims = ${ds.rows * ds.dims}`,
    );
  }
  if (ds.labels && ds.labels.length !== ds.rows) {
    throw new SpecError('dataset.labels', `has ${ds.labels.length} elements, expected ${ds.rows}`);
  }
  if (ds.shape && ds.shape.reduce((a, b) => a * b, 1) !== ds.dims) {
    throw new SpecError(
      'dataset.shape',
      `[${ds.shape.join(', ')}] does not multiply to dims = ${ds.dims}`,
    );
  }
}

function seedKey(seed: number | bigint): { seedLo: number; seedHi: number } {
  try {
    return seedHalves(seed);
  } catch (e) {
    throw new SpecError('seed', (e as Error).message.replace(/^seed /, ''));
  }
}

/** How `binarize` turns intensities in [0,1] into {0,1}. */
export type BinarizeMode = 'threshold' | 'none' | 'bernoulli';

/**
 * A {0,1} copy of `ds` (or `ds` itself for mode 'none').
 * - 'threshold': x >= threshold -> 1, else 0.
 * - 'bernoulli': each pixel is 1 with probability equal to its intensity (clamped to [0,1]),
 *   a fixed draw per (seed, row, column) — the same seed always gives the same dataset.
 * @param threshold - used by 'threshold' only. @defaultValue 0.5
 * @param seed - used by 'bernoulli' only. @defaultValue 0
 */
export function binarize(
  ds: Dataset,
  mode: BinarizeMode,
  threshold = 0.5,
  seed: number | bigint = 0,
): Dataset {
  if (mode === 'none') return ds;
  const x = new Float32Array(ds.x.length);
  const name = `${ds.name}|binarized:${mode}`;
  if (mode === 'threshold') {
    for (let i = 0; i < x.length; i++) x[i] = ds.x[i]! >= threshold ? 1 : 0;
    return { ...ds, x, name };
  }
  if (mode !== 'bernoulli')
    throw new SpecError(
      'binarize.mode',
      `must be threshold, none or bernoulli, got ${String(mode)}`,
    );
  const { seedLo, seedHi } = seedKey(seed);
  const w = new Uint32Array(4);
  const d = ds.dims;
  // One Philox call serves four neighbouring pixels of a row: counter (col/4, row, 0, stream).
  for (let r = 0; r < ds.rows; r++) {
    const base = r * d;
    for (let j = 0; j < d; j += 4) {
      philox4x32(j >>> 2, r, 0, STREAM_BINARIZE, seedLo, seedHi, w);
      const end = Math.min(4, d - j);
      for (let k = 0; k < end; k++) {
        x[base + j + k] = wordToUniform(w[k]!) < ds.x[base + j + k]! ? 1 : 0;
      }
    }
  }
  return { ...ds, x, name: `${name}:${String(seed)}` };
}

export interface Scale01Options {
  /** Scale each column by its own min and max instead of the global ones. @defaultValue false */
  perColumn?: boolean;
}

/**
 * A copy with values mapped linearly onto [0,1]: (x - min) / (max - min), globally or per
 * column. A constant column (or dataset) maps to 0 rather than dividing by zero.
 */
export function scale01(ds: Dataset, opts: Scale01Options = {}): Dataset {
  const { rows, dims } = ds;
  const cols = opts.perColumn ? dims : 1;
  const lo = new Float64Array(cols).fill(Infinity);
  const hi = new Float64Array(cols).fill(-Infinity);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dims; j++) {
      const v = ds.x[r * dims + j]!;
      const c = opts.perColumn ? j : 0;
      if (v < lo[c]!) lo[c] = v;
      if (v > hi[c]!) hi[c] = v;
    }
  }
  const x = new Float32Array(ds.x.length);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < dims; j++) {
      const c = opts.perColumn ? j : 0;
      const span = hi[c]! - lo[c]!;
      const i = r * dims + j;
      x[i] = span > 0 ? (ds.x[i]! - lo[c]!) / span : 0;
    }
  }
  return { ...ds, x, name: `${ds.name}|scale01` };
}

/**
 * A copy of some rows: a number n takes the first n rows (or all, if fewer); an array of row
 * indices takes those rows in that order (repeats allowed).
 */
export function subset(ds: Dataset, select: number | ArrayLike<number>): Dataset {
  if (typeof select === 'number') {
    if (!Number.isInteger(select) || select < 0)
      throw new SpecError('subset', 'row count must be a non-negative integer');
    const n = Math.min(select, ds.rows);
    const x = ds.x.slice(0, n * ds.dims);
    const out: Dataset = { ...ds, x, rows: n, name: `${ds.name}[:${n}]` };
    if (ds.labels) out.labels = ds.labels.slice(0, n);
    return out;
  }
  const idx = select;
  const n = idx.length;
  const x = new Float32Array(n * ds.dims);
  const labels = ds.labels ? new Int32Array(n) : undefined;
  for (let i = 0; i < n; i++) {
    const r = idx[i]!;
    if (!Number.isInteger(r) || r < 0 || r >= ds.rows) {
      throw new SpecError(`subset[${i}]`, `is ${r}, not a row index in 0..${ds.rows - 1}`);
    }
    x.set(ds.x.subarray(r * ds.dims, (r + 1) * ds.dims), i * ds.dims);
    if (labels) labels[i] = ds.labels![r]!;
  }
  const out: Dataset = { ...ds, x, rows: n, name: `${ds.name}[${n} rows]` };
  if (labels) out.labels = labels;
  else delete out.labels;
  return out;
}

export interface SplitOptions {
  /** Shuffle rows with this seed before splitting; without it the first rows go to `train`. */
  seed?: number | bigint;
}

/**
 * Splits rows into two disjoint datasets: `train` gets round(fraction * rows) rows, `test`
 * the rest.
 */
export function split(
  ds: Dataset,
  fraction: number,
  opts: SplitOptions = {},
): { train: Dataset; test: Dataset } {
  if (!(fraction >= 0 && fraction <= 1))
    throw new SpecError('split.fraction', `must be in [0, 1], got ${fraction}`);
  const nTrain = Math.round(fraction * ds.rows);
  const order =
    opts.seed === undefined
      ? Uint32Array.from({ length: ds.rows }, (_, i) => i)
      : permutation(ds.rows, opts.seed, 0, STREAM_SPLIT);
  const train = subset(ds, order.subarray(0, nTrain));
  const test = subset(ds, order.subarray(nTrain));
  train.name = `${ds.name}|train`;
  test.name = `${ds.name}|test`;
  return { train, test };
}

function permutation(
  rows: number,
  seed: number | bigint,
  epoch: number,
  stream: number,
): Uint32Array {
  if (!Number.isInteger(rows) || rows < 0 || rows > 0xffffffff) {
    throw new SpecError('rows', `must be an integer in 0..2^32-1, got ${rows}`);
  }
  if (!Number.isInteger(epoch) || epoch < 0 || epoch > 0xffffffff) {
    throw new SpecError('epoch', `must be an integer in 0..2^32-1, got ${epoch}`);
  }
  const { seedLo, seedHi } = seedKey(seed);
  const order = new Uint32Array(rows);
  for (let i = 0; i < rows; i++) order[i] = i;
  const w = new Uint32Array(4);
  // Fisher-Yates from the top; the swap partner for position i is drawn from counter
  // (i, epoch, 0, stream). Two words make a 53-bit uniform, so the modulo bias for any
  // feasible row count is below 2^-20.
  for (let i = rows - 1; i > 0; i--) {
    philox4x32(i, epoch, 0, stream, seedLo, seedHi, w);
    const u = (w[0]! * 2097152 + (w[1]! >>> 11)) / 9007199254740992;
    const j = Math.floor(u * (i + 1));
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

/**
 * The order in which epoch `epoch` visits the rows: a permutation of 0..rows-1 that depends on
 * (seed, epoch) only.
 */
export function epochOrder(rows: number, seed: number | bigint, epoch: number): Uint32Array {
  return permutation(rows, seed, epoch, STREAM_EPOCH);
}

/**
 * Copies rows order[start .. start+count) of `ds` into `out` (count x dims, row-major), and
 * their labels into `labelsOut` when given. A batch that runs past the end of `order` is cut
 * short. Returns the number of rows copied.
 */
export function gatherRows(
  ds: Dataset,
  order: ArrayLike<number>,
  start: number,
  count: number,
  out: Float32Array,
  labelsOut?: Int32Array,
): number {
  const n = Math.max(0, Math.min(count, order.length - start));
  const d = ds.dims;
  if (out.length < n * d) {
    throw new SpecError(
      'gatherRows.out',
      `holds ${out.length} values, a batch of ${n} rows needs ${n * d}`,
    );
  }
  for (let i = 0; i < n; i++) {
    const r = order[start + i]!;
    if (!(r >= 0 && r < ds.rows)) {
      throw new SpecError(
        `gatherRows.order[${start + i}]`,
        `is ${r}, not a row index in 0..${ds.rows - 1}`,
      );
    }
    out.set(ds.x.subarray(r * d, r * d + d), i * d);
    if (labelsOut && ds.labels) labelsOut[i] = ds.labels[r]!;
  }
  return n;
}
