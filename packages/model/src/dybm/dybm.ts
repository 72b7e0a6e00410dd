// The dynamic Boltzmann machine (Osogami & Otsuka, Sci. Rep. 5:14149, 2015) in one process:
// binary or gaussian units, conduction delays, FIFO queues, LTP/LTD eligibility traces, and
// online learning by the STDP-form maximum-likelihood rule. Equations: ../../DYBM.md.
import { SpecError } from '../errors.js';
import { DyBMEngine, decide } from './engine.js';
import { STREAM_INIT, normalAt } from './random.js';
import {
  type DyBMOptions,
  type DyBMSpec,
  type ResolvedDyBMOptions,
  type ResolvedDyBMSpec,
  validateDyBMOptions,
  validateDyBMSpec,
} from './spec.js';

/** A named array of a DyBM's parameters or state. */
export interface DyBMArray {
  data: Float64Array;
  shape: number[];
}

export interface GenerateOptions {
  /**
   * 'mostLikely': binary x_j = 1 where p_j > 1/2, gaussian x_j = mean. 'sample': binary
   * x_j ~ Bernoulli(p_j), gaussian x_j ~ N(mean, sigma^2), by the counter-based generator at
   * (unit, step). @defaultValue 'mostLikely'
   */
  mode?: 'mostLikely' | 'sample';
  /** Seed of the draws. @defaultValue the model's seed */
  seed?: number | bigint;
}

/** The JSON form of a DyBM (spec, options, parameters and state); see DyBM.toJSON. */
export interface DyBMSnapshot {
  format: 'spinmesh-dybm';
  version: 1;
  spec: Required<Omit<DyBMSpec, 'delays'>> & { delays: number[][] };
  options: {
    optimizer: 'sgd' | 'adagrad';
    learningRate: number;
    initStd: number;
    seed: string;
    centring: boolean;
    centringRate: number;
  };
  arrays: Record<string, { shape: number[]; data: number[] }>;
}

export class DyBM {
  readonly spec: ResolvedDyBMSpec;
  readonly options: ResolvedDyBMOptions;
  /** The engine owning every unit; shard.ts splits it. Not part of the public API. */
  readonly engine: DyBMEngine;
  private readonly e: Float64Array;

  /** @throws SpecError for an invalid spec or options. */
  constructor(spec: DyBMSpec, opts: DyBMOptions = {}) {
    this.spec = validateDyBMSpec(spec);
    this.options = validateDyBMOptions(opts);
    const n = this.spec.units;
    this.engine = new DyBMEngine(
      this.spec,
      this.options,
      Int32Array.from({ length: n }, (_, i) => i),
    );
    this.e = new Float64Array(n);
    const std = this.options.initStd;
    if (std > 0) {
      const { seedLo, seedHi } = this.options;
      [this.engine.bias, this.engine.u, this.engine.v].forEach((p, id) => {
        for (let s = 0; s < p.length; s++)
          p[s] = std * normalAt(s, id, 0, STREAM_INIT, seedLo, seedHi);
      });
    }
  }

  get units(): number {
    return this.spec.units;
  }

  /** Steps seen since the last reset: the index of the frame predicted next. */
  get step(): number {
    return this.engine.t;
  }

  private checkFrame(x: ArrayLike<number>, field: string): void {
    const n = this.spec.units;
    if (x.length !== n)
      throw new SpecError(field, `has ${x.length} values, the DyBM has ${n} units`);
    const binary = this.engine.binary;
    for (let j = 0; j < n; j++) {
      const v = x[j]!;
      if (binary ? v !== 0 && v !== 1 : !Number.isFinite(v))
        throw new SpecError(
          `${field}[${j}]`,
          `is ${v}; ${binary ? 'binary values must be 0 or 1' : 'values must be finite'}`,
        );
    }
  }

  /** p(x_j[t] = 1 | x[<t]) for binary units, the mean of x_j[t] for gaussian ones. */
  predict(): Float64Array {
    return this.engine.predict(new Float64Array(this.spec.units));
  }

  /** The fields F_j[t] (log-odds of a spike, or the gaussian mean). */
  fields(): Float64Array {
    const out = new Float64Array(this.spec.units);
    for (let j = 0; j < out.length; j++) out[j] = this.engine.field(j);
    return out;
  }

  /**
   * Applies the learning rule for frame x[t] given the predictions p[t] every unit made (what
   * predict() returns), without advancing. learn(x) is predict, applyUpdate, advance.
   */
  applyUpdate(x: ArrayLike<number>, p: ArrayLike<number>): void {
    this.checkFrame(x, 'x');
    if (p.length !== this.spec.units)
      throw new SpecError('p', `has ${p.length} values, the DyBM has ${this.spec.units} units`);
    for (let j = 0; j < this.e.length; j++) this.e[j] = this.engine.error(x[j]!, p[j]!);
    this.engine.update(this.e);
  }

