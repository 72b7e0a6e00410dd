// What a trained network is used for: drawing samples, completing a partial pattern by letting
// the network settle through its loops (the "second look"), and showing its receptive fields.
// The coordinator's ModelService and the CLI both run these; they are pure functions of the
// network, the request and the seed.
import { UnitType } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import { isHopfield, recall } from './hopfield.js';
import { GibbsSampler, PersistentChains, resolveLayer, Streams } from './sampler.js';
import type { Network } from './network.js';

/** Largest inverse temperature used for temperature 0 (greedy updates of binary units). */
const GREEDY_BETA = 1e6;

function count(v: number, path: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max)
    throw new SpecError(path, `must be an integer in [${min}, ${max}], got ${v}`);
  return v;
}

function betaOf(temperature: number, path: string): number {
  if (!(Number.isFinite(temperature) && temperature >= 0))
    throw new SpecError(path, `must be a finite number >= 0, got ${temperature}`);
  return temperature === 0 ? GREEDY_BETA : Math.min(1 / temperature, GREEDY_BETA);
}

function visibleIndex(net: Network, visible: string | undefined, path: string): number {
  return visible === undefined ? 0 : resolveLayer(net, visible, path);
}

export interface SampleOptions {
  /** Independent chains, one sample each. */
  count: number;
  /** Gibbs sweeps from the start state. @defaultValue 1000 */
  sweeps?: number;
  /** Temperature T (beta = 1/T); 0 = greedy. @defaultValue 1 */
  temperature?: number;
  /** @defaultValue 0 */
  seed?: number;
  /** Layer returned. @defaultValue the first layer */
  visible?: string;
}

export interface SampleResult {
  rows: number;
  dims: number;
  layer: string;
  /** The sampled states of the layer after the last sweep (rows x dims). */
  states: Float32Array;
  /** The conditional means the last sweep drew them from (rows x dims). */
  means: Float32Array;
}

/**
 * Draws `count` samples: each chain starts from independent units given their biases and runs
 * `sweeps` block-Gibbs sweeps. Draws depend on (seed, chain, unit, sweep) only.
 */
export function sampleNetwork(net: Network, opts: SampleOptions): SampleResult {
  const rows = count(opts.count, 'sample.count', 1, 1 << 24);
  const sweeps = count(opts.sweeps ?? 1000, 'sample.sweeps', 1, 1e7);
  const beta = betaOf(opts.temperature ?? 1, 'sample.temperature');
  const l = visibleIndex(net, opts.visible, 'sample.visible');
  const layer = net.layers[l]!;
  const seed = opts.seed ?? 0;
  const chains = new PersistentChains(net, rows, { seed, init: 'biases' });
  const sampler = new GibbsSampler(net, { seed, beta });
  const means = net.kernels.alloc(rows * layer.size);
  const meansOf = net.layers.map((_, i) => (i === l ? means : null));
  sampler.run(chains.state, rows, sweeps - 1, { stream: Streams.gibbs });
  sampler.sweep(chains.state, rows, sweeps - 1, { means: meansOf });
  const states = chains.state[l]!;
  net.kernels.download(states);
  net.kernels.download(means);
  return { rows, dims: layer.size, layer: layer.name, states: states.slice(), means };
}

export interface CompleteOptions {
  /**
   * The cues: rows x dims values of the visible layer. Known units keep them; the others start
   * from them (a noisy or blank guess: 0 for an unknown bernoulli unit, say).
   */
  values: ArrayLike<number>;
  /** Which units are known (non-zero): dims entries for every row, or rows x dims. */
  known: ArrayLike<number | boolean>;
  /** @defaultValue 1 */
  rows?: number;
  /** Sweeps to settle. @defaultValue 50 */
  sweeps?: number;
  /**
   * Temperature T: the free units are Gibbs-sampled at beta = 1/T; 0 = greedy (each unit takes
   * its more probable value; for a Hopfield network, asynchronous descent of the energy).
   * @defaultValue 1, or 0 for a Hopfield network
   */
  temperature?: number;
  /** @defaultValue 0 */
  seed?: number;
  /** Return the state of the visible layer after every sweep. @defaultValue false */
  trajectory?: boolean;
  /** The layer the cue belongs to. @defaultValue the first layer */
  visible?: string;
}

