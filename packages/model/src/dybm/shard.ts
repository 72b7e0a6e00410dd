// A DyBM split by post-synaptic units. A shard owns some units, every synapse INTO them (with its
// LTP/LTD weights, traces and optimiser sums) and their biases; it keeps the queues of every unit,
// filled with its own values as it decides them and with the other shards' values as they arrive.
// What it needs from the others, and when (the argument is in ../../DYBM.md):
//   spikes x_i[t]  - LTP needs x_i[t] only when it arrives, at step t + d_ij, so a lag of s < d_min
//                    steps changes nothing; LTD's beta reads spikes still in transit, at t + 1.
//   errors e_i[t]  - the LTD rule of synapse i -> j reads the pre unit's e_i[t] at step t.
//   couplings      - F_j needs c_{j->i} = sum_k v_jik mu_k^d gamma_ik of the synapses OUT of j,
//                    which the owners of their post units i hold; sent for step t + 1.
// Without LTD (ltdDecays = []) only spikes travel, and a sharded run with lag s < d_min equals the
// single process bit for bit; with LTD it does only when everything arrives within the step
// (s = 0). What has not arrived is taken as 0 (a silent unit), so a larger lag gives a different,
// still deterministic, run.
//
// DyBMShard is what a worker drives (predict, observe, learn, advance, receive, with messages that
// are plain typed arrays); DyBMLoopback drives several in one process with a fixed lag.
import { SpecError } from '../errors.js';
import { DyBM, type GenerateOptions } from './dybm.js';
import { DyBMEngine, decide } from './engine.js';
import { validateDyBMOptions } from './spec.js';

/** A shard's frame at step t: its units' values and errors d log p / d F. */
export interface DyBMSpikeMessage {
  kind: 'spikes';
  t: number;
  /** The sender's units (global indices, ascending). */
  units: Int32Array;
  x: Float64Array;
  err: Float64Array;
}

/**
 * The LTD couplings the sender's synapses contribute to every unit's field at step t:
 * c[a * N + j] = c_{j -> units[a]}[t].
 */
export interface DyBMCouplingMessage {
  kind: 'coupling';
  t: number;
  units: Int32Array;
  c: Float64Array;
}

export type DyBMMessage = DyBMSpikeMessage | DyBMCouplingMessage;

/** The part of a DyBM that owns some post-synaptic units. */
export class DyBMShard {
  readonly engine: DyBMEngine;
  /** Owned units, ascending global indices. */
  readonly units: Int32Array;
  private readonly p: Float64Array;
  private readonly x: Float64Array;
  private readonly e: Float64Array;
  private pending: DyBMMessage[] = [];
  private predicted = -1;
  private observed = -1;

  /**
   * Takes the parameters and state of `model`'s units `units` (and every unit's queue).
   * @throws SpecError for an empty, unsorted or out-of-range unit list
   */
  constructor(model: DyBM, units: ArrayLike<number>) {
    const n = model.units;
    const given = Array.from(units);
    if (given.length === 0) throw new SpecError('units', 'must name at least one unit');
    given.forEach((u, a) => {
      if (!Number.isInteger(u) || u < 0 || u >= n || (a > 0 && u <= given[a - 1]!))
        throw new SpecError(`units[${a}]`, `must be ascending unit indices in [0, ${n}), got ${u}`);
    });
    const list = Int32Array.from(given);
    this.units = list;
    this.engine = new DyBMEngine(model.spec, model.options, list);
    this.p = new Float64Array(list.length);
    this.x = new Float64Array(list.length);
    this.e = new Float64Array(n);
    copyUnits(model.engine, this.engine, 'in');
  }

  get step(): number {
    return this.engine.t;
  }

  /** Predictions for the owned units at the current step (p or gaussian means). */
  predict(): Float64Array {
    this.engine.predict(this.p);
    this.predicted = this.engine.t;
    return this.p.slice();
  }

  /** The owned units' next values chosen from the last predictions (generation). */
  choose(mode: 'mostLikely' | 'sample', seed?: number | bigint): Float64Array {
    this.requirePredicted();
    const { seedLo, seedHi } =
      seed === undefined ? this.engine.options : validateDyBMOptions({ seed }, 'generate');
    const g = this.engine;
    return Float64Array.from(this.units, (u, a) =>
      decide(g.binary, mode, this.p[a]!, g.spec.sigma, u, g.t, seedLo, seedHi),
    );
  }

  /** Records the owned units' values x[t]; returns the message for the other shards. */
  observe(x: ArrayLike<number>): DyBMSpikeMessage {
    this.requirePredicted();
    if (x.length !== this.units.length)
      throw new SpecError('x', `has ${x.length} values, the shard owns ${this.units.length} units`);
    const g = this.engine;
    const err = new Float64Array(this.units.length);
    this.units.forEach((u, a) => {
      const v = x[a]!;
      if (g.binary ? v !== 0 && v !== 1 : !Number.isFinite(v))
        throw new SpecError(`x[${a}]`, `is ${v}, not a valid value for unit ${u}`);
      this.x[a] = v;
      g.setValue(u, g.t, v);
      err[a] = g.error(v, this.p[a]!);
    });
    this.observed = g.t;
    return { kind: 'spikes', t: g.t, units: this.units, x: this.x.slice(), err };
  }