  /** Pushes frame x[t] into the queues and traces and moves to t + 1 (no learning). */
  advance(x: ArrayLike<number>): void {
    this.checkFrame(x, 'x');
    const t = this.engine.t;
    for (let j = 0; j < this.spec.units; j++) this.engine.setValue(j, t, x[j]!);
    this.engine.advance();
  }

  /** One online learning step on frame x[t]; returns the predictions made before seeing it. */
  learn(x: ArrayLike<number>): Float64Array {
    const p = this.predict();
    this.applyUpdate(x, p);
    this.advance(x);
    return p;
  }

  /** Learns every frame of a steps x N sequence, in order; returns the mean log p per frame. */
  train(data: ArrayLike<number>, steps: number): number {
    const n = this.spec.units;
    this.checkSequence(data, steps);
    let ll = 0;
    for (let t = 0; t < steps; t++) {
      const x = sliceFrame(data, t, n);
      ll += this.logLikelihood(x);
      this.learn(x);
    }
    return steps > 0 ? ll / steps : 0;
  }

  /** Feeds a steps x N sequence without learning (a cue, or a warm-up). */
  read(data: ArrayLike<number>, steps: number): void {
    this.checkSequence(data, steps);
    for (let t = 0; t < steps; t++) this.advance(sliceFrame(data, t, this.spec.units));
  }

  private checkSequence(data: ArrayLike<number>, steps: number): void {
    if (!Number.isInteger(steps) || steps < 0)
      throw new SpecError('steps', `must be a non-negative integer, got ${steps}`);
    if (data.length < steps * this.spec.units)
      throw new SpecError(
        'data',
        `has ${data.length} values, fewer than ${steps} frames of ${this.spec.units}`,
      );
  }

  /** log p(x[t] | x[<t]) of a candidate next frame. */
  logLikelihood(x: ArrayLike<number>): number {
    this.checkFrame(x, 'x');
    let ll = 0;
    for (let j = 0; j < this.spec.units; j++) {
      const f = this.engine.field(j);
      if (this.engine.binary) {
        const softplus = f > 0 ? f + Math.log1p(Math.exp(-f)) : Math.log1p(Math.exp(f));
        ll += x[j]! * f - softplus;
      } else {
        const s2 = this.spec.sigma * this.spec.sigma;
        ll += -((x[j]! - f) ** 2) / (2 * s2) - 0.5 * Math.log(2 * Math.PI * s2);
      }
    }
    return ll;
  }

  /**
   * The energy E(x[t] | x[<t]) of a candidate next frame: -sum_j F_j x_j (binary), or
   * sum_j (x_j - F_j)^2 / 2 sigma^2 (gaussian); p(x[t] | x[<t]) is proportional to exp(-E).
   */
  energy(x: ArrayLike<number>): number {
    this.checkFrame(x, 'x');
    let e = 0;
    for (let j = 0; j < this.spec.units; j++) {
      const f = this.engine.field(j);
      e += this.engine.binary ? -f * x[j]! : ((x[j]! - f) ** 2 * this.engine.invVar) / 2;
    }
    return e;
  }

  /**
   * Gradient of log p(x[t] | x[<t]) with respect to bias, u and v (shapes as in parameters()):
   * what learn(x) ascends.
   */
  gradient(x: ArrayLike<number>): { bias: Float64Array; u: Float64Array; v: Float64Array } {
    const p = this.predict();
    this.checkFrame(x, 'x');
    for (let j = 0; j < this.e.length; j++) this.e[j] = this.engine.error(x[j]!, p[j]!);
    const g = {
      bias: new Float64Array(this.engine.bias.length),
      u: new Float64Array(this.engine.u.length),
      v: new Float64Array(this.engine.v.length),
    };
    this.engine.gradient(this.e, g.bias, g.u, g.v);
    return g;
  }

  /** Generates `steps` frames from the current history (the model's own frames feed back). */
  generate(steps: number, opts: GenerateOptions = {}): Float64Array {
    if (!Number.isInteger(steps) || steps < 0)
      throw new SpecError('steps', `must be a non-negative integer, got ${steps}`);
    const mode = opts.mode ?? 'mostLikely';
    if (mode !== 'mostLikely' && mode !== 'sample')
      throw new SpecError('generate.mode', "must be 'mostLikely' or 'sample'");
    const { seedLo, seedHi } =
      opts.seed === undefined ? this.options : validateDyBMOptions({ seed: opts.seed }, 'generate');
    const n = this.spec.units;
    const out = new Float64Array(steps * n);
    const p = new Float64Array(n);
    for (let s = 0; s < steps; s++) {
      this.engine.predict(p);
      const t = this.engine.t;
      for (let j = 0; j < n; j++) {
        const x = decide(this.engine.binary, mode, p[j]!, this.spec.sigma, j, t, seedLo, seedHi);
        out[s * n + j] = x;
        this.engine.setValue(j, t, x);
      }
      this.engine.advance();
    }
    return out;
  }

