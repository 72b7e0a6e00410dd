// Annealed importance sampling (Neal 2001; for RBMs Salakhutdinov & Murray 2008) for log Z,
// and reverse AIS (Burda, Grosse & Salakhutdinov 2015) from model samples.
//
// Path. The base model has the network's architecture with every weight and lateral zero and
// every bias zero except the visible layer's: its biases come from the data mean
// (Bernoulli log(p/(1-p)) with p clipped to [clip, 1-clip]; Ising atanh(m) with m clipped to
// [-1+2 clip, 1-2 clip]; Gaussian the mean itself), or are given, or are zero. log Z_base is a
// sum of one-unit partition functions. The intermediate models interpolate the parameters,
// theta_beta = (1-beta) theta_base + beta theta_target, for beta on a schedule 0 = beta_0 < ... <
// beta_K = 1 (default: 500 steps to 0.5, 4000 to 0.9, 10000 to 1, as in Salakhutdinov & Murray
// 2008; `steps` rescales these, `betas` replaces them).
//
// State and weights. One set S of layers is summed out analytically (the layers without
// laterals of one colour group of network.colouring(), preferring a group without the visible
// layer: for an RBM S = {hidden}, for a deep BM v-h1-h2 S = {h1}); the state is the other layers
// and log p*_beta(state) = log sum_S exp(-E_beta) is exact at every beta. A run starts from an
// exact sample of the base model, adds log p*_{k}(x) - log p*_{k-1}(x) at each step and then
// moves x by one Gibbs sweep at beta_k that leaves p_beta_k invariant: S given the rest, then the
// colour groups of the rest in order (layers with laterals unit by unit). The estimate is
// log Z = log Z_base + log mean_i w_i, unbiased in w and, by Jensen, a stochastic lower bound in
// log Z.
//
// Reverse AIS runs the same chain backwards from states that are (approximately) samples of the
// target, accumulating log p*_{k-1}(x) - log p*_k(x): mean w estimates Z_base / Z, so
// log Z = log Z_base - log mean w is a stochastic upper bound when the start states are exact
// samples. Together they bracket log Z.
//
// Uncertainty. logZLow/logZHigh are log Z -/+ 3 standard errors of log(mean w) by the delta
// method: se(log mean w) ~ std(w) / (sqrt(runs) mean(w)), with w rescaled by its maximum. It
// describes the spread of the estimate over repetitions, not its bias; when ess is small
// compared with runs the weights are dominated by few runs and the interval is unreliable.
//
// Randomness: the counter-based generator with key `seed`; the draw for unit u (global index)
// of run r at temperature index k uses counter (u, r, k, stream), stream fixed per direction
// (and per purpose for the uniforms of sequential lateral updates), so results depend on
// (seed, runs, schedule) only.
import { UnitType } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { Network, State } from '../network.js';
import { meanNegFreeEnergy } from './exact.js';
import { blockRowsFor, checkData, factorisingHidden, resolveVisible } from './common.js';
import { AisChain } from './ais-chain.js';

const STREAM_FORWARD = 0x41495346; // 'AISF'
const STREAM_REVERSE = 0x41495352; // 'AISR'

export interface AisOptions {
  /** Full schedule, non-decreasing from 0 to 1 (length K + 1). Overrides steps. */
  betas?: ArrayLike<number>;
  /**
   * Number of transitions K of the default schedule; it keeps the proportions 500 : 4000 :
   * 10000 of its three segments. @defaultValue 14500
   */
  steps?: number;
  /** Independent runs (chains). @defaultValue 100 */
  runs?: number;
  /** @defaultValue 0 */
  seed?: number;
  /** The visible layer (gets the data-based base biases). @defaultValue 'v', else the first layer */
  visible?: string;
  /** Base-model biases of the visible layer. Overrides data. */
  baseVisibleBias?: ArrayLike<number>;
  /** Data (rows x visible size) whose mean sets the base visible biases. */
  data?: Float32Array;
  dataRows?: number;
  /** Clipping of the data mean before the logit. @defaultValue 1e-3 */
  clip?: number;
}

export interface LogWeightStats {
  mean: number;
  std: number;
  min: number;
  max: number;
}

export interface AisResult {
  /** Estimate of log Z (nats). */
  logZ: number;
  /** logZ - 3 se and logZ + 3 se, se the delta-method standard error of log mean w. */
  logZLow: number;
  logZHigh: number;
  /** The delta-method standard error. */
  logZStd: number;
  /** log Z of the base model. */
  logZBase: number;
  /** log importance weight of each run. */
  logWeights: Float64Array;
  logWeightStats: LogWeightStats;
  /** Effective sample size (sum w)^2 / sum w^2, in [1, runs]. */
  ess: number;
  runs: number;
  /** Number of transitions K (the schedule has K + 1 temperatures). */
  steps: number;
  direction: 'forward' | 'reverse';
}