  /** The learning rule at the current step, with the errors received so far (others: 0). */
  learn(): void {
    const g = this.engine;
    if (this.observed !== g.t) throw new SpecError('shard', `has not observed step ${g.t}`);
    for (let i = 0; i < g.n; i++) this.e[i] = g.extErrT[i] === g.t ? g.extErr[i]! : 0;
    this.units.forEach((u, a) => (this.e[u] = g.error(this.x[a]!, this.p[a]!)));
    g.update(this.e);
  }

  /**
   * Moves to the next step; returns the couplings of the owned synapses for it (null without
   * LTD, where nobody needs them).
   */
  advance(): DyBMCouplingMessage | null {
    const g = this.engine;
    if (this.observed !== g.t) throw new SpecError('shard', `has not observed step ${g.t}`);
    g.advance();
    const pending = this.pending;
    this.pending = [];
    for (const m of pending) this.receive(m);
    if (g.K === 0) return null;
    const c = new Float64Array(this.units.length * g.n);
    for (let a = 0; a < this.units.length; a++)
      for (let j = 0; j < g.n; j++) c[a * g.n + j] = g.coupling(j, a);
    return { kind: 'coupling', t: g.t, units: this.units, c };
  }

  /**
   * Takes another shard's message. One for a later step waits until this shard gets there; one
   * too late to be used (a coupling for a past step, an error for a past step, a value older than
   * the queues) is dropped, and its value counts as 0 where it was needed.
   */
  receive(msg: DyBMMessage): void {
    const g = this.engine;
    if (msg.t > g.t) {
      this.pending.push(msg);
      return;
    }
    if (msg.kind === 'spikes') {
      if (msg.t < g.t - g.D) return;
      msg.units.forEach((u, a) => {
        if (g.local[u]! >= 0) return;
        g.setValue(u, msg.t, msg.x[a]!);
        if (msg.t === g.t) {
          g.extErr[u] = msg.err[a]!;
          g.extErrT[u] = msg.t;
        }
      });
    } else if (msg.t === g.t) {
      msg.units.forEach((i, a) => {
        if (g.local[i]! >= 0) return;
        g.extC.set(msg.c.subarray(a * g.n, (a + 1) * g.n), i * g.n);
        g.extCT[i] = msg.t;
      });
    }
  }

  /** Forgets the past (queues, traces, pending messages); parameters are kept. */
  reset(): void {
    this.engine.reset();
    this.pending = [];
    this.predicted = -1;
    this.observed = -1;
  }

  /** Writes the owned units' parameters, optimiser sums and traces into `model`. */
  exportInto(model: DyBM): void {
    copyUnits(model.engine, this.engine, 'out');
  }

  private requirePredicted(): void {
    if (this.predicted !== this.engine.t)
      throw new SpecError('shard', `has not predicted step ${this.engine.t}`);
  }
}

/**
 * Copies the owned units' part between a full engine and a shard's: 'in' full -> shard (with
 * every unit's queue), 'out' shard -> full (with the owned units' queues: only their values are
 * certain in the shard). Both set the step.
 */
function copyUnits(full: DyBMEngine, shard: DyBMEngine, dir: 'in' | 'out'): void {
  const { L, K } = full;
  const move = (a: Float64Array, b: Float64Array, fa: number, fb: number, w: number): void => {
    for (let q = 0; q < w; q++) {
      if (dir === 'in') b[fb * w + q] = a[fa * w + q]!;
      else a[fa * w + q] = b[fb * w + q]!;
    }
  };
  const perSynapse: [Float64Array, Float64Array, number][] = [
    [full.u, shard.u, L],
    [full.accU, shard.accU, L],
    [full.alpha, shard.alpha, L],
    [full.mAlpha, shard.mAlpha, L],
    [full.v, shard.v, K],
    [full.accV, shard.accV, K],
    [full.mBeta, shard.mBeta, K],
  ];
  for (let s = 0; s < shard.S; s++)
    for (const [a, b, w] of perSynapse) move(a, b, shard.index[s]!, s, w);
  shard.owned.forEach((j, o) => {
    move(full.bias, shard.bias, j, o, 1);
    move(full.accBias, shard.accBias, j, o, 1);
    move(full.gamma, shard.gamma, j, o, K);
    move(full.mGamma, shard.mGamma, j, o, K);
  });
  if (dir === 'in') {
    shard.history.set(full.history);
    shard.t = full.t;
  } else {
    const R = full.R;
    for (const j of shard.owned)
      full.history.set(shard.history.subarray(j * R, (j + 1) * R), j * R);
    full.t = shard.t;
  }
}

export interface DyBMLoopbackOptions {
  /**
   * Steps by which every message is late: what a shard sends at step t reaches the others at
   * step t + lag, at the point of the step where it was sent. @defaultValue 0
   */
  lag?: number;
}