  /**
   * Recall from a partial cue: forgets the past (reset), reads the cue (cueSteps frames), then
   * generates `steps` frames.
   */
  recall(
    cue: ArrayLike<number>,
    cueSteps: number,
    steps: number,
    opts: GenerateOptions = {},
  ): Float64Array {
    this.reset();
    this.read(cue, cueSteps);
    return this.generate(steps, opts);
  }

  /** Forgets the past (queues and traces, step 0); parameters and optimiser state are kept. */
  reset(): void {
    this.engine.reset();
  }

  /** The synapses: synapse s goes from pre[s] to post[s] with delay[s] (canonical order). */
  synapses(): { pre: Int32Array; post: Int32Array; delay: Int32Array } {
    const { pre, post, delay } = this.spec.synapses;
    return { pre: pre.slice(), post: post.slice(), delay: delay.slice() };
  }

  /**
   * The learned weight from unit pre to unit post (summed over their synapses) as a function of
   * the spike-time difference delta = t_post - t_pre, for delta = from .. to. A synapse of delay
   * d contributes sum_l u_l lambda_l^(delta-d) where delta >= d (the pre spike had arrived when
   * the post spiked: LTP) and -sum_k v_k mu_k^(d-delta-1) where delta < d, delta != 0 (the post
   * spiked before the pre spike arrived: LTD); nothing at delta = 0 (a frame's units do not
   * interact).
   */
  kernel(pre: number, post: number, from: number, to: number): Float64Array {
    const n = this.spec.units;
    if (!Number.isInteger(pre) || pre < 0 || pre >= n)
      throw new SpecError('pre', `must be a unit index in [0, ${n}), got ${pre}`);
    if (!Number.isInteger(post) || post < 0 || post >= n)
      throw new SpecError('post', `must be a unit index in [0, ${n}), got ${post}`);
    if (!Number.isInteger(from) || !Number.isInteger(to) || to < from)
      throw new SpecError('lags', `must be integers from <= to, got [${from}, ${to}]`);
    const { L, K, lambda, mu, u, v, pairStart, delay } = this.engine;
    const out = new Float64Array(to - from + 1);
    for (let s = pairStart[post * n + pre]!; s < pairStart[post * n + pre + 1]!; s++) {
      const d = delay[s]!;
      for (let delta = from; delta <= to; delta++) {
        let w = 0;
        if (delta >= d) for (let l = 0; l < L; l++) w += u[s * L + l]! * lambda[l]! ** (delta - d);
        else if (delta !== 0)
          for (let k = 0; k < K; k++) w -= v[s * K + k]! * mu[k]! ** (d - delta - 1);
        out[delta - from]! += w;
      }
    }
    return out;
  }

  /**
   * The parameters, live: bias [N], u [S, L] (LTP weights) and v [S, K] (LTD weights), row-major,
   * synapses in the order of synapses().
   */
  parameters(): { name: string; data: Float64Array; shape: number[] }[] {
    const { n, L, K, S } = this.engine;
    return [
      { name: 'bias', data: this.engine.bias, shape: [n] },
      { name: 'u', data: this.engine.u, shape: [S, L] },
      { name: 'v', data: this.engine.v, shape: [S, K] },
    ];
  }

  /**
   * Everything learning and prediction depend on, copied: the parameters, the optimiser's sums
   * (adagrad.*), the traces (trace.alpha [S, L], trace.gamma [N, K]), the centring offsets
   * (centre.alpha, centre.beta [S, K], centre.gamma; zero without centring), the queues
   * (queue [N, maxDelay + 1], a ring indexed by step mod (maxDelay + 1)) and the step.
   */
  state(): Record<string, DyBMArray> {
    const g = this.engine;
    const { n, L, K, R, S } = g;
    const arr = (data: Float64Array, shape: number[]): DyBMArray => ({ data: data.slice(), shape });
    return {
      bias: arr(g.bias, [n]),
      u: arr(g.u, [S, L]),
      v: arr(g.v, [S, K]),
      'adagrad.bias': arr(g.accBias, [n]),
      'adagrad.u': arr(g.accU, [S, L]),
      'adagrad.v': arr(g.accV, [S, K]),
      'trace.alpha': arr(g.alpha, [S, L]),
      'trace.gamma': arr(g.gamma, [n, K]),
      'centre.alpha': arr(g.mAlpha, [S, L]),
      'centre.beta': arr(g.mBeta, [S, K]),
      'centre.gamma': arr(g.mGamma, [n, K]),
      queue: arr(g.history, [n, R]),
      step: { data: Float64Array.of(g.t), shape: [1] },
    };
  }

