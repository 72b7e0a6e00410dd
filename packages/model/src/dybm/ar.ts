// The baseline of the gaussian DyBM: a least-squares autoregression x[t] ~ c + sum_k a_k x[t-k],
// fitted by solving the normal equations (Cholesky), and the synthetic series it is measured on.
import { seedHalves } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import { normalAt, uniformAt } from './random.js';

const STREAM_SINES = 0x44595349; // 'DYSI'

export interface Autoregression {
  order: number;
  intercept: number;
  /** a_1 .. a_order: the weight of x[t-1], ..., x[t-order]. */
  coefficients: Float64Array;
}

/**
 * Solves A x = b for a symmetric positive definite n x n A (row-major) by Cholesky. A and b are
 * not modified. @throws SpecError when A is not positive definite (singular normal equations).
 */
export function solveSpd(A: ArrayLike<number>, b: ArrayLike<number>, n: number): Float64Array {
  const Lm = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = A[i * n + j]!;
      for (let k = 0; k < j; k++) s -= Lm[i * n + k]! * Lm[j * n + k]!;
      if (i === j) {
        if (!(s > 0)) throw new SpecError('normal equations', `are singular (pivot ${i} is ${s})`);
        Lm[i * n + i] = Math.sqrt(s);
      } else Lm[i * n + j] = s / Lm[j * n + j]!;
    }
  }
  const y = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let k = 0; k < i; k++) s -= Lm[i * n + k]! * y[k]!;
    y[i] = s / Lm[i * n + i]!;
  }
  const x = new Float64Array(n);
  for (let i = n - 1; i >= 0; i--) {
    let s = y[i]!;
    for (let k = i + 1; k < n; k++) s -= Lm[k * n + i]! * x[k]!;
    x[i] = s / Lm[i * n + i]!;
  }
  return x;
}

/**
 * Least-squares AR(order) fitted on the one-step targets x[t], t in [from + order, to), each
 * predicted from its own past: minimises sum (x[t] - c - sum_k a_k x[t-k])^2.
 */
export function fitAutoregression(
  series: ArrayLike<number>,
  order: number,
  from = 0,
  to = series.length,
): Autoregression {
  if (!Number.isInteger(order) || order < 0)
    throw new SpecError('order', `must be a non-negative integer, got ${order}`);
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to > series.length)
    throw new SpecError('range', `[${from}, ${to}) is not within the series (${series.length})`);
  const n = order + 1;
  if (to - from - order < n)
    throw new SpecError('range', `has ${to - from - order} targets, fewer than the ${n} unknowns`);
  // Normal equations X^T X w = X^T y with rows [1, x[t-1], ..., x[t-order]].
  const A = new Float64Array(n * n);
  const b = new Float64Array(n);
  const row = new Float64Array(n);
  for (let t = from + order; t < to; t++) {
    row[0] = 1;
    for (let k = 1; k <= order; k++) row[k] = series[t - k]!;
    const y = series[t]!;
    for (let i = 0; i < n; i++) {
      b[i]! += row[i]! * y;
      for (let j = 0; j <= i; j++) A[i * n + j]! += row[i]! * row[j]!;
    }
  }
  for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) A[j * n + i] = A[i * n + j]!;
  const w = solveSpd(A, b, n);
  return { order, intercept: w[0]!, coefficients: w.slice(1) };
}

/** The AR's one-step prediction of x[t] from x[t-1], ..., x[t-order] (t >= order). */
export function predictAutoregression(
  ar: Autoregression,
  series: ArrayLike<number>,
  t: number,
): number {
  let s = ar.intercept;
  for (let k = 1; k <= ar.order; k++) s += ar.coefficients[k - 1]! * series[t - k]!;
  return s;
}

/** Root mean square of the AR's one-step errors over targets t in [from, to), from >= order. */
export function autoregressionRmse(
  ar: Autoregression,
  series: ArrayLike<number>,
  from: number,
  to: number,
): number {
  if (from < ar.order || to > series.length || to <= from)
    throw new SpecError('range', `[${from}, ${to}) needs order <= from < to <= ${series.length}`);
  let s = 0;
  for (let t = from; t < to; t++) s += (series[t]! - predictAutoregression(ar, series, t)) ** 2;
  return Math.sqrt(s / (to - from));
}

export interface SinesOptions {
  /** Periods in steps. @defaultValue [17, 29, 53] */
  periods?: readonly number[];
  /** Amplitudes, one per period. @defaultValue [1, 0.6, 0.4] */
  amplitudes?: readonly number[];
  /** Standard deviation of the i.i.d. gaussian noise added to each observation. @defaultValue 0.3 */
  noise?: number;
  /** Seed of the phases and the noise. @defaultValue 0 */
  seed?: number | bigint;
}

/**
 * x[t] = sum_m a_m sin(2 pi t / P_m + phi_m) + noise e_t, e_t ~ N(0, noise^2), phases uniform,
 * all from the counter-based generator. The sines are predictable from a long enough past; the
 * noise is not, so `noise` is the floor of any one-step predictor's RMSE.
 */
export function noisySines(steps: number, opts: SinesOptions = {}): Float64Array {
  const periods = opts.periods ?? [17, 29, 53];
  const amps = opts.amplitudes ?? [1, 0.6, 0.4];
  const noise = opts.noise ?? 0.3;
  if (!Number.isInteger(steps) || steps < 0)
    throw new SpecError('steps', `must be a non-negative integer, got ${steps}`);
  if (amps.length !== periods.length)
    throw new SpecError('amplitudes', `has ${amps.length} entries, periods has ${periods.length}`);
  if (!(noise >= 0)) throw new SpecError('noise', `must be >= 0, got ${noise}`);
  let halves: { seedLo: number; seedHi: number };
  try {
    halves = seedHalves(opts.seed ?? 0);
  } catch (e) {
    throw new SpecError('seed', (e as Error).message);
  }
  const { seedLo, seedHi } = halves;
  const phases = periods.map(
    (_, m) => 2 * Math.PI * uniformAt(m, 0, 0, STREAM_SINES, seedLo, seedHi),
  );
  const out = new Float64Array(steps);
  for (let t = 0; t < steps; t++) {
    let x = 0;
    for (let m = 0; m < periods.length; m++)
      x += amps[m]! * Math.sin((2 * Math.PI * t) / periods[m]! + phases[m]!);
    out[t] = x + noise * normalAt(t, 1, 0, STREAM_SINES, seedLo, seedHi);
  }
  return out;
}