export interface CompleteResult {
  rows: number;
  dims: number;
  /** The completed patterns (rows x dims): the known units as given, the rest settled. */
  values: Float32Array;
  /**
   * The probability that each unit is on (Bernoulli) or its mean (Ising, Gaussian) in the last
   * sweep; known units hold their given value. For a Hopfield network, equal to `values`.
   */
  means: Float32Array;
  sweepsRun: number;
  /** Settled: a sweep changed no unit (greedy settling only; false when sampling). */
  converged: boolean;
  /** The visible states after sweeps 1..sweepsRun (each rows x dims), when asked for. */
  trajectory?: Float32Array[];
}

/**
 * Completes partial patterns: the known units are clamped to their cue values, the other layers
 * are drawn given the whole cue, and the network settles through its loops for up to `sweeps`
 * sweeps, the unknown visible units starting from their cue values.
 */
export function completePattern(net: Network, opts: CompleteOptions): CompleteResult {
  const rows = count(opts.rows ?? 1, 'complete.rows', 1, 1 << 20);
  const sweeps = count(opts.sweeps ?? 50, 'complete.sweeps', 1, 1e6);
  const l = visibleIndex(net, opts.visible, 'complete.visible');
  const knownAt = checkCue(net, opts, l, rows);
  const cue: Cue = { rows, l, sweeps, knownAt };
  if (isHopfield(net) && (opts.temperature ?? 0) === 0) return completeHopfield(net, opts, cue);
  return completeBySampling(net, opts, cue);
}

/** A checked completion request: rows, the visible layer, sweeps, and which units are known. */
interface Cue {
  rows: number;
  l: number;
  sweeps: number;
  knownAt: (r: number, j: number) => boolean;
}

/** Checks the cue's values and known mask against the layer; returns the mask's reader. */
function checkCue(
  net: Network,
  opts: CompleteOptions,
  l: number,
  rows: number,
): (r: number, j: number) => boolean {
  const layer = net.layers[l]!;
  const n = layer.size;
  if (opts.values.length !== rows * n)
    throw new SpecError(
      'complete.values',
      `has ${opts.values.length} values, expected rows x ${n} = ${rows * n}`,
    );
  if (opts.known.length !== n && opts.known.length !== rows * n)
    throw new SpecError(
      'complete.known',
      `has ${opts.known.length} entries, expected ${n} or rows x ${n} = ${rows * n}`,
    );
  for (let i = 0; i < rows * n; i++) {
    const v = opts.values[i]!;
    if (!Number.isFinite(v)) throw new SpecError(`complete.values[${i}]`, `is ${v}`);
    if (layer.type !== UnitType.Gaussian) {
      const ok = layer.type === UnitType.Bernoulli ? v === 0 || v === 1 : v === 1 || v === -1;
      if (!ok && !(layer.type === UnitType.Ising && isHopfield(net) && v === 0))
        throw new SpecError(
          `complete.values[${i}]`,
          `is ${v}; ${layer.type === UnitType.Bernoulli ? 'units of a bernoulli layer are 0 or 1' : 'units of an ising layer are -1 or 1 (0 reads as -1 in a Hopfield network)'}`,
        );
    }
  }
  return (r, j) => Boolean(opts.known.length === n ? opts.known[j] : opts.known[r * n + j]);
}

/** Asynchronous energy descent of a Hopfield network, row by row, from the cue. */
function completeHopfield(net: Network, opts: CompleteOptions, cue: Cue): CompleteResult {
  const { rows, l, sweeps, knownAt } = cue;
  const n = net.layers[l]!.size;
  const trajectory: Float32Array[] | undefined = opts.trajectory ? [] : undefined;
  const values = new Float32Array(rows * n);
  const steps: Float32Array[][] = [];
  let sweepsRun = 0;
  let converged = true;
  for (let r = 0; r < rows; r++) {
    const rowCue = new Float32Array(n);
    const clamped = new Uint8Array(n);
    for (let j = 0; j < n; j++) {
      clamped[j] = knownAt(r, j) ? 1 : 0;
      rowCue[j] = opts.values[r * n + j]!;
    }
    const res = recall(net, rowCue, { sweeps, clamped, trajectory: opts.trajectory ?? false });
    values.set(res.state, r * n);
    sweepsRun = Math.max(sweepsRun, res.sweepsRun);
    converged &&= res.converged;
    if (res.trajectory) steps.push(res.trajectory);
  }
  if (trajectory) {
    // Rows that settled early keep their final state in the later frames.
    for (let s = 0; s < sweepsRun; s++) {
      const frame = new Float32Array(rows * n);
      for (let r = 0; r < rows; r++) {
        const t = steps[r]!;
        frame.set(t[Math.min(s, t.length - 1)] ?? values.subarray(r * n, (r + 1) * n), r * n);
      }
      trajectory.push(frame);
    }
  }
  return {
    rows,
    dims: n,
    values,
    means: values.slice(),
    sweepsRun,
    converged,
    ...(trajectory ? { trajectory } : {}),
  };
}

