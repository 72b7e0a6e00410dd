// The structure and learning options of a dynamic Boltzmann machine (DyBM), validated once at the
// API boundary. The model and its equations: ../../DYBM.md.
import { seedHalves } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import { quote } from '../quote.js';
import { STREAM_DELAYS, uniformAt } from './random.js';

/** 'binary': Bernoulli units with values in {0, 1}. 'gaussian': real values, x ~ N(mean, sigma^2). */
export type DyBMKind = 'binary' | 'gaussian';

export interface DyBMSpec {
  /** Number of (visible) units N. */
  units: number;
  /** @defaultValue 'binary' */
  kind?: DyBMKind;
  /**
   * Conduction delays in steps (integers >= 1) of the synapses: one number gives every ordered
   * pair (i, j), i = j included, one synapse of that delay; or N x N entries, row-major by
   * pre-synaptic unit (entry i * N + j is from i to j), each a delay (one synapse), a list of
   * delays (one synapse each) or [] (no synapse).
   */
  delays: number | ArrayLike<number> | readonly (number | readonly number[])[];
  /** Decay rates lambda_l in [0, 1) of the LTP eligibility traces. @defaultValue [0.5] */
  ltpDecays?: readonly number[];
  /** Decay rates mu_k in [0, 1) of the LTD traces; [] turns LTD off. @defaultValue [0.5] */
  ltdDecays?: readonly number[];
  /** Standard deviation of a gaussian unit around its mean (not learned). @defaultValue 1 */
  sigma?: number;
}

export interface DyBMOptions {
  /**
   * 'sgd': theta += learningRate * g. 'adagrad': theta += learningRate * g / sqrt(sum of g^2 so
   * far), per parameter (Duchi et al. 2011; what Osogami & Otsuka used). @defaultValue 'adagrad'
   */
  optimizer?: 'sgd' | 'adagrad';
  /** @defaultValue 1 for adagrad, 0.01 for sgd */
  learningRate?: number;
  /** Initial biases and weights are drawn from N(0, initStd^2). @defaultValue 0 (all zero) */
  initStd?: number;
  /** Seed of the initial parameters and of sampled generation. @defaultValue 0 */
  seed?: number | bigint;
  /**
   * Centre every trace on its running mean: the field and the rule use alpha - <alpha>,
   * beta - <beta> and gamma - <gamma> (each mean kept by its synapse or unit, updated after each
   * learning step). The same family of models (the biases absorb the means), better conditioned
   * for the gradient (Melchior, Fischer & Wiskott 2016 for Boltzmann machines). @defaultValue false
   */
  centring?: boolean;
  /** Rate of the running means. @defaultValue 0.01 */
  centringRate?: number;
}

export interface ResolvedDyBMSpec {
  units: number;
  kind: DyBMKind;
  /**
   * The synapses in canonical order: by post-synaptic unit, then pre-synaptic unit, then as
   * listed. Synapse s goes from pre[s] to post[s] with delay[s].
   */
  synapses: { pre: Int32Array; post: Int32Array; delay: Int32Array };
  /** The delays as given, normalised to N x N lists. */
  delays: number[][];
  ltpDecays: Float64Array;
  ltdDecays: Float64Array;
  sigma: number;
  /** Smallest and largest delay (both 1 when there is no synapse). */
  minDelay: number;
  maxDelay: number;
}

export interface ResolvedDyBMOptions {
  optimizer: 'sgd' | 'adagrad';
  learningRate: number;
  initStd: number;
  seed: number | bigint;
  seedLo: number;
  seedHi: number;
  centring: boolean;
  centringRate: number;
}

/** Longest delay accepted; the FIFO queues hold maxDelay + 1 frames per unit. */
export const DYBM_MAX_DELAY = 4096;

/**
 * Most synapses of a DyBM: checked before any is built, so that a spec of a few characters
 * (`units: 100000, delays: 1`) cannot allocate without bound. A service's limits are lower still.
 */
export const DYBM_MAX_SYNAPSES = 1 << 24;

function decays(v: unknown, field: string, def: number[]): Float64Array {
  if (v === undefined) return Float64Array.from(def);
  if (!Array.isArray(v)) throw new SpecError(field, 'must be an array of numbers in [0, 1)');
  return Float64Array.from(v, (r: unknown, i) => {
    if (typeof r !== 'number' || !(r >= 0 && r < 1))
      throw new SpecError(`${field}[${i}]`, `must be a number in [0, 1), got ${quote(r)}`);
    return r;
  });
}