/** A DyBM run as shards in one process, exchanging messages with a fixed lag. */
export class DyBMLoopback {
  readonly shards: DyBMShard[];
  readonly lag: number;
  /** Messages handed between shards (one per recipient). */
  messages = 0;
  private flight: { at: number; from: number; msg: DyBMMessage }[] = [];
  private readonly n: number;

  /**
   * Splits `model` (copied, not modified) into shards owning `parts` (disjoint, covering every
   * unit). @throws SpecError for a bad partition or lag
   */
  constructor(
    private readonly model: DyBM,
    parts: readonly (readonly number[])[],
    opts: DyBMLoopbackOptions = {},
  ) {
    this.n = model.units;
    const lag = opts.lag ?? 0;
    if (!Number.isInteger(lag) || lag < 0)
      throw new SpecError('lag', `must be a non-negative integer, got ${lag}`);
    this.lag = lag;
    const seen = new Uint8Array(this.n);
    for (const part of parts)
      for (const u of part) {
        if (seen[u]) throw new SpecError('parts', `name unit ${u} twice`);
        seen[u] = 1;
      }
    if (seen.some((s) => s === 0) || parts.flat().length !== this.n)
      throw new SpecError('parts', `must cover units 0..${this.n - 1} exactly once`);
    this.shards = parts.map(
      (p) =>
        new DyBMShard(
          model,
          [...p].sort((a, b) => a - b),
        ),
    );
  }

  private post(from: number, now: number, msg: DyBMMessage | null): void {
    if (msg) this.flight.push({ at: now + this.lag, from, msg });
  }

  private deliver(kind: DyBMMessage['kind'], now: number): void {
    const keep: typeof this.flight = [];
    for (const f of this.flight) {
      if (f.msg.kind !== kind || f.at > now) {
        keep.push(f);
        continue;
      }
      this.shards.forEach((s, k) => {
        if (k === f.from) return;
        s.receive(f.msg);
        this.messages++;
      });
    }
    this.flight = keep;
  }

  /** One step: frame given (reading or learning) or chosen by the shards (generating). */
  private stepOnce(
    frame: ArrayLike<number> | null,
    learn: boolean,
    gen: { mode: 'mostLikely' | 'sample'; seed?: number | bigint },
    out: Float64Array | null,
    row: number,
  ): void {
    const now = this.shards[0]!.step;
    for (const s of this.shards) s.predict();
    this.shards.forEach((s, k) => {
      const x = frame ? Float64Array.from(s.units, (u) => frame[u]!) : s.choose(gen.mode, gen.seed);
      if (out) s.units.forEach((u, a) => (out[row * this.n + u] = x[a]!));
      this.post(k, now, s.observe(x));
    });
    this.deliver('spikes', now);
    if (learn) for (const s of this.shards) s.learn();
    this.shards.forEach((s, k) => this.post(k, now, s.advance()));
    this.deliver('coupling', now);
  }

  /** Learns a steps x N sequence, frame by frame. */
  train(data: ArrayLike<number>, steps: number): void {
    checkSequence(data, steps, this.n);
    for (let t = 0; t < steps; t++)
      this.stepOnce(frameAt(data, t, this.n), true, { mode: 'mostLikely' }, null, t);
  }

  /** Reads a steps x N sequence without learning. */
  read(data: ArrayLike<number>, steps: number): void {
    checkSequence(data, steps, this.n);
    for (let t = 0; t < steps; t++)
      this.stepOnce(frameAt(data, t, this.n), false, { mode: 'mostLikely' }, null, t);
  }

  /** Generates `steps` frames, each shard choosing its own units. */
  generate(steps: number, opts: GenerateOptions = {}): Float64Array {
    if (!Number.isInteger(steps) || steps < 0)
      throw new SpecError('steps', `must be a non-negative integer, got ${steps}`);
    const out = new Float64Array(steps * this.n);
    const gen = { mode: opts.mode ?? 'mostLikely', seed: opts.seed };
    for (let t = 0; t < steps; t++) this.stepOnce(null, false, gen, out, t);
    return out;
  }

  /** Forgets the past in every shard and drops messages in flight. */
  reset(): void {
    for (const s of this.shards) s.reset();
    this.flight = [];
  }

  /** A single-process DyBM holding the shards' parameters, optimiser sums and traces. */
  assemble(): DyBM {
    const m = this.model.clone();
    for (const s of this.shards) s.exportInto(m);
    return m;
  }
}

function checkSequence(data: ArrayLike<number>, steps: number, n: number): void {
  if (!Number.isInteger(steps) || steps < 0)
    throw new SpecError('steps', `must be a non-negative integer, got ${steps}`);
  if (data.length < steps * n)
    throw new SpecError('data', `has ${data.length} values, fewer than ${steps} frames of ${n}`);
}

function frameAt(data: ArrayLike<number>, t: number, n: number): Float64Array {
  const x = new Float64Array(n);
  for (let j = 0; j < n; j++) x[j] = data[t * n + j]!;
  return x;
}