/**
 * The default schedule with `steps` transitions: linear in three segments 0 -> 0.5 -> 0.9 -> 1
 * with step counts in the proportion 500 : 4000 : 10000 (exactly those for steps = 14500).
 */
export function defaultAisBetas(steps = 14500): Float64Array {
  if (!Number.isInteger(steps) || steps < 1)
    throw new SpecError('steps', 'must be a positive integer');
  const betas = new Float64Array(steps + 1);
  if (steps < 3) {
    for (let i = 0; i <= steps; i++) betas[i] = i / steps;
    return betas;
  }
  const n1 = Math.max(1, Math.round((steps * 500) / 14500));
  const n2 = Math.max(1, Math.round((steps * 4000) / 14500));
  const n3 = steps - n1 - n2;
  let i = 0;
  const seg = (a: number, b: number, n: number): void => {
    for (let j = 0; j < n; j++) betas[i++] = a + ((b - a) * j) / n;
  };
  seg(0, 0.5, n1);
  seg(0.5, 0.9, n2);
  seg(0.9, 1, n3);
  betas[steps] = 1;
  return betas;
}

function scheduleOf(opts: AisOptions): Float64Array {
  if (opts.betas === undefined) return defaultAisBetas(opts.steps ?? 14500);
  const b = Float64Array.from(opts.betas as ArrayLike<number>);
  if (b.length < 2) throw new SpecError('betas', 'must hold at least 2 values');
  if (b[0] !== 0 || b[b.length - 1] !== 1)
    throw new SpecError('betas', 'must start at 0 and end at 1');
  for (let i = 1; i < b.length; i++) {
    if (!(b[i]! >= b[i - 1]!)) throw new SpecError('betas', 'must be non-decreasing');
  }
  return b;
}

/** Base-model biases for the visible layer (see the file header). */
export function aisBaseVisibleBias(
  network: Network,
  visible: number,
  data: Float32Array,
  rows: number,
  clip = 1e-3,
): Float32Array {
  const k = network.kernels;
  const layer = network.layers[visible]!;
  const n = layer.size;
  checkData(network, visible, data, rows);
  if (rows < 1) throw new SpecError('dataRows', 'must be positive');
  if (!(clip > 0 && clip < 0.5)) throw new SpecError('clip', 'must be in (0, 0.5)');
  const B = blockRowsFor(n, rows);
  const buf = k.alloc(B * n);
  const mean = k.alloc(n);
  for (let r0 = 0; r0 < rows; r0 += B) {
    const nr = Math.min(B, rows - r0);
    buf.set(data.subarray(r0 * n, (r0 + nr) * n));
    k.upload(buf);
    k.colSums(nr, n, buf, n, 1 / rows, r0 === 0 ? 0 : 1, mean);
  }
  k.download(mean);
  const out = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    const m = mean[j]!;
    if (layer.type === UnitType.Bernoulli) {
      const p = Math.min(1 - clip, Math.max(clip, m));
      out[j] = Math.log(p / (1 - p));
    } else if (layer.type === UnitType.Ising) {
      out[j] = Math.atanh(Math.min(1 - 2 * clip, Math.max(-1 + 2 * clip, m)));
    } else {
      out[j] = m;
    }
  }
  return out;
}

function summarise(
  lw: Float64Array,
  logZBase: number,
  direction: 'forward' | 'reverse',
  steps: number,
): AisResult {
  const n = lw.length;
  let M = -Infinity;
  let min = Infinity;
  let sum = 0;
  for (const v of lw) {
    M = Math.max(M, v);
    min = Math.min(min, v);
    sum += v;
  }
  const meanLw = sum / n;
  let varLw = 0;
  for (const v of lw) varLw += (v - meanLw) ** 2;
  const stdLw = n > 1 ? Math.sqrt(varLw / (n - 1)) : 0;
  let s1 = 0;
  let s2 = 0;
  for (const v of lw) {
    const w = Math.exp(v - M);
    s1 += w;
    s2 += w * w;
  }
  const m = s1 / n;
  const varW = n > 1 ? Math.max(0, (s2 - n * m * m) / (n - 1)) : Infinity;
  const se = Math.sqrt(varW / n) / m;
  const logMean = M + Math.log(m);
  const logZ = direction === 'forward' ? logZBase + logMean : logZBase - logMean;
  return {
    logZ,
    logZLow: logZ - 3 * se,
    logZHigh: logZ + 3 * se,
    logZStd: se,
    logZBase,
    logWeights: lw,
    logWeightStats: { mean: meanLw, std: stdLw, min, max: M },
    ess: (s1 * s1) / s2,
    runs: n,
    steps,
    direction,
  };
}

function checkRuns(runs: number): void {
  if (!Number.isInteger(runs) || runs < 1)
    throw new SpecError('runs', 'must be a positive integer');
}

