// Hopfield networks (Hopfield 1982) as the simplest case of the general network: one Ising
// layer with lateral weights and no connections. Storage is the one-shot Hebbian rule, a
// purely local rule: L_ij depends only on what units i and j see across the patterns.
// Recall is asynchronous descent of the energy E(x) = -1/2 x^T L x - b.x, one unit at a time.
import { type Kernels, philoxW0, seedHalves, UnitType, wordToUniform } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import { Network, type NetworkSpec } from './network.js';

/** The spec of an n-unit Hopfield network: one lateral Ising layer named 'x'. */
export function hopfieldSpec(n: number): NetworkSpec {
  return { layers: [{ name: 'x', size: n, units: 'ising', lateral: true }], connections: [] };
}

/** An n-unit Hopfield network with all weights zero. */
export function createHopfield(n: number, kernels: Kernels): Network {
  return new Network(hopfieldSpec(n), kernels);
}

/** Whether `network` is a Hopfield network: a single lateral ising layer and no connections. */
export function isHopfield(network: Network): boolean {
  const l = network.layers[0]!;
  return (
    network.layers.length === 1 &&
    network.connections.length === 0 &&
    l.lateral &&
    l.type === UnitType.Ising
  );
}

function hopfieldLayer(network: Network): { n: number; L: Float32Array; b: Float32Array } {
  const l = network.layers[0]!;
  if (!isHopfield(network)) {
    throw new SpecError(
      'network',
      'must be a Hopfield network: a single lateral ising layer and no connections',
    );
  }
  return { n: l.size, L: network.laterals[0]!, b: network.biases[0]! };
}

/**
 * Stores `rows` patterns (rows x n, row-major; values in {-1,+1} or {0,1}, 0 read as -1) by the
 * Hebbian rule, replacing any previous weights: L = (1/n) sum_p p p^T with a zero diagonal,
 * and biases 0. Capacity is about 0.14 n random patterns; well below it they are fixed points.
 */
export function storeHebbian(network: Network, patterns: ArrayLike<number>, rows: number): void {
  const { n, L, b } = hopfieldLayer(network);
  const k = network.kernels;
  if (!Number.isInteger(rows) || rows < 0)
    throw new SpecError('rows', `must be a non-negative integer, got ${rows}`);
  if (patterns.length !== rows * n) {
    throw new SpecError(
      'patterns',
      `has ${patterns.length} values, expected rows x n = ${rows * n}`,
    );
  }
  const P = k.alloc(rows * n);
  for (let i = 0; i < P.length; i++) {
    const v = patterns[i]!;
    if (v !== 1 && v !== 0 && v !== -1) {
      throw new SpecError(`patterns[${i}]`, `is ${v}; pattern values must be -1, 0 or 1`);
    }
    P[i] = v > 0 ? 1 : -1;
  }
  k.upload(P);
  if (rows > 0) k.sgemm(true, false, n, n, rows, 1 / n, P, n, P, n, 0, L, n);
  else L.fill(0);
  k.download(L);
  // Force exact symmetry (a blocked GEMM may round the two triangles differently) and the
  // zero diagonal the energy assumes.
  for (let i = 0; i < n; i++) {
    L[i * n + i] = 0;
    for (let j = i + 1; j < n; j++) L[j * n + i] = L[i * n + j]!;
  }
  k.upload(L);
  b.fill(0);
  k.upload(b);
}

export interface RecallOptions {
  /** Most full sweeps over the units. @defaultValue 100 */
  sweeps?: number;
  /**
   * 'deterministic': x_i = sign(h_i), keeping x_i when h_i = 0 (so ties cannot oscillate).
   * 'stochastic': x_i = +1 with probability sigmoid(2 beta h_i) (Glauber dynamics).
   * @defaultValue 'deterministic'
   */
  mode?: 'deterministic' | 'stochastic';
  /** Inverse temperature for 'stochastic'. @defaultValue 1 */
  beta?: number;
  /** Seed of the stochastic draws and of the 'random' order. @defaultValue 0 */
  seed?: number | bigint;
  /**
   * 'sequential': units 0..n-1 in turn each sweep. 'random': a fresh seeded permutation each
   * sweep. @defaultValue 'sequential'
   */
  order?: 'sequential' | 'random';
  /** Units whose mask entry is non-zero keep their cue value. @defaultValue none */
  clamped?: ArrayLike<number | boolean>;
  /** Record the state after every sweep. @defaultValue false */
  trajectory?: boolean;
}

export interface RecallResult {
  /** Final state, values in {-1,+1}. */
  state: Float32Array;
  sweepsRun: number;
  /** A full sweep changed no unit (for 'stochastic', only that no draw changed one). */
  converged: boolean;
  /** States after sweeps 1..sweepsRun, when asked for. */
  trajectory?: Float32Array[];
}

// Counter stream words for recall's draws; arbitrary, fixed.
const STREAM_RECALL = 0x484f5046; // 'HOPF'
const STREAM_ORDER = 0x484f504f; // 'HOPO'

