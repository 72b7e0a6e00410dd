// Samplers for any Network: block Gibbs by colouring (sequential inside lateral layers) and
// mean-field fixed points. Persistent chains are in chains.ts, parallel tempering in
// tempering.ts.
//
// Randomness. Every draw goes through kernels.sampleUnits / kernels.uniform, whose counter is
// (unit, chain, step, stream) under the sampler's seed:
// - unit  = layer.offset (+ i for the i-th unit of a lateral layer, drawn one at a time),
// - chain = chainOffset + row (the global index of the chain),
// - step  = the caller's global update step (GibbsSampler.run: one step per sweep),
// - stream = one of the `Streams` constants below, plus a sub-sweep or replica index.
// So a draw depends on (seed, chain, unit, step, stream) only: never on how many chains one
// call processes, on batch layout or on timing.
import { type Kernels, type RngSite, seedHalves } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import type { Layer, Network, State } from './network.js';

/**
 * The `stream` word of every draw this package makes (the tag lives in the top 16 bits; the
 * low 16 bits carry a sub-sweep or replica index). Fixed forever: changing one changes every
 * seeded result.
 */
export const Streams = {
  /** GibbsSampler.sweep/run/meanField when no stream is given. ('GB') */
  gibbs: 0x47420000,
  /** Trainer positive (data) phase: hidden draws, mean-field draws; + clamped sweep index. ('PS') */
  positive: 0x50530000,
  /** Trainer negative (model) phase: + sweep index 0..k-1. ('NG') */
  negative: 0x4e470000,
  /** ParallelTempering: sweeps of the replica at betas[r] use tempering + r. ('PT') */
  tempering: 0x50540000,
  /** ParallelTempering: swap decisions; unit = pair index, chain = chain. ('SW') */
  swap: 0x53570000,
  /** PersistentChains initial draws. ('CI') */
  chainInit: 0x43490000,
} as const;

/** A layer by name or index. */
export type LayerRef = string | number;

/**
 * Per-unit clamping for pattern completion: layer name -> mask (non-zero = the unit keeps its
 * value). A mask of the layer's size applies to every chain; one of rows x size gives each
 * chain (row of the call) its own.
 */
export type UnitMask = Readonly<Record<string, Uint8Array>>;

export interface SamplerOptions {
  /** Seed of the counter-based generator (64-bit). @defaultValue 0 */
  seed?: number | bigint;
  /** Inverse temperature used when a call does not give one. @defaultValue 1 */
  beta?: number;
  /**
   * Groups of layers in the order a sweep updates them; no connection may join two layers of
   * one group, and every layer appears once. @defaultValue network.colouring()
   */
  order?: readonly (readonly number[])[];
  /** Fields computed in blocks of this many units (TrainOptions.productBlock); 0: off. @defaultValue 0 */
  productBlock?: number;
}

export interface SweepOptions {
  /** Inverse temperature. @defaultValue the sampler's beta */
  beta?: number;
  /** Layers that keep their values (conditioning). @defaultValue none */
  clamp?: readonly LayerRef[];
  /** Units that keep their values (see UnitMask). @defaultValue none */
  mask?: UnitMask;
  /** Global index of the first chain (row) of `state`. @defaultValue 0 */
  chainOffset?: number;
  /** Stream word of the draws. @defaultValue Streams.gibbs */
  stream?: number;
  /**
   * Per layer index, a rows x size buffer to receive the conditional means (probabilities)
   * that the layer's units were drawn from in this sweep. Units of a lateral layer get the
   * mean given the states at the moment they were drawn.
   */
  means?: readonly (Float32Array | null | undefined)[];
}

export interface RunOptions extends SweepOptions {
  /** Step number of the first sweep; sweep s uses step + s. @defaultValue 0 */
  step?: number;
  /** Per-sweep inverse temperatures (annealing); overrides `beta`. Needs >= sweeps entries. */
  betas?: ArrayLike<number>;
  /** Called after each sweep with its index and step. */
  onSweep?: (sweep: number, step: number) => void;
}

