// The DyBM engine: parameters, FIFO queues, eligibility traces and the learning rule for a set of
// owned post-synaptic units. The single-process DyBM owns every unit; a shard (shard.ts) owns
// some, holds every synapse INTO them, and is told the rest (other shards' spikes, errors and LTD
// couplings) by messages. Both run this same code, so a sharded run that receives everything in
// time performs the same floating-point operations in the same order as the single process.
// Equations and notation: ../../DYBM.md.
//
// Float64 throughout: the nets are tiny, and the gradient checks and bit-for-bit comparisons are
// clearer without float32 rounding.
import { STREAM_SAMPLE, normalAt, uniformAt } from './random.js';
import type { ResolvedDyBMOptions, ResolvedDyBMSpec } from './spec.js';

/** The ring slot of time `time` in queues of length r. */
const slot = (time: number, r: number): number => ((time % r) + r) % r;

export class DyBMEngine {
  readonly n: number;
  /** Number of LTP and LTD decay rates. */
  readonly L: number;
  readonly K: number;
  /** Largest delay; each unit's queue keeps D + 1 frames (x[t], x[t-1], ..., x[t-D]). */
  readonly D: number;
  readonly R: number;
  readonly binary: boolean;
  readonly invVar: number;
  readonly lambda: Float64Array;
  readonly mu: Float64Array;
  /** Global indices of the owned units, ascending, and local[g] = their position (or -1). */
  readonly owned: Int32Array;
  readonly local: Int32Array;
  /**
   * The synapses into owned units, in the spec's canonical order (by post, then pre): synapse s
   * goes from pre[s] to owned unit post[s] (a local index) with delay[s]. Those into owned unit o
   * are inStart[o] .. inStart[o+1]; those from unit j into o are pairStart[o*n + j] .. next.
   * index[s] is the synapse's index in the whole network.
   */
  readonly S: number;
  readonly pre: Int32Array;
  readonly post: Int32Array;
  readonly delay: Int32Array;
  readonly index: Int32Array;
  readonly inStart: Int32Array;
  readonly pairStart: Int32Array;
  // Parameters: biases of the owned units, LTP weights u (S x L) and LTD weights v (S x K).
  readonly bias: Float64Array;
  readonly u: Float64Array;
  readonly v: Float64Array;
  // AdaGrad's running sums of squared gradients, one per parameter.
  readonly accBias: Float64Array;
  readonly accU: Float64Array;
  readonly accV: Float64Array;
  /** LTP traces alpha_sl of the owned synapses (S x L). */
  readonly alpha: Float64Array;
  /** Post-synaptic LTD traces gamma_jk of the owned units (O x K). */
  readonly gamma: Float64Array;
  /** Centring offsets (all zero unless options.centring): running means of alpha, beta, gamma. */
  readonly mAlpha: Float64Array;
  readonly mBeta: Float64Array;
  readonly mGamma: Float64Array;
  /** FIFO queues of every unit's past values (n x R ring); a value not yet known is 0. */
  readonly history: Float64Array;
  /** pw[k * (D + 1) + e] = mu_k^e. */
  private readonly pw: Float64Array;
  /** The step about to be predicted: queues hold x[t-1] ... x[t-D] (and x[t] once observed). */
  t = 0;
  // What other shards told this one: e_i[t] of their units (valid where extErrT[i] === t), and
  // the LTD couplings c_{j->i}[t] of the synapses they own (extC[i * n + j], valid where
  // extCT[i] === t).
  readonly extErr: Float64Array;
  readonly extErrT: Float64Array;
  readonly extC: Float64Array;
  readonly extCT: Float64Array;
  // Scratch for the rule, allocated once.
  private readonly gBias: Float64Array;
  private readonly gU: Float64Array;
  private readonly gV: Float64Array;