function baseBias(network: Network, vis: number, opts: AisOptions): Float32Array | null {
  if (opts.baseVisibleBias !== undefined) {
    const n = network.layers[vis]!.size;
    if (opts.baseVisibleBias.length !== n)
      throw new SpecError('baseVisibleBias', `must hold ${n} values`);
    return Float32Array.from(opts.baseVisibleBias);
  }
  if (opts.data !== undefined) {
    const rows = opts.dataRows ?? Math.floor(opts.data.length / network.layers[vis]!.size);
    return aisBaseVisibleBias(network, vis, opts.data, rows, opts.clip);
  }
  return null;
}

/** Forward AIS estimate of log Z (see the file header). */
export function ais(network: Network, opts: AisOptions = {}): AisResult {
  const runs = opts.runs ?? 100;
  checkRuns(runs);
  const seed = opts.seed ?? 0;
  const betas = scheduleOf(opts);
  const K = betas.length - 1;
  const vis = resolveVisible(network, opts.visible);
  const chain = new AisChain(network, runs, baseBias(network, vis, opts), vis);
  chain.sampleBase(seed, STREAM_FORWARD);
  chain.computeStats();
  const lw = new Float64Array(runs);
  const a = new Float64Array(runs);
  const b = new Float64Array(runs);
  for (let t = 1; t <= K; t++) {
    if (betas[t] !== betas[t - 1]) {
      chain.logp(betas[t]!, a);
      chain.logp(betas[t - 1]!, b);
      for (let r = 0; r < runs; r++) lw[r] = lw[r]! + a[r]! - b[r]!;
    }
    if (t < K) chain.transition(betas[t]!, seed, STREAM_FORWARD, t);
  }
  return summarise(lw, chain.logZBase, 'forward', K);
}

/**
 * Reverse AIS from start states that sample the target model (e.g. long Gibbs or persistent
 * chains): startStates is a State (one buffer per layer) whose first `runs` rows are used
 * (default: all rows of the visible layer's buffer). Only the layers AIS keeps as its state are
 * read (the summed-out ones are resampled). Returns a log Z estimate that is a stochastic upper
 * bound when the starts are exact samples.
 */
export function reverseAis(network: Network, startStates: State, opts: AisOptions = {}): AisResult {
  const vis = resolveVisible(network, opts.visible);
  const nv = network.layers[vis]!.size;
  const runs = opts.runs ?? Math.floor((startStates[vis]?.length ?? 0) / nv);
  checkRuns(runs);
  if (startStates.length !== network.layers.length) {
    throw new SpecError('startStates', `must hold one buffer per layer (${network.layers.length})`);
  }
  const seed = opts.seed ?? 0;
  const betas = scheduleOf(opts);
  const K = betas.length - 1;
  const chain = new AisChain(network, runs, baseBias(network, vis, opts), vis);
  chain.setState(startStates);
  chain.computeStats();
  const lw = new Float64Array(runs);
  const a = new Float64Array(runs);
  const b = new Float64Array(runs);
  for (let t = K; t >= 1; t--) {
    if (betas[t] !== betas[t - 1]) {
      chain.logp(betas[t - 1]!, a);
      chain.logp(betas[t]!, b);
      for (let r = 0; r < runs; r++) lw[r] = lw[r]! + a[r]! - b[r]!;
    }
    if (t - 1 > 0) chain.transition(betas[t - 1]!, seed, STREAM_REVERSE, t - 1);
  }
  return summarise(lw, chain.logZBase, 'reverse', K);
}

export interface AisLogLikelihood {
  /** mean(-F(v)) - logZ, nats per example. */
  logLikelihood: number;
  /** mean(-F(v)) - logZHigh and mean(-F(v)) - logZLow. */
  logLikelihoodLow: number;
  logLikelihoodHigh: number;
  meanNegFreeEnergy: number;
  ais: AisResult;
}

/**
 * Average log-likelihood of data (rows x visible size) in nats per example, with log Z from
 * forward AIS (base visible biases from this data unless opts gives them): a stochastic upper
 * bound on the true value, since AIS underestimates log Z in expectation. Needs a network where
 * the free energy is tractable (see freeEnergy).
 */
export function aisLogLikelihood(
  network: Network,
  data: Float32Array,
  rows: number,
  opts: AisOptions = {},
): AisLogLikelihood {
  const vis = resolveVisible(network, opts.visible);
  factorisingHidden(network, vis, 'aisLogLikelihood');
  checkData(network, vis, data, rows);
  const m = meanNegFreeEnergy(network, network.layers[vis]!.name, data, rows);
  const withData =
    opts.baseVisibleBias === undefined && opts.data === undefined
      ? { ...opts, data, dataRows: rows }
      : opts;
  const res = ais(network, withData);
  return {
    logLikelihood: m - res.logZ,
    logLikelihoodLow: m - res.logZHigh,
    logLikelihoodHigh: m - res.logZLow,
    meanNegFreeEnergy: m,
    ais: res,
  };
}