export interface MeanFieldOptions {
  /** Maximum number of fixed-point iterations (sweeps over the free layers). @defaultValue 10 */
  iterations?: number;
  /** m <- m + damping * (f(m) - m). @defaultValue 0.5 */
  damping?: number;
  /** Stop once the RMS change of an iteration is below this. @defaultValue 0 (never early) */
  tolerance?: number;
  beta?: number;
  clamp?: readonly LayerRef[];
  mask?: UnitMask;
  /**
   * When given, the last iteration also draws a state of each free layer from its mean-field
   * conditional (field from the neighbours' means) into samples[l] (rows x size).
   */
  samples?: State | null;
  /** Counter of those draws. @defaultValue 0 */
  step?: number;
  /** @defaultValue Streams.gibbs */
  stream?: number;
  /** @defaultValue 0 */
  chainOffset?: number;
}

export interface MeanFieldResult {
  /** Iterations done. */
  iterations: number;
  /** RMS change of the means in the last iteration. */
  change: number;
}

/** How annealing moves beta from b0 to b1 over the sweeps. */
export type AnnealKind = 'linear' | 'geometric';

/**
 * One unit-by-unit Gibbs sweep of a layer with lateral weights L (n x n, symmetric), in place:
 * for each unit i in order, f[:, i] += x L[:, i], then unit i of every row is drawn from it (the
 * later units of the sweep see the new state of the earlier ones). `f` holds the field from the
 * other layers (rows x n); `draw(i)` false leaves unit i as it is; `after(i)` runs after unit i
 * is drawn. GibbsSampler and ShardTrainer both sweep through here, so they draw the same spins.
 */
export function sweepLateral(
  k: Kernels,
  layer: Layer,
  rows: number,
  f: Float32Array,
  x: Float32Array,
  L: Float32Array,
  bias: Float32Array,
  beta: number,
  meanOut: Float32Array | null,
  site: RngSite,
  draw: ((i: number) => boolean) | null,
  after: ((i: number) => void) | null,
): void {
  const n = layer.size;
  for (let i = 0; i < n; i++) {
    if (draw && !draw(i)) continue;
    const fi = f.subarray(i);
    // f[:, i] += x L[:, i]  (L symmetric, so its row i is its column i)
    k.sgemm(false, false, rows, 1, n, 1, x, n, L.subarray(i * n, i * n + n), 1, 1, fi, n);
    site.unitOffset = layer.offset + i;
    k.sampleUnits(
      layer.type,
      rows,
      1,
      fi,
      n,
      bias.subarray(i, i + 1),
      beta,
      meanOut ? meanOut.subarray(i) : null,
      x.subarray(i),
      site,
    );
    after?.(i);
  }
}

/**
 * Inverse temperatures for annealed sampling: betas[s] for sweeps s = 0..sweeps-1, from b0 to
 * b1 (the last is exactly b1), linear or geometric (geometric needs b0 > 0).
 */
export function annealingSchedule(
  b0: number,
  sweeps: number,
  kind: AnnealKind = 'linear',
  b1 = 1,
): Float64Array {
  if (!Number.isInteger(sweeps) || sweeps < 1)
    throw new SpecError('anneal.sweeps', 'must be a positive integer');
  if (!(Number.isFinite(b0) && b0 >= 0))
    throw new SpecError('anneal.b0', 'must be a finite number >= 0');
  if (!(Number.isFinite(b1) && b1 > 0))
    throw new SpecError('anneal.b1', 'must be a finite number > 0');
  if (kind !== 'linear' && kind !== 'geometric')
    throw new SpecError('anneal.kind', 'must be linear or geometric');
  if (kind === 'geometric' && b0 <= 0)
    throw new SpecError('anneal.b0', 'must be > 0 for a geometric schedule');
  const out = new Float64Array(sweeps);
  for (let s = 0; s < sweeps; s++) {
    const f = sweeps === 1 ? 1 : s / (sweeps - 1);
    out[s] = kind === 'linear' ? b0 + (b1 - b0) * f : b0 * Math.pow(b1 / b0, f);
  }
  out[sweeps - 1] = b1;
  return out;
}