/** Gibbs sampling at the request's temperature (greedy settling at 0) with the known units clamped. */
function completeBySampling(net: Network, opts: CompleteOptions, cue: Cue): CompleteResult {
  const { rows, l, sweeps, knownAt } = cue;
  const layer = net.layers[l]!;
  const n = layer.size;
  const seed = opts.seed ?? 0;
  const trajectory: Float32Array[] | undefined = opts.trajectory ? [] : undefined;
  const beta = betaOf(opts.temperature ?? 1, 'complete.temperature');
  const k = net.kernels;
  const chains = new PersistentChains(net, rows, { seed, init: 'uniform' });
  const x = chains.state[l]!;
  const mask = new Uint8Array(rows * n);
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < n; j++) {
      mask[r * n + j] = knownAt(r, j) ? 1 : 0;
      x[r * n + j] = opts.values[r * n + j]!;
    }
  k.upload(x);
  const sampler = new GibbsSampler(net, { seed, beta });
  // The other layers first see the whole cue (step 'sweeps' is never used by the loop below).
  if (net.layers.length > 1) sampler.sweep(chains.state, rows, sweeps, { clamp: [l] });
  const means = k.alloc(rows * n);
  const meansOf = net.layers.map((_, i) => (i === l ? means : null));
  const prev = new Float32Array(rows * n);
  let converged = false;
  let sweepsRun = 0;
  for (let s = 0; s < sweeps; s++) {
    if (temperatureIsGreedy(beta)) prev.set(x);
    sampler.sweep(chains.state, rows, s, { mask: { [layer.name]: mask }, means: meansOf });
    sweepsRun = s + 1;
    k.download(x);
    if (trajectory) trajectory.push(x.slice());
    if (temperatureIsGreedy(beta) && s > 0 && x.every((v, i) => v === prev[i])) {
      converged = true;
      break;
    }
  }
  k.download(means);
  for (let i = 0; i < rows * n; i++) if (mask[i]) means[i] = x[i]!;
  return {
    rows,
    dims: n,
    values: x.slice(),
    means,
    sweepsRun,
    converged,
    ...(trajectory ? { trajectory } : {}),
  };
}

function temperatureIsGreedy(beta: number): boolean {
  return beta >= GREEDY_BETA;
}

export interface ReceptiveFields {
  /** One field per unit of the other layer. */
  count: number;
  /** Values per field: the size of the visible layer. */
  dims: number;
  /** count x dims: field f holds the weights from hidden unit f to every visible unit. */
  values: Float32Array;
  layer: string;
  hiddenLayer: string;
}

/**
 * The receptive fields of the units connected to the visible layer: for the first connection
 * that touches it, the weights of each unit on the other side, one row per unit.
 */
export function receptiveFields(
  net: Network,
  opts: { visible?: string; limit?: number } = {},
): ReceptiveFields {
  const l = visibleIndex(net, opts.visible, 'filters.visible');
  const layer = net.layers[l]!;
  const c = net.connections.find((c) => c.from === l || c.to === l);
  if (!c)
    throw new SpecError(
      'filters.visible',
      `layer '${layer.name}' has no connection to another layer: no receptive fields to show`,
    );
  const W = c.weights;
  net.kernels.download(W);
  const other = net.layers[c.from === l ? c.to : c.from]!;
  const total = other.size;
  const fields = Math.min(total, opts.limit ?? total);
  const n = layer.size;
  const values = new Float32Array(fields * n);
  // W is from-size x to-size, row-major.
  for (let f = 0; f < fields; f++)
    for (let j = 0; j < n; j++)
      values[f * n + j] = c.from === l ? W[j * total + f]! : W[f * n + j]!;
  return { count: fields, dims: n, values, layer: layer.name, hiddenLayer: other.name };
}

/** The height x width of an image row of `dims` pixels: a square, or a single row. */
export function imageShape(dims: number): [number, number] {
  const s = Math.round(Math.sqrt(dims));
  return s * s === dims ? [s, s] : [1, dims];
}