  constructor(
    readonly spec: ResolvedDyBMSpec,
    readonly options: ResolvedDyBMOptions,
    owned: ArrayLike<number>,
  ) {
    const n = spec.units;
    this.n = n;
    this.L = spec.ltpDecays.length;
    this.K = spec.ltdDecays.length;
    this.D = spec.maxDelay;
    this.R = this.D + 1;
    this.binary = spec.kind === 'binary';
    this.invVar = 1 / (spec.sigma * spec.sigma);
    this.lambda = spec.ltpDecays;
    this.mu = spec.ltdDecays;
    this.owned = Int32Array.from(owned);
    this.local = new Int32Array(n).fill(-1);
    this.owned.forEach((g, o) => (this.local[g] = o));
    const O = this.owned.length;
    const all = spec.synapses;
    const mine: number[] = [];
    for (let s = 0; s < all.post.length; s++) if (this.local[all.post[s]!]! >= 0) mine.push(s);
    const S = mine.length;
    this.S = S;
    this.index = Int32Array.from(mine);
    this.pre = Int32Array.from(mine, (s) => all.pre[s]!);
    this.post = Int32Array.from(mine, (s) => this.local[all.post[s]!]!);
    this.delay = Int32Array.from(mine, (s) => all.delay[s]!);
    this.inStart = new Int32Array(O + 1);
    this.pairStart = new Int32Array(O * n + 1);
    for (let s = 0; s < S; s++) {
      this.inStart[this.post[s]! + 1]!++;
      this.pairStart[this.post[s]! * n + this.pre[s]! + 1]!++;
    }
    for (let o = 0; o < O; o++) this.inStart[o + 1]! += this.inStart[o]!;
    for (let p = 0; p < O * n; p++) this.pairStart[p + 1]! += this.pairStart[p]!;
    this.bias = new Float64Array(O);
    this.u = new Float64Array(S * this.L);
    this.v = new Float64Array(S * this.K);
    this.accBias = new Float64Array(O);
    this.accU = new Float64Array(this.u.length);
    this.accV = new Float64Array(this.v.length);
    this.alpha = new Float64Array(this.u.length);
    this.gamma = new Float64Array(O * this.K);
    this.mAlpha = new Float64Array(this.u.length);
    this.mBeta = new Float64Array(this.v.length);
    this.mGamma = new Float64Array(this.gamma.length);
    this.history = new Float64Array(n * this.R);
    this.pw = new Float64Array(this.K * (this.D + 1));
    for (let k = 0; k < this.K; k++)
      for (let e = 0; e <= this.D; e++) this.pw[k * (this.D + 1) + e] = this.mu[k]! ** e;
    this.extErr = new Float64Array(n);
    this.extErrT = new Float64Array(n).fill(-1);
    this.extC = new Float64Array(n * n);
    this.extCT = new Float64Array(n).fill(-1);
    this.gBias = new Float64Array(O);
    this.gU = new Float64Array(this.u.length);
    this.gV = new Float64Array(this.v.length);
  }

  /** Value of unit i at time `time` as this engine knows it (0 if unknown or before the start). */
  valueAt(i: number, time: number): number {
    return this.history[i * this.R + slot(time, this.R)]!;
  }

  /** Records x_i[time]; time must be within the queue (t - D <= time <= t). */
  setValue(i: number, time: number, x: number): void {
    this.history[i * this.R + slot(time, this.R)] = x;
  }

  /**
   * beta_sk[t] of a synapse from unit i with delay d: i's spikes still in transit (sent at
   * t-d+1 .. t-1), each weighted mu_k^(g-1) where g >= 1 is the number of steps until it arrives.
   */
  beta(i: number, d: number, k: number): number {
    const { R, history, pw } = this;
    const row = k * (this.D + 1);
    const t = this.t;
    let b = 0;
    for (let r = 0; r <= d - 2; r++)
      b += pw[row + d - 2 - r]! * history[i * R + slot(t - 1 - r, R)]!;
    return b;
  }