/** Checks a DyBM spec and fills in defaults. @throws SpecError naming the field at fault. */
export function validateDyBMSpec(spec: DyBMSpec, path = 'spec'): ResolvedDyBMSpec {
  const n = spec.units;
  if (!Number.isInteger(n) || n < 1)
    throw new SpecError(`${path}.units`, `must be a positive integer, got ${quote(n)}`);
  const kind = spec.kind ?? 'binary';
  if (kind !== 'binary' && kind !== 'gaussian')
    throw new SpecError(`${path}.kind`, "must be 'binary' or 'gaussian'");
  const d = spec.delays;
  const delays: number[][] = [];
  if ((typeof d === 'number' ? n * n : 0) > DYBM_MAX_SYNAPSES)
    throw new SpecError(
      `${path}.units`,
      `give ${n} x ${n} synapses, more than the ${DYBM_MAX_SYNAPSES} a DyBM may have`,
    );
  if (typeof d === 'number') for (let s = 0; s < n * n; s++) delays.push([d]);
  else if (d && typeof d === 'object' && typeof d.length === 'number') {
    if (d.length !== n * n)
      throw new SpecError(`${path}.delays`, `has ${d.length} entries, expected N x N = ${n * n}`);
    for (let s = 0; s < n * n; s++) {
      const e = d[s]!;
      delays.push(typeof e === 'number' ? [e] : Array.isArray(e) ? [...(e as number[])] : [NaN]);
    }
  } else throw new SpecError(`${path}.delays`, 'must be a number or N x N entries');
  let minDelay = Infinity;
  let maxDelay = 0;
  delays.forEach((list, s) => {
    for (const v of list) {
      if (!Number.isInteger(v) || v < 1 || v > DYBM_MAX_DELAY) {
        const at = typeof d === 'number' ? '' : `[${s}]`;
        throw new SpecError(
          `${path}.delays${at}`,
          `must hold integers in [1, ${DYBM_MAX_DELAY}], got ${quote(v)}`,
        );
      }
      if (v < minDelay) minDelay = v;
      if (v > maxDelay) maxDelay = v;
    }
  });
  if (maxDelay === 0) minDelay = maxDelay = 1;
  const pre: number[] = [];
  const post: number[] = [];
  const delay: number[] = [];
  for (let j = 0; j < n; j++)
    for (let i = 0; i < n; i++)
      for (const v of delays[i * n + j]!) {
        pre.push(i);
        post.push(j);
        delay.push(v);
      }
  const synapses = {
    pre: Int32Array.from(pre),
    post: Int32Array.from(post),
    delay: Int32Array.from(delay),
  };
  const sigma = spec.sigma ?? 1;
  if (!(sigma > 0 && Number.isFinite(sigma)))
    throw new SpecError(`${path}.sigma`, `must be a finite number > 0, got ${quote(sigma)}`);
  return {
    units: n,
    kind,
    synapses,
    delays,
    ltpDecays: decays(spec.ltpDecays, `${path}.ltpDecays`, [0.5]),
    ltdDecays: decays(spec.ltdDecays, `${path}.ltdDecays`, [0.5]),
    sigma,
    minDelay,
    maxDelay,
  };
}

/** Checks learning options and fills in defaults. @throws SpecError */
export function validateDyBMOptions(opts: DyBMOptions, path = 'options'): ResolvedDyBMOptions {
  const optimizer = opts.optimizer ?? 'adagrad';
  if (optimizer !== 'sgd' && optimizer !== 'adagrad')
    throw new SpecError(`${path}.optimizer`, "must be 'sgd' or 'adagrad'");
  const learningRate = opts.learningRate ?? (optimizer === 'adagrad' ? 1 : 0.01);
  if (!(learningRate >= 0 && Number.isFinite(learningRate)))
    throw new SpecError(
      `${path}.learningRate`,
      `must be a finite number >= 0, got ${quote(learningRate)}`,
    );
  const initStd = opts.initStd ?? 0;
  if (!(initStd >= 0 && Number.isFinite(initStd)))
    throw new SpecError(`${path}.initStd`, `must be a finite number >= 0, got ${quote(initStd)}`);
  const seed = opts.seed ?? 0;
  let halves: { seedLo: number; seedHi: number };
  try {
    halves = seedHalves(seed);
  } catch (e) {
    throw new SpecError(`${path}.seed`, (e as Error).message);
  }
  const centring = opts.centring ?? false;
  if (typeof centring !== 'boolean') throw new SpecError(`${path}.centring`, 'must be a boolean');
  const centringRate = opts.centringRate ?? 0.01;
  if (!(centringRate > 0 && centringRate <= 1))
    throw new SpecError(`${path}.centringRate`, `must be in (0, 1], got ${quote(centringRate)}`);
  return { optimizer, learningRate, initStd, seed, ...halves, centring, centringRate };
}

/**
 * N x N delays drawn uniformly from [min, max] by the counter-based generator (what Osogami &
 * Otsuka did), for DyBMSpec.delays.
 */
export function randomDelays(
  n: number,
  min: number,
  max: number,
  seed: number | bigint,
): Int32Array {
  if (!Number.isInteger(n) || n < 1)
    throw new SpecError('n', `must be a positive integer, got ${n}`);
  if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max < min)
    throw new SpecError('delays', `range must be integers 1 <= min <= max, got [${min}, ${max}]`);
  let halves: { seedLo: number; seedHi: number };
  try {
    halves = seedHalves(seed);
  } catch (e) {
    throw new SpecError('seed', (e as Error).message);
  }
  const { seedLo, seedHi } = halves;
  const out = new Int32Array(n * n);
  for (let s = 0; s < n * n; s++) {
    const u = uniformAt(s, 0, 0, STREAM_DELAYS, seedLo, seedHi);
    out[s] = min + Math.min(max - min, Math.floor(u * (max - min + 1)));
  }
  return out;
}