/**
 * Runs asynchronous updates from `cue` (n values in {-1,+1} or {0,1}) until a sweep changes
 * nothing or `sweeps` run out. Draws depend on (seed, unit, sweep) only.
 */
export function recall(
  network: Network,
  cue: ArrayLike<number>,
  opts: RecallOptions = {},
): RecallResult {
  const { n, L, b } = hopfieldLayer(network);
  const k = network.kernels;
  k.download(L);
  k.download(b);
  const { sweeps, mode, beta, order, seedLo, seedHi } = recallSettings(opts, cue.length, n);
  const x = cueState(cue);
  const free = new Uint8Array(n).fill(1);
  if (opts.clamped) for (let i = 0; i < n; i++) if (opts.clamped[i]) free[i] = 0;
  // Local fields h = L x + b, kept current incrementally: a flip of x_i by d adds d L_:i.
  const h = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = b[i]!;
    for (let j = 0; j < n; j++) s += L[i * n + j]! * x[j]!;
    h[i] = s;
  }
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  const trajectory: Float32Array[] | undefined = opts.trajectory ? [] : undefined;
  let sweepsRun = 0;
  let converged = false;
  while (sweepsRun < sweeps) {
    if (order === 'random') {
      shuffle(perm, sweepsRun, seedLo, seedHi);
    }
    let changed = 0;
    for (let t = 0; t < n; t++) {
      const i = perm[t]!;
      if (!free[i]) continue;
      const hi = h[i]!;
      let v: number;
      if (mode === 'deterministic') {
        v = hi > 0 ? 1 : hi < 0 ? -1 : x[i]!;
      } else {
        const p = 1 / (1 + Math.exp(-2 * beta * hi));
        v = wordToUniform(philoxW0(i, 0, sweepsRun, STREAM_RECALL, seedLo, seedHi)) < p ? 1 : -1;
      }
      if (v !== x[i]) {
        const d = v - x[i]!;
        x[i] = v;
        changed++;
        const row = i * n;
        for (let j = 0; j < n; j++) h[j] = h[j]! + d * L[row + j]!;
      }
    }
    sweepsRun++;
    if (trajectory) trajectory.push(x.slice());
    if (changed === 0) {
      converged = true;
      break;
    }
  }
  const result: RecallResult = { state: x, sweepsRun, converged };
  if (trajectory) result.trajectory = trajectory;
  return result;
}

interface RecallSettings {
  sweeps: number;
  mode: 'deterministic' | 'stochastic';
  beta: number;
  order: 'sequential' | 'random';
  seedLo: number;
  seedHi: number;
}

/** recall's options with their defaults, checked against the network's n units. */
function recallSettings(opts: RecallOptions, cueLength: number, n: number): RecallSettings {
  const sweeps = opts.sweeps ?? 100;
  const mode = opts.mode ?? 'deterministic';
  const beta = opts.beta ?? 1;
  const order = opts.order ?? 'sequential';
  if (!Number.isInteger(sweeps) || sweeps < 0)
    throw new SpecError('recall.sweeps', 'must be a non-negative integer');
  if (mode !== 'deterministic' && mode !== 'stochastic') {
    throw new SpecError('recall.mode', "must be 'deterministic' or 'stochastic'");
  }
  if (order !== 'sequential' && order !== 'random')
    throw new SpecError('recall.order', "must be 'sequential' or 'random'");
  if (!(beta >= 0 && Number.isFinite(beta)))
    throw new SpecError('recall.beta', 'must be a finite number >= 0');
  if (cueLength !== n)
    throw new SpecError('cue', `has ${cueLength} values, the network has ${n} units`);
  if (opts.clamped && opts.clamped.length !== n) {
    throw new SpecError(
      'recall.clamped',
      `has ${opts.clamped.length} entries, the network has ${n} units`,
    );
  }
  let seedLo = 0;
  let seedHi = 0;
  try {
    ({ seedLo, seedHi } = seedHalves(opts.seed ?? 0));
  } catch (e) {
    throw new SpecError('recall.seed', (e as Error).message);
  }
  return { sweeps, mode, beta, order, seedLo, seedHi };
}

/** The cue as a state in {-1,+1} (0 reads as -1). */
function cueState(cue: ArrayLike<number>): Float32Array {
  const x = new Float32Array(cue.length);
  for (let i = 0; i < cue.length; i++) {
    const v = cue[i]!;
    if (v !== 1 && v !== 0 && v !== -1)
      throw new SpecError(`cue[${i}]`, `is ${v}; values must be -1, 0 or 1`);
    x[i] = v > 0 ? 1 : -1;
  }
  return x;
}

/** Fisher-Yates shuffle of 0..n-1 into perm, drawn from (seed, sweep). */
function shuffle(perm: Uint32Array, sweep: number, seedLo: number, seedHi: number): void {
  const n = perm.length;
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(
      wordToUniform(philoxW0(i, 0, sweep, STREAM_ORDER, seedLo, seedHi)) * (i + 1),
    );
    const t = perm[i]!;
    perm[i] = perm[j]!;
    perm[j] = t;
  }
}