  /**
   * c_{j->i}[t] = sum over the synapses s from j into owned unit oi of
   * sum_k v_sk mu_k^d_s (gamma_ik[t] - <gamma_ik>): the LTD term that unit j's spike at t would
   * meet there (the post unit spiked first).
   */
  coupling(j: number, oi: number): number {
    const { K, pw } = this;
    const from = this.pairStart[oi * this.n + j]!;
    const to = this.pairStart[oi * this.n + j + 1]!;
    let c = 0;
    for (let s = from; s < to; s++) {
      const d = this.delay[s]!;
      for (let k = 0; k < K; k++)
        c +=
          this.v[s * K + k]! *
          (pw[k * (this.D + 1) + d]! * (this.gamma[oi * K + k]! - this.mGamma[oi * K + k]!));
    }
    return c;
  }

  /** The coupling c_{j->i}[t] for any post i: computed if owned, else as received (or 0). */
  private couplingInto(j: number, i: number): number {
    const oi = this.local[i]!;
    if (oi >= 0) return this.coupling(j, oi);
    return this.extCT[i] === this.t ? this.extC[i * this.n + j]! : 0;
  }

  /**
   * The field F_j[t] of owned unit o: b_j + sum over synapses s into j of (sum_l u_sl alpha_sl -
   * sum_k v_sk beta_sk) - sum_i c_{j->i}, every trace less its centring offset. Binary:
   * p(x_j = 1) = sigmoid(F_j); gaussian: the mean of x_j.
   */
  field(o: number): number {
    const { n, L, K, u, v, alpha, mAlpha, mBeta } = this;
    let f = this.bias[o]!;
    for (let s = this.inStart[o]!; s < this.inStart[o + 1]!; s++) {
      for (let l = 0; l < L; l++) f += u[s * L + l]! * (alpha[s * L + l]! - mAlpha[s * L + l]!);
      const i = this.pre[s]!;
      const d = this.delay[s]!;
      for (let k = 0; k < K; k++) f -= v[s * K + k]! * (this.beta(i, d, k) - mBeta[s * K + k]!);
    }
    if (K > 0) {
      const j = this.owned[o]!;
      for (let i = 0; i < n; i++) f -= this.couplingInto(j, i);
    }
    return f;
  }

  /** p(x_j[t] = 1 | history) (binary) or the mean of x_j[t] (gaussian), for each owned unit. */
  predict(out: Float64Array): Float64Array {
    for (let o = 0; o < this.owned.length; o++) {
      const f = this.field(o);
      out[o] = this.binary ? 1 / (1 + Math.exp(-f)) : f;
    }
    return out;
  }

  /** The error signal d log p / d F_j: x - p (binary) or (x - mean) / sigma^2 (gaussian). */
  error(x: number, prediction: number): number {
    return this.binary ? x - prediction : (x - prediction) * this.invVar;
  }

  /**
   * Gradient of log p(x[t] | x[<t]) with respect to the owned parameters, given every unit's
   * error e (length n; entries of units this engine has not heard from are 0). For synapse s from
   * i into j:  d/db_j = e_j,  d/du_sl = e_j alpha_sl,  d/dv_sk = -(e_j beta_sk + e_i mu_k^d_s
   * gamma_jk), every trace less its centring offset. Each entry reads only its own synapse's
   * traces, offsets and queue, the post unit's gamma, and the two units' errors.
   */
  gradient(e: ArrayLike<number>, gBias: Float64Array, gU: Float64Array, gV: Float64Array): void {
    const { L, K, alpha, pw, mAlpha, mBeta, mGamma, gamma } = this;
    for (let o = 0; o < this.owned.length; o++) gBias[o] = e[this.owned[o]!]!;
    for (let s = 0; s < this.S; s++) {
      const o = this.post[s]!;
      const ej = e[this.owned[o]!]!;
      for (let l = 0; l < L; l++) gU[s * L + l] = ej * (alpha[s * L + l]! - mAlpha[s * L + l]!);
      if (K === 0) continue;
      const i = this.pre[s]!;
      const d = this.delay[s]!;
      const ei = e[i]!;
      for (let k = 0; k < K; k++) {
        const post = pw[k * (this.D + 1) + d]! * (gamma[o * K + k]! - mGamma[o * K + k]!);
        gV[s * K + k] = -(ej * (this.beta(i, d, k) - mBeta[s * K + k]!) + ei * post);
      }
    }
  }