/** Argument checks shared by the samplers (chains.ts, tempering.ts). */
export function checkBeta(beta: number, path: string): void {
  if (typeof beta !== 'number' || !Number.isFinite(beta) || beta <= 0)
    throw new SpecError(path, 'must be a finite number > 0');
}

export function checkCount(v: number, path: string, min = 0): void {
  if (!Number.isInteger(v) || v < min) throw new SpecError(path, `must be an integer >= ${min}`);
}

export function resolveLayer(network: Network, ref: LayerRef, path: string): number {
  if (typeof ref === 'number') {
    if (!Number.isInteger(ref) || ref < 0 || ref >= network.layers.length) {
      throw new SpecError(path, `layer index ${ref} is out of range`);
    }
    return ref;
  }
  const i = network.layers.findIndex((l) => l.name === ref);
  if (i < 0) throw new SpecError(path, `'${ref}' is not a layer of this network`);
  return i;
}

/** Site object reused for every call (no per-draw allocation). Shared by the samplers. */
export function makeSite(seed: number | bigint): RngSite {
  const { seedLo, seedHi } = seedHalves(seed);
  return { seedLo, seedHi, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
}

/**
 * Block Gibbs sampler for a Network. A sweep updates the groups of `order` in turn; the layers
 * of one group are conditionally independent given the others (no connection joins them), so
 * drawing them at once is exact. A layer with lateral connections is drawn unit by unit inside
 * its turn: its field from the other layers is computed once, and for unit i the lateral term
 * sum_j L_ij x_j over the current states (a strided dot per chain, done as an m x 1 GEMM) is
 * added just before the draw, whose counter's unit is layer.offset + i.
 */
export class GibbsSampler {
  readonly kernels: Kernels;
  readonly order: readonly (readonly number[])[];
  readonly beta: number;
  private readonly productBlock: number;
  private readonly site: RngSite;
  private capacity = 0;
  private field: Float32Array[] = [];
  private saved: (Float32Array | null)[] = [];
  private readonly noClamp: boolean[];

  constructor(
    readonly network: Network,
    opts: SamplerOptions = {},
  ) {
    this.kernels = network.kernels;
    this.beta = opts.beta ?? 1;
    checkBeta(this.beta, 'sampler.beta');
    this.productBlock = opts.productBlock ?? 0;
    this.site = makeSite(opts.seed ?? 0);
    this.order = opts.order ? validateOrder(network, opts.order) : network.colouring();
    this.noClamp = network.layers.map(() => false);
  }

  /** Makes the scratch buffers hold `rows` chains (allocates only when growing). */
  ensure(rows: number): void {
    if (rows <= this.capacity) return;
    const k = this.kernels;
    this.field = this.network.layers.map((l) => k.alloc(rows * l.size));
    this.saved = this.network.layers.map(() => null);
    this.capacity = rows;
  }

  private savedBuf(l: number): Float32Array {
    let s = this.saved[l];
    if (!s) {
      s = this.kernels.alloc(this.capacity * this.network.layers[l]!.size);
      this.saved[l] = s;
    }
    return s;
  }

  private clampFlags(clamp: readonly LayerRef[] | undefined): readonly boolean[] {
    if (!clamp || clamp.length === 0) return this.noClamp;
    const flags = this.network.layers.map(() => false);
    clamp.forEach((c, i) => (flags[resolveLayer(this.network, c, `sweep.clamp[${i}]`)] = true));
    return flags;
  }

  private maskFor(mask: UnitMask | undefined, l: number, rows: number): Uint8Array | null {
    if (!mask) return null;
    const layer = this.network.layers[l]!;
    const m = mask[layer.name];
    if (!m) return null;
    if (m.length !== layer.size && m.length < rows * layer.size) {
      throw new SpecError(
        `mask.${layer.name}`,
        `must hold ${layer.size} or rows x ${layer.size} = ${rows * layer.size} values`,
      );
    }
    return m;
  }

  private checkState(state: State, rows: number): void {
    checkCount(rows, 'rows');
    this.network.layers.forEach((l) => {
      const x = state[l.index];
      if (!x || x.length < rows * l.size)
        throw new SpecError(`state[${l.index}]`, `must hold rows x ${l.size} values`);
    });
  }

  /**
   * One sweep over all unclamped layers at update step `step`.
   */
  sweep(state: State, rows: number, step: number, opts: SweepOptions = {}): void {
    this.checkState(state, rows);
    checkCount(step, 'sweep.step');
    const beta = opts.beta ?? this.beta;
    checkBeta(beta, 'sweep.beta');
    this.ensure(rows);
    const clamped = this.clampFlags(opts.clamp);
    const site = this.site;
    site.step = step;
    site.stream = opts.stream ?? Streams.gibbs;
    site.chainOffset = opts.chainOffset ?? 0;
    for (const group of this.order) {
      for (const l of group) {
        if (clamped[l]) continue;
        this.updateLayer(
          l,
          state,
          rows,
          beta,
          this.maskFor(opts.mask, l, rows),
          opts.means?.[l] ?? null,
        );
      }
    }
  }

  /** `sweeps` sweeps at steps step, step+1, ...; returns the next step. */
  run(state: State, rows: number, sweeps: number, opts: RunOptions = {}): number {
    checkCount(sweeps, 'run.sweeps');
    let step = opts.step ?? 0;
    if (opts.betas && opts.betas.length < sweeps)
      throw new SpecError('run.betas', `must hold ${sweeps} values`);
    const sweepOpts: SweepOptions = { ...opts };
    for (let s = 0; s < sweeps; s++, step++) {
      if (opts.betas) sweepOpts.beta = opts.betas[s]!;
      this.sweep(state, rows, step, sweepOpts);
      opts.onSweep?.(s, step);
    }
    return step;
  }

  private updateLayer(
    l: number,
    state: State,
    rows: number,
    beta: number,
    mask: Uint8Array | null,
    meanOut: Float32Array | null,
  ): void {
    const net = this.network;
    const k = this.kernels;
    const layer = net.layers[l]!;
    const n = layer.size;
    const x = state[l]!;
    const bias = net.biases[l]!;
    const L = net.laterals[l];
    const site = this.site;
    site.unitOffset = layer.offset;
    if (meanOut && meanOut.length < rows * n)
      throw new SpecError(`means[${l}]`, `must hold rows x ${n} values`);
    if (mask) {
      const save = this.savedBuf(l);
      k.axpby(rows * n, 1, x, 0, save);
    }
    if (!L) {
      // In-place: the field goes straight into the means buffer when there is one.
      const f = meanOut && !mask ? meanOut : this.field[l]!;
      net.field(l, state, rows, f, this.productBlock);
      k.sampleUnits(layer.type, rows, n, f, n, bias, beta, meanOut, x, site);
      if (mask) this.restore(l, x, meanOut, mask, rows, 0, n);
      return;
    }
    const f = this.field[l]!;
    net.field(l, state, rows, f, this.productBlock);
    // a mask of n flags clamps units (skipped); one of rows x n clamps entries (put back)
    const units = mask !== null && mask.length === n ? mask : null;
    const entries = mask !== null && units === null ? mask : null;
    sweepLateral(
      k,
      layer,
      rows,
      f,
      x,
      L,
      bias,
      beta,
      meanOut,
      site,
      units ? (i) => !units[i] : null,
      entries ? (i) => this.restore(l, x, meanOut, entries, rows, i, i + 1) : null,
    );
    if (units) this.restore(l, x, meanOut, units, rows, 0, n);
  }

  /** Puts masked units of columns [j0, j1) back to their saved values (JS; not a hot path). */
  private restore(
    l: number,
    x: Float32Array,
    meanOut: Float32Array | null,
    mask: Uint8Array,
    rows: number,
    j0: number,
    j1: number,
  ): void {
    const k = this.kernels;
    const n = this.network.layers[l]!.size;
    const save = this.saved[l]!;
    const shared = mask.length === n;
    k.download(x);
    k.download(save);
    if (meanOut) k.download(meanOut);
    for (let r = 0; r < rows; r++) {
      for (let j = j0; j < j1; j++) {
        if (!mask[shared ? j : r * n + j]) continue;
        const v = save[r * n + j]!;
        x[r * n + j] = v;
        if (meanOut) meanOut[r * n + j] = v;
      }
    }
    k.upload(x);
    if (meanOut) k.upload(meanOut);
  }

  /**
   * Damped mean-field fixed point over the unclamped layers, in sweep order (Gauss-Seidel over
   * groups, parallel inside a layer): m_l <- m_l + damping * (f(beta (field(m) + m_l L_l + b_l)) - m_l),
   * f = sigmoid (Bernoulli), tanh (Ising), identity (Gaussian). `state` holds the initial means
   * and receives the result.
   */
  meanField(state: State, rows: number, opts: MeanFieldOptions = {}): MeanFieldResult {
    this.checkState(state, rows);
    const iterations = opts.iterations ?? 10;
    checkCount(iterations, 'meanField.iterations', 1);
    const damping = opts.damping ?? 0.5;
    if (!(damping > 0 && damping <= 1))
      throw new SpecError('meanField.damping', 'must be in (0, 1]');
    const tol = opts.tolerance ?? 0;
    if (!(tol >= 0)) throw new SpecError('meanField.tolerance', 'must be >= 0');
    const beta = opts.beta ?? this.beta;
    checkBeta(beta, 'meanField.beta');
    this.ensure(rows);
    const net = this.network;
    const k = this.kernels;
    const clamped = this.clampFlags(opts.clamp);
    const site = this.site;
    site.step = opts.step ?? 0;
    site.stream = opts.stream ?? Streams.gibbs;
    site.chainOffset = opts.chainOffset ?? 0;
    const samples = opts.samples ?? null;
    let change = 0;
    let it = 0;
    let last = iterations === 1;
    for (;;) {
      let ss = 0;
      let count = 0;
      for (const group of this.order) {
        for (const l of group) {
          if (clamped[l]) continue;
          const layer = net.layers[l]!;
          const n = layer.size;
          const x = state[l]!;
          const f = this.field[l]!;
          const L = net.laterals[l];
          const mask = this.maskFor(opts.mask, l, rows);
          net.field(l, state, rows, f, this.productBlock);
          if (L) k.sgemm(false, false, rows, n, n, 1, x, n, L, n, 1, f, n);
          site.unitOffset = layer.offset;
          const draw = last && samples ? samples[l]! : null;
          k.sampleUnits(layer.type, rows, n, f, n, net.biases[l]!, beta, f, draw, site);
          if (mask) {
            const save = this.savedBuf(l);
            k.axpby(rows * n, 1, x, 0, save);
            this.restore(l, f, draw, mask, rows, 0, n);
          }
          k.axpby(rows * n, -1, x, 1, f); // f = f(m) - m
          ss += k.sumSquares(rows * n, f);
          count += rows * n;
          k.axpby(rows * n, damping, f, 1, x);
        }
      }
      it++;
      change = count > 0 ? Math.sqrt(ss / count) : 0;
      if (last) break;
      if (it === iterations - 1 || change < tol) last = true;
      if (change < tol && !samples) break;
    }
    return { iterations: it, change };
  }
}

function validateOrder(network: Network, order: readonly (readonly number[])[]): number[][] {
  const seen = new Set<number>();
  const out: number[][] = [];
  order.forEach((group, g) => {
    const grp: number[] = [];
    for (const l of group) {
      if (!Number.isInteger(l) || l < 0 || l >= network.layers.length)
        throw new SpecError(`sampler.order[${g}]`, `layer index ${l} is out of range`);
      if (seen.has(l)) throw new SpecError(`sampler.order[${g}]`, `repeats layer ${l}`);
      seen.add(l);
      grp.push(l);
    }
    for (const c of network.connections) {
      if (grp.includes(c.from) && grp.includes(c.to)) {
        throw new SpecError(
          `sampler.order[${g}]`,
          `holds connected layers ${network.layers[c.from]!.name} and ${network.layers[c.to]!.name}`,
        );
      }
    }
    out.push(grp);
  });
  if (seen.size !== network.layers.length)
    throw new SpecError('sampler.order', 'must name every layer once');
  return out;
}