  /** Restores what state() returned (same spec). @throws SpecError naming a missing or misshapen array */
  restoreState(s: Readonly<Record<string, DyBMArray>>): void {
    const expected = this.state();
    for (const [name, e] of Object.entries(expected)) {
      const got = s[name];
      if (!got) throw new SpecError(`state.${name}`, 'is missing');
      if (got.data.length !== e.data.length || got.shape.join() !== e.shape.join())
        throw new SpecError(
          `state.${name}`,
          `has shape [${got.shape.join(', ')}], expected [${e.shape.join(', ')}]`,
        );
    }
    const g = this.engine;
    g.bias.set(s['bias']!.data);
    g.u.set(s['u']!.data);
    g.v.set(s['v']!.data);
    g.accBias.set(s['adagrad.bias']!.data);
    g.accU.set(s['adagrad.u']!.data);
    g.accV.set(s['adagrad.v']!.data);
    g.alpha.set(s['trace.alpha']!.data);
    g.gamma.set(s['trace.gamma']!.data);
    g.mAlpha.set(s['centre.alpha']!.data);
    g.mBeta.set(s['centre.beta']!.data);
    g.mGamma.set(s['centre.gamma']!.data);
    g.history.set(s['queue']!.data);
    const t = s['step']!.data[0]!;
    if (!Number.isSafeInteger(t) || t < 0)
      throw new SpecError('state.step', `must be a non-negative integer, got ${t}`);
    g.t = t;
  }

  /** An independent copy: same spec, options, parameters and state. */
  clone(): DyBM {
    const c = new DyBM(this.specInput(), this.options);
    c.restoreState(this.state());
    return c;
  }

  private specInput(): DyBMSpec {
    const s = this.spec;
    return {
      units: s.units,
      kind: s.kind,
      delays: s.delays.map((d) => [...d]),
      ltpDecays: [...s.ltpDecays],
      ltdDecays: [...s.ltdDecays],
      sigma: s.sigma,
    };
  }

  /** The model as JSON-safe data; DyBM.fromJSON(JSON.parse(JSON.stringify(m))) restores it exactly. */
  toJSON(): DyBMSnapshot {
    const s = this.specInput();
    const arrays: DyBMSnapshot['arrays'] = {};
    for (const [name, a] of Object.entries(this.state()))
      arrays[name] = { shape: a.shape, data: Array.from(a.data) };
    return {
      format: 'spinmesh-dybm',
      version: 1,
      spec: {
        units: s.units,
        kind: s.kind!,
        delays: this.spec.delays.map((d) => [...d]),
        ltpDecays: s.ltpDecays!,
        ltdDecays: s.ltdDecays!,
        sigma: s.sigma!,
      },
      options: {
        optimizer: this.options.optimizer,
        learningRate: this.options.learningRate,
        initStd: this.options.initStd,
        seed: String(this.options.seed),
        centring: this.options.centring,
        centringRate: this.options.centringRate,
      },
      arrays,
    };
  }

  /** Restores a DyBM from toJSON()'s output. @throws SpecError for anything else */
  static fromJSON(snap: DyBMSnapshot): DyBM {
    if (!snap || snap.format !== 'spinmesh-dybm' || snap.version !== 1)
      throw new SpecError('snapshot', "is not a version 1 'spinmesh-dybm' snapshot");
    let seed: bigint;
    try {
      seed = BigInt(snap.options.seed);
    } catch {
      throw new SpecError('snapshot.options.seed', `is not an integer: ${snap.options.seed}`);
    }
    const m = new DyBM(snap.spec, { ...snap.options, seed });
    const state: Record<string, DyBMArray> = {};
    for (const [name, a] of Object.entries(snap.arrays ?? {}))
      state[name] = { shape: a.shape, data: Float64Array.from(a.data) };
    m.restoreState(state);
    return m;
  }
}

/** Frame t of a steps x n sequence. */
function sliceFrame(data: ArrayLike<number>, t: number, n: number): Float64Array {
  const x = new Float64Array(n);
  for (let j = 0; j < n; j++) x[j] = data[t * n + j]!;
  return x;
}