  /** One step of the learning rule (stochastic gradient ascent on log p(x[t] | x[<t])). */
  update(e: ArrayLike<number>): void {
    this.gradient(e, this.gBias, this.gU, this.gV);
    this.apply(this.bias, this.accBias, this.gBias);
    this.apply(this.u, this.accU, this.gU);
    this.apply(this.v, this.accV, this.gV);
    if (this.options.centring) this.moveOffsets();
  }

  private apply(p: Float64Array, acc: Float64Array, g: Float64Array): void {
    const lr = this.options.learningRate;
    if (this.options.optimizer === 'sgd') {
      for (let s = 0; s < p.length; s++) p[s] = p[s]! + lr * g[s]!;
      return;
    }
    for (let s = 0; s < p.length; s++) {
      const gs = g[s]!;
      if (gs === 0) continue;
      const a = acc[s]! + gs * gs;
      acc[s] = a;
      if (a > 0) p[s] = p[s]! + (lr * gs) / Math.sqrt(a);
    }
  }

  /** Each offset moves towards its trace's current value: m <- m + rate (trace - m). */
  private moveOffsets(): void {
    const { K, alpha, mAlpha, mBeta, mGamma, gamma } = this;
    const r = this.options.centringRate;
    for (let s = 0; s < alpha.length; s++) mAlpha[s] = mAlpha[s]! + r * (alpha[s]! - mAlpha[s]!);
    for (let s = 0; s < gamma.length; s++) mGamma[s] = mGamma[s]! + r * (gamma[s]! - mGamma[s]!);
    for (let s = 0; s < this.S; s++) {
      const i = this.pre[s]!;
      const d = this.delay[s]!;
      for (let k = 0; k < K; k++)
        mBeta[s * K + k] = mBeta[s * K + k]! + r * (this.beta(i, d, k) - mBeta[s * K + k]!);
    }
  }

  /**
   * Moves from t to t+1 once x[t] is in the queues: alpha_sl <- lambda_l alpha_sl + x_i[t+1-d_s]
   * (the spike that arrives at t+1), gamma_jk <- mu_k gamma_jk + x_j[t]; then the queue slot of
   * t+1 is cleared for values still to come.
   */
  advance(): void {
    const { L, K, R, alpha, gamma, history, lambda, mu } = this;
    const t = this.t;
    for (let s = 0; s < this.S; s++) {
      const xi = history[this.pre[s]! * R + slot(t + 1 - this.delay[s]!, R)]!;
      for (let l = 0; l < L; l++) alpha[s * L + l] = lambda[l]! * alpha[s * L + l]! + xi;
    }
    for (let o = 0; o < this.owned.length; o++) {
      const xj = history[this.owned[o]! * R + slot(t, R)]!;
      for (let k = 0; k < K; k++) gamma[o * K + k] = mu[k]! * gamma[o * K + k]! + xj;
    }
    this.t = t + 1;
    const next = slot(t + 1, R);
    for (let i = 0; i < this.n; i++) history[i * R + next] = 0;
  }

  /** Forgets the past: empty queues, zero traces, t = 0. Parameters and offsets are kept. */
  reset(): void {
    this.history.fill(0);
    this.alpha.fill(0);
    this.gamma.fill(0);
    this.extErrT.fill(-1);
    this.extCT.fill(-1);
    this.t = 0;
  }
}

/** The value a generating unit takes: shared by DyBM.generate and the shards. */
export function decide(
  binary: boolean,
  mode: 'mostLikely' | 'sample',
  p: number,
  sigma: number,
  unit: number,
  t: number,
  seedLo: number,
  seedHi: number,
): number {
  if (mode === 'mostLikely') return binary ? (p > 0.5 ? 1 : 0) : p;
  if (binary) return uniformAt(unit, t, 0, STREAM_SAMPLE, seedLo, seedHi) < p ? 1 : 0;
  return p + sigma * normalAt(unit, t, 1, STREAM_SAMPLE, seedLo, seedHi);
}
