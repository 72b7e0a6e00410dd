// The Boltzmann learning rule, for any Network:
//   dW = eps (<x_f x_t^T>_data - <x_f x_t^T>_model),  db = eps (<x>_data - <x>_model),
//   dL = eps (<x x^T>_data - <x x^T>_model) with a zero diagonal, kept exactly symmetric,
// optionally centred (Melchior, Fischer & Wiskott, JMLR 17, 2016) but always stored in the
// standard (uncentred) form, with momentum, L2 weight decay and a learning-rate schedule.
//
// Locality: the update of w_ij reads only units i and j (their phase states and offsets), w_ij
// and its own velocity. Under centring a bias update also reads the weight updates of its own
// unit's synapses (db_i -= sum_j dW_ij lambda_j), a reduction over the unit's synapses like its
// field; nothing else is shared.
//
// Statistics used by the two phases:
// - positive: visible layers hold the data; hidden layers hold
//   'exact'     probabilities p(h | v) (Rao-Blackwellised; only when every hidden layer is
//               lateral-free and connects to visible layers only),
//   'meanfield' damped mean-field means (n iterations, visible clamped),
//   'sample'    n clamped Gibbs sweeps: the sampled states, except the layers of the last group
//               of the sweep without laterals, which give their conditional probabilities;
// - negative: the chain's sampled states after k sweeps, except the lateral-free layers of the
//   last group updated in the last sweep, which give the probabilities they were drawn with
//   (as standard CD implementations use p(h | v_k)). This is exact (an unbiased estimate of
//   the same expectation) because those units are conditionally independent given the others.
// With `statistics: 'samples'` every statistic is a sampled state instead: the data, the drawn
// hidden states of the positive phase (for 'exact', h ~ p(h | v) with the same draw CD chains
// start from; for 'meanfield', a draw from each unit's mean-field conditional) and the chains'
// states. The offsets are then running means of each unit's own data-phase samples. This is
// the single-process reference of a sharded run (shard/), where a worker sees only the 1-bit
// spins of its peers' units, never their probabilities.
//
// Randomness (see sampler.ts): batch t uses step = t. Positive draws use stream
// Streams.positive (+ clamped sweep index), negative sweep s uses Streams.negative + s. The chain
// index is chainOffset + row of the batch (positive phase and CD) or chainOffset + persistent
// chain index (PCD).
//
// Fast path. Each layer has one stacked buffer of (rows + chains) x size: rows [0, B) hold the
// positive statistics, rows [B, B+C) the negative ones. After centring (shiftScaleRows), layers
// on the `from` side of a connection are scaled by +1/B and -1/C, so each weight gradient is ONE
// sgemm (A^T H over both phases) and each bias gradient one colSums. For an RBM with an exact
// positive phase and k = 1 a batch costs 4 GEMMs (5 GEMM-equivalents): p(h|data), v|h, h|v and
// the correlation GEMM with k = B + C; centring adds two matrix-vector products (dW lambda,
// dW^T mu) and a monitored batch one more GEMM (the reconstruction). Momentum, decay and the
// updates are axpby calls. Every buffer is allocated once (and grown only if a call needs more
// rows than any before).
import { type Kernels, type RngSite, UnitType, bitWords, seedHalves } from '@spinmesh/kernels';
import { epochOrder } from './data/dataset.js';
import { SpecError } from './errors.js';
import type { StateArray } from './io/modelfile.js';
import type { Network, State } from './network.js';
import { type ChainInit, GibbsSampler, PersistentChains, Streams } from './sampler.js';
import { type LearningRateSchedule, learningRateAt, validateSchedule } from './schedule.js';
import { isRecord } from './checks.js';
import { quote } from './quote.js';

export type NegativePhase = 'cd' | 'pcd';
export type PositivePhase = 'auto' | 'exact' | 'meanfield' | 'sample';
/**
 * What the rule averages: 'means' uses conditional means where they are exact (lower variance);
 * 'samples' uses sampled states for everything (what a sharded run can reproduce).
 */
export type Statistics = 'means' | 'samples';

export interface TrainOptions {
  /** The clamped data layers; a data row is their units concatenated in this order. @defaultValue [name of the first layer] */
  visible?: string[];
  /** Rows per batch. @defaultValue 100 */
  batchSize?: number;
  /** Base learning rate (> 0). @defaultValue 0.05 */
  learningRate?: number;
  /** @defaultValue { type: 'constant' } */
  schedule?: LearningRateSchedule;
  /** Momentum in [0, 1): v <- momentum v + lr (grad - weightDecay W); param += v. @defaultValue 0 */
  momentum?: number;
  /** L2 weight decay on weights and laterals (not biases). @defaultValue 0 */
  weightDecay?: number;
  /** 'cd': chains start at the data each batch; 'pcd': persistent chains. @defaultValue 'cd' */
  negative?: NegativePhase;
  /** Persistent chains (pcd). @defaultValue batchSize */
  chains?: number;
  /** Gibbs sweeps of the negative phase per batch. @defaultValue 1 */
  k?: number;
  /** @defaultValue 'auto' ('exact' where possible, else 'meanfield') */
  positive?: PositivePhase;
  /** Mean-field iterations or clamped sweeps of the positive phase. @defaultValue 10 */
  positiveIterations?: number;
  /** Mean-field damping in (0, 1]. @defaultValue 0.5 */
  damping?: number;
  /**
   * 'means': the hidden statistics of the exact positive phase, of mean field and of the last
   * group of a sweep are conditional means (Rao-Blackwellised); 'samples': every statistic is a
   * sampled state, so a statistic of w_ij is a product of two spins (see the file header; the
   * monitored reconstruction error then starts from the sampled hidden states too).
   * @defaultValue 'means'
   */
  statistics?: Statistics;
  /** Centred gradient (offsets = running means of the data-phase activations). @defaultValue false */
  centring?: boolean;
  /** Sliding factor of the offsets' running means, in (0, 1]. @defaultValue 0.01 */
  centringRate?: number;
  /** @defaultValue 0 */
  seed?: number;
  /** Global index of this trainer's first batch row / chain (for sharded runs). @defaultValue 0 */
  chainOffset?: number;
  /** Where persistent chains start. @defaultValue 'uniform' */
  chainInit?: ChainInit;
  /** trainEpoch computes monitoring statistics on every n-th batch. @defaultValue 10 */
  monitorEvery?: number;
}

export interface ResolvedTrainOptions {
  visible: string[];
  batchSize: number;
  learningRate: number;
  schedule: LearningRateSchedule;
  momentum: number;
  weightDecay: number;
  negative: NegativePhase;
  chains: number;
  k: number;
  positive: Exclude<PositivePhase, 'auto'>;
  positiveIterations: number;
  damping: number;
  statistics: Statistics;
  centring: boolean;
  centringRate: number;
  seed: number;
  chainOffset: number;
  chainInit: ChainInit;
  monitorEvery: number;
}

const OPTION_KEYS = [
  'visible',
  'batchSize',
  'learningRate',
  'schedule',
  'momentum',
  'weightDecay',
  'negative',
  'chains',
  'k',
  'positive',
  'positiveIterations',
  'damping',
  'statistics',
  'centring',
  'centringRate',
  'seed',
  'chainOffset',
  'chainInit',
  'monitorEvery',
] as const;

function num(
  o: Record<string, unknown>,
  key: string,
  def: number,
  ok: (v: number) => boolean,
  rule: string,
): number {
  const v = o[key] ?? def;
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v))
    throw new SpecError(`train.${key}`, `must be ${rule}`);
  return v;
}

function int(o: Record<string, unknown>, key: string, def: number, min: number): number {
  return num(
    o,
    key,
    def,
    (v) => Number.isInteger(v) && v >= min && v <= Number.MAX_SAFE_INTEGER,
    `an integer >= ${min}`,
  );
}

/** Whether the hidden layers are conditionally independent given the visible ones. */
function exactPossible(network: Network, visible: readonly number[]): boolean {
  for (const l of network.layers) {
    if (visible.includes(l.index)) continue;
    if (l.lateral) return false;
  }
  return network.connections.every((c) => visible.includes(c.from) || visible.includes(c.to));
}

/**
 * Step 1 of the Boltzmann update for one layer of n units whose R positive rows (`prim`) and C
 * negative rows (`neg`, stacked after them) hold its statistics: centres them by `mu` (none if
 * null) and, for a layer whose correlations are taken from these rows (`scaled`), scales them by
 * 1/R and -1/C, keeping the centred, unscaled rows in `scaled.sec` when the layer has one; and
 * writes the bias gradient of units [cols[0], cols[1]) into gb (none if `cols` is null). Trainer and
 * ShardTrainer both take it from here, so their updates stay the same operations.
 */
export function centreAndScale(
  k: Kernels,
  n: number,
  R: number,
  C: number,
  prim: Float32Array,
  neg: Float32Array,
  mu: Float32Array | null,
  scaled: { sec: Float32Array | null } | null,
  cols: readonly [number, number] | null,
  gb: Float32Array,
): void {
  const total = R + C;
  if (scaled) {
    if (scaled.sec) {
      if (mu) k.shiftScaleRows(total, n, prim, n, mu, 1);
      k.axpby(total * n, 1, prim, 0, scaled.sec);
      k.shiftScaleRows(R, n, prim, n, null, 1 / R);
      k.shiftScaleRows(C, n, neg, n, null, -1 / C);
    } else {
      k.shiftScaleRows(R, n, prim, n, mu, 1 / R);
      k.shiftScaleRows(C, n, neg, n, mu, -1 / C);
    }
    if (cols) k.colSums(total, cols[1] - cols[0], prim.subarray(cols[0]), n, 1, 0, gb);
  } else {
    if (mu) k.shiftScaleRows(total, n, prim, n, mu, 1);
    if (cols) {
      k.colSums(R, cols[1] - cols[0], prim.subarray(cols[0]), n, 1 / R, 0, gb);
      k.colSums(C, cols[1] - cols[0], neg.subarray(cols[0]), n, -1 / C, 1, gb);
    }
  }
}

/**
 * The correlation of a lateral layer over `rows` rows, g = S^T U (n x n), made exactly symmetric
 * with a zero diagonal: (g_ij + g_ji) / 2 reads units i and j only. Trainer and ShardTrainer
 * both take it from here, so their lateral updates stay the same operations.
 */
export function lateralCorrelation(
  k: Kernels,
  n: number,
  rows: number,
  S: Float32Array,
  U: Float32Array,
  g: Float32Array,
): void {
  k.sgemm(true, false, n, n, rows, 1, S, n, U, n, 0, g, n);
  k.download(g);
  for (let a = 0; a < n; a++) {
    g[a * n + a] = 0;
    for (let b = a + 1; b < n; b++) {
      const s = 0.5 * (g[a * n + b]! + g[b * n + a]!);
      g[a * n + b] = s;
      g[b * n + a] = s;
    }
  }
  k.upload(g);
}

/**
 * Step 2 for a block of weights: the correlation of its `from` units (columns of S, m of them)
 * with its `to` units (columns of U, w of them) over the `rows` stacked rows, out = S^T U
 * (m x w, row stride ldOut). Trainer takes whole matrices; ShardTrainer one tile at a time, with
 * the same shape and operands on both holders of a tile (each writes it where it keeps it).
 *
 * With `bits` (R positive and C negative rows, both layers' column bits), the value of a pair
 * of units whose statistics are all 0 or 1 is counted from the bits instead
 * (Kernels.bitCorrelation; at 784x500 over 100 + 100 rows, packing included, 0.33 ms against
 * 1.3 ms for one thread's GEMM: `npm run bench -- kernels`): the same centred correlation,
 * exact but for one rounding. A pair with an odd unit keeps the GEMM's value.
 * Either way each value depends only on its own two units and their rows, so a tile of the
 * result is exactly that block of the whole matrix.
 */
export function weightCorrelation(
  k: Kernels,
  m: number,
  w: number,
  rows: number,
  S: Float32Array,
  ldS: number,
  U: Float32Array,
  ldU: number,
  out: Float32Array,
  ldOut: number,
  bits: BlockBits | null = null,
): void {
  const odd = bits !== null && (anyOdd(bits.from, bits.r0, m) || anyOdd(bits.to, bits.c0, w));
  if (bits === null || odd) k.sgemm(true, false, m, w, rows, 1, S, ldS, U, ldU, 0, out, ldOut);
  if (bits === null) return;
  const { R, C, from, r0, to, c0, mu, lam } = bits;
  const wr = bitWords(R);
  const wc = bitWords(C);
  k.bitCorrelation(
    m,
    w,
    R,
    C,
    from.pos.subarray(r0 * wr),
    from.neg.subarray(r0 * wc),
    to.pos.subarray(c0 * wr),
    to.neg.subarray(c0 * wc),
    mu ? mu.subarray(r0) : null,
    lam ? lam.subarray(c0) : null,
    odd ? from.odd.subarray(r0) : null,
    odd ? to.odd.subarray(c0) : null,
    out,
    ldOut,
  );
}

/** Whether a unit of [a, a + n) has a value other than 0 and 1 in the packed rows. */
function anyOdd(bits: StatisticBits, a: number, n: number): boolean {
  if (bits.binary) return false;
  for (let i = a; i < a + n; i++) if (bits.odd[i]) return true;
  return false;
}

/**
 * Column bits of one layer's stacked statistics (Kernels.packColumns of its positive and its
 * negative rows, taken before centring), for `weightCorrelation`. `odd[i]` marks a unit with a
 * value other than 0 and 1 in them (real-valued data, or values this shard does not refresh),
 * `binary` that there is none: with sampled statistics (as a cluster always has) the states
 * of Bernoulli units are 0 or 1, and the data may be.
 */
export interface StatisticBits {
  pos: Uint32Array;
  neg: Uint32Array;
  odd: Uint8Array;
  binary: boolean;
}

/** Room for the column bits of a layer of n units over up to maxR and maxC rows. */
function statisticBits(n: number, maxR: number, maxC: number): StatisticBits {
  return {
    pos: new Uint32Array(n * bitWords(maxR)),
    neg: new Uint32Array(n * bitWords(maxC)),
    odd: new Uint8Array(n),
    binary: false,
  };
}

/** Packs rows [0, R) and [R, R + C) of a layer's raw stacked statistics (n units a row). */
export function packStatistics(
  k: Kernels,
  n: number,
  R: number,
  C: number,
  prim: Float32Array,
  bits: StatisticBits,
): void {
  bits.odd.fill(0);
  const pos = k.packColumns(R, n, prim, n, bits.pos, bits.odd);
  const neg = k.packColumns(C, n, prim.subarray(R * n), n, bits.neg, bits.odd);
  bits.binary = pos && neg;
}

/**
 * What `weightCorrelation` counts a block from: the positive and negative row counts, both
 * layers' column bits and where the block starts in each, their centring offsets (or null).
 */
export interface BlockBits {
  R: number;
  C: number;
  from: StatisticBits;
  r0: number;
  to: StatisticBits;
  c0: number;
  mu: Float32Array | null;
  lam: Float32Array | null;
}

/**
 * Which layers' statistics are worth packing into bits: with sampled statistics, the Bernoulli
 * layers at either end of a connection (Ising states are -1 or 1, Gaussian ones real; laterals
 * keep their GEMM). Null for the others.
 */
export function bitLayers(
  net: {
    layers: readonly { index: number; size: number; type: UnitType }[];
    connections: readonly { from: number; to: number }[];
  },
  statistics: Statistics,
  maxR: number,
  maxC: number,
  include: (layer: number) => boolean = () => true,
): (StatisticBits | null)[] {
  return net.layers.map((l) =>
    statistics === 'samples' &&
    l.type === UnitType.Bernoulli &&
    include(l.index) &&
    net.connections.some((c) => c.from === l.index || c.to === l.index)
      ? statisticBits(l.size, maxR, maxC)
      : null,
  );
}

/**
 * Step 3 under centring, mapping the centred gradient to the standard parameters: a bias
 * gradient loses its unit's weight gradients times the offsets of the units at their other end.
 * For the `rows` x `cols` block g (leading dimension ld): `side` 'rows' subtracts g . offsets
 * (one per column) from the row units' bias gradient, 'cols' subtracts g^T . offsets (one per
 * row) from the column units'. A lateral matrix is its own other side ('rows', n x n).
 */
export function centringMap(
  k: Kernels,
  side: 'rows' | 'cols',
  rows: number,
  cols: number,
  g: Float32Array,
  ld: number,
  offsets: Float32Array,
  biasGrad: Float32Array,
): void {
  if (side === 'rows') k.sgemm(false, false, rows, 1, cols, -1, g, ld, offsets, 1, 1, biasGrad, 1);
  else k.sgemm(true, false, cols, 1, rows, -1, g, ld, offsets, 1, 1, biasGrad, 1);
}

/**
 * The last part of the update of one parameter array (Trainer and ShardTrainer alike): weight
 * decay into the gradient g (weights only), then momentum into the velocity v and v into the
 * data, or without momentum lr x g into the data.
 */
export function applyGradient(
  k: Kernels,
  data: Float32Array,
  v: Float32Array,
  g: Float32Array,
  lr: number,
  o: Pick<ResolvedTrainOptions, 'momentum' | 'weightDecay'>,
  isWeight: boolean,
): void {
  const len = data.length;
  if (isWeight && o.weightDecay > 0) k.axpby(len, -o.weightDecay, data, 1, g);
  if (o.momentum > 0) {
    k.axpby(len, lr, g, o.momentum, v);
    k.axpby(len, 1, v, 1, data);
  } else {
    k.axpby(len, lr, g, 1, data);
  }
}

/** Checks training options (from untrusted input) against a network; fills in defaults. @throws SpecError */
export function validateTrainOptions(input: unknown, network: Network): ResolvedTrainOptions {
  if (input === undefined) input = {};
  if (!isRecord(input)) throw new SpecError('train', 'must be an object');
  for (const k of Object.keys(input)) {
    if (!(OPTION_KEYS as readonly string[]).includes(k)) {
      throw new SpecError(
        `train.${quote(k)}`,
        `is not a known field (allowed: ${OPTION_KEYS.join(', ')})`,
      );
    }
  }
  const vis = input['visible'] ?? [network.layers[0]!.name];
  if (!Array.isArray(vis) || vis.length === 0)
    throw new SpecError('train.visible', 'must be a non-empty array of layer names');
  const visible: string[] = [];
  vis.forEach((v: unknown, i) => {
    if (typeof v !== 'string' || !network.layers.some((l) => l.name === v)) {
      throw new SpecError(
        `train.visible[${i}]`,
        `must name a layer (one of ${network.layers.map((l) => l.name).join(', ')})`,
      );
    }
    if (visible.includes(v)) throw new SpecError(`train.visible[${i}]`, `repeats '${quote(v)}'`);
    visible.push(v);
  });
  const batchSize = int(input, 'batchSize', 100, 1);
  const learningRate = num(input, 'learningRate', 0.05, (v) => v > 0, '> 0');
  const schedule = validateSchedule(input['schedule'], 'train.schedule');
  const momentum = num(input, 'momentum', 0, (v) => v >= 0 && v < 1, 'in [0, 1)');
  const weightDecay = num(input, 'weightDecay', 0, (v) => v >= 0, 'a finite number >= 0');
  const negative = input['negative'] ?? 'cd';
  if (negative !== 'cd' && negative !== 'pcd')
    throw new SpecError('train.negative', "must be 'cd' or 'pcd'");
  const chains = int(input, 'chains', batchSize, 1);
  const k = int(input, 'k', 1, 1);
  if (k > 0xffff) throw new SpecError('train.k', 'must be <= 65535');
  const positiveIn = input['positive'] ?? 'auto';
  if (!['auto', 'exact', 'meanfield', 'sample'].includes(positiveIn as string)) {
    throw new SpecError('train.positive', "must be 'auto', 'exact', 'meanfield' or 'sample'");
  }
  const visIdx = visible.map((v) => network.layerIndex(v));
  const canExact = exactPossible(network, visIdx);
  if (positiveIn === 'exact' && !canExact) {
    throw new SpecError(
      'train.positive',
      "'exact' needs every hidden layer to be free of laterals and connected to visible layers only; use 'meanfield' or 'sample'",
    );
  }
  const positive =
    positiveIn === 'auto'
      ? canExact
        ? 'exact'
        : 'meanfield'
      : (positiveIn as 'exact' | 'meanfield' | 'sample');
  const positiveIterations = int(input, 'positiveIterations', 10, 1);
  if (positiveIterations > 0xffff)
    throw new SpecError('train.positiveIterations', 'must be <= 65535');
  const damping = num(input, 'damping', 0.5, (v) => v > 0 && v <= 1, 'in (0, 1]');
  const statistics = input['statistics'] ?? 'means';
  if (statistics !== 'means' && statistics !== 'samples')
    throw new SpecError('train.statistics', "must be 'means' or 'samples'");
  const centring = input['centring'] ?? false;
  if (typeof centring !== 'boolean') throw new SpecError('train.centring', 'must be a boolean');
  const centringRate = num(input, 'centringRate', 0.01, (v) => v > 0 && v <= 1, 'in (0, 1]');
  const seed = int(input, 'seed', 0, 0);
  const chainOffset = int(input, 'chainOffset', 0, 0);
  const chainInit = (input['chainInit'] ?? 'uniform') as ChainInit;
  if (!(
    chainInit === 'uniform' ||
    chainInit === 'biases' ||
    chainInit === 'zeros' ||
    (isRecord(chainInit) && isRecord(chainInit['means']))
  )) {
    throw new SpecError('train.chainInit', "must be 'uniform', 'biases', 'zeros' or { means }");
  }
  const monitorEvery = int(input, 'monitorEvery', 10, 1);
  return {
    visible,
    batchSize,
    learningRate,
    schedule,
    momentum,
    weightDecay,
    negative,
    chains: negative === 'pcd' ? chains : batchSize,
    k,
    positive,
    positiveIterations,
    damping,
    statistics,
    centring,
    centringRate,
    seed,
    chainOffset,
    chainInit,
    monitorEvery,
  };
}

/** What one update reports. NaN where a statistic was not computed (monitor off). */
export interface TrainStats {
  /** Update step this batch used. */
  step: number;
  learningRate: number;
  /** Mean over rows of sum_j (v_j - E[v_j | h = positive hidden means])^2, visible layers together. */
  reconstructionError: number;
  /** Euclidean norm of the change of all weights and laterals. */
  updateNorm: number;
  /** Mean over weights and laterals of |<x_i x_j>_data - <x_i x_j>_model| (centred when centring). */
  corrDiff: number;
}

export interface EpochStats {
  epoch: number;
  batches: number;
  rows: number;
  seconds: number;
  /** Means over the monitored batches. */
  reconstructionError: number;
  updateNorm: number;
  corrDiff: number;
}

export interface EpochOptions {
  /** Row order; default epochOrder(rows, seed, epoch). */
  order?: ArrayLike<number>;
  /** @defaultValue the trainer's monitorEvery */
  monitorEvery?: number;
}

function split48(v: number): Float32Array {
  return Float32Array.of(v % 65536, Math.floor(v / 65536) % 65536, Math.floor(v / 4294967296));
}

function join48(a: Float32Array): number {
  return a[0]! + a[1]! * 65536 + a[2]! * 4294967296;
}

/** Trains a Network with the Boltzmann rule. */
export class Trainer {
  readonly options: ResolvedTrainOptions;
  readonly kernels: Kernels;
  readonly sampler: GibbsSampler;
  /** Persistent chains (pcd), else null. */
  readonly chains: PersistentChains | null;
  /** Layer indices of the visible layers, in data order. */
  readonly visible: readonly number[];
  readonly hidden: readonly number[];
  /** Centring offsets per layer (running means of the data phase); used only with centring. */
  readonly offsets: readonly Float32Array[];

  private step = 0;
  private epoch = 0;
  private readonly offsetInit: Uint8Array;
  private readonly isVisible: boolean[];
  private readonly visibleDims: number;
  private readonly scaled: boolean[];
  private readonly unscaledCopy: boolean[];
  private readonly params: {
    name: string;
    data: Float32Array;
    shape: number[];
    kind: 'bias' | 'lateral' | 'weights';
    layer: number;
    conn: number;
  }[];
  private readonly grads: Float32Array[];
  /** Column bits of the statistics of the layers that may be all 0 or 1 (bitLayers). */
  private bits: (StatisticBits | null)[] = [];
  /** grads entry of each layer's bias. */
  private readonly biasGrad: Float32Array[];
  private readonly vels: Float32Array[];
  private readonly bmean: Float32Array[];
  private readonly site: RngSite;
  private readonly neutral: number[];
  private readonly lastGroup: boolean[];
  private readonly firstGroup: boolean[];
  /**
   * Positive-phase sample states of hidden layers (CD: the chains; PCD with 'sample', or with
   * 'meanfield' and sampled statistics: own buffers).
   */
  private posSample: State = [];
  /** CD chain buffers (PCD uses chains.state). */
  private negState: State;
  private posCap = 0;
  private negCap = 0;
  private primary: Float32Array[] = [];
  private secondary: (Float32Array | null)[] = [];
  private recon: Float32Array[] = [];
  // views for the current (rows, chains) pair
  private vR = -1;
  private vC = -1;
  private posView: State = [];
  private negView: State = [];
  private sampleView: State = [];
  private negMeans: (Float32Array | null)[] = [];
  private negChain: State = [];
  private readonly clampVisible: number[];

  constructor(
    readonly network: Network,
    options: TrainOptions = {},
  ) {
    const o = validateTrainOptions(options, network);
    this.options = o;
    const k = network.kernels;
    this.kernels = k;
    this.visible = o.visible.map((v) => network.layerIndex(v));
    this.isVisible = network.layers.map((l) => this.visible.includes(l.index));
    this.hidden = network.layers.filter((l) => !this.isVisible[l.index]).map((l) => l.index);
    this.clampVisible = [...this.visible];
    this.visibleDims = this.visible.reduce((s, l) => s + network.layers[l]!.size, 0);
    // Sweep order: the group holding the first visible layer first, so a sweep from the data
    // ends on the hidden side.
    const groups = network.colouring();
    const first = groups.findIndex((g) => g.includes(this.visible[0]!));
    const order = [groups[first]!, ...groups.filter((_, i) => i !== first)];
    this.sampler = new GibbsSampler(network, { seed: o.seed, order });
    this.firstGroup = network.layers.map((l) => order[0]!.includes(l.index));
    // Layers whose statistics are conditional means (none when statistics are samples).
    this.lastGroup = network.layers.map(
      (l) =>
        o.statistics === 'means' &&
        order.length > 1 &&
        order[order.length - 1]!.includes(l.index) &&
        !l.lateral,
    );
    this.scaled = network.layers.map(
      (l) => l.lateral || network.connections.some((c) => c.from === l.index),
    );
    this.unscaledCopy = network.layers.map(
      (l) =>
        this.scaled[l.index]! && (l.lateral || network.connections.some((c) => c.to === l.index)),
    );
    this.params = [];
    for (const l of network.layers) {
      this.params.push({
        name: `${l.name}.bias`,
        data: network.biases[l.index]!,
        shape: [l.size],
        kind: 'bias',
        layer: l.index,
        conn: -1,
      });
      const L = network.laterals[l.index];
      if (L)
        this.params.push({
          name: `${l.name}.lateral`,
          data: L,
          shape: [l.size, l.size],
          kind: 'lateral',
          layer: l.index,
          conn: -1,
        });
    }
    for (const c of network.connections) {
      const f = network.layers[c.from]!;
      const t = network.layers[c.to]!;
      this.params.push({
        name: `${f.name}-${t.name}.weights`,
        data: c.weights,
        shape: [f.size, t.size],
        kind: 'weights',
        layer: -1,
        conn: c.index,
      });
    }
    this.grads = this.params.map((p) => k.alloc(p.data.length));
    this.vels = this.params.map((p) => k.alloc(p.data.length));
    this.biasGrad = network.layers.map(
      (l) => this.grads[this.params.findIndex((p) => p.kind === 'bias' && p.layer === l.index)]!,
    );
    this.bmean = network.layers.map((l) => k.alloc(l.size));
    this.neutral = network.layers.map((l) => (l.type === UnitType.Bernoulli ? 0.5 : 0));
    this.offsets = network.layers.map((l) => {
      const mu = k.alloc(l.size);
      mu.fill(this.neutral[l.index]!);
      k.upload(mu);
      return mu;
    });
    this.offsetInit = Uint8Array.from(network.layers, (l) => (this.isVisible[l.index] ? 0 : 1));
    const { seedLo, seedHi } = seedHalves(o.seed);
    this.site = {
      seedLo,
      seedHi,
      unitOffset: 0,
      chainOffset: o.chainOffset,
      step: 0,
      stream: Streams.positive,
    };
    this.chains =
      o.negative === 'pcd'
        ? new PersistentChains(network, o.chains, {
            seed: o.seed,
            chainOffset: o.chainOffset,
            init: o.chainInit,
          })
        : null;
    this.negState = this.chains ? this.chains.state : network.allocState(o.batchSize);
    this.ensure(o.batchSize, o.chains);
  }

  /** The update step the next batch uses. */
  get stepCount(): number {
    return this.step;
  }

  /** Epochs done by trainEpoch. */
  get epochCount(): number {
    return this.epoch;
  }

  /** Sets a layer's centring offsets (e.g. the visible data mean before training). */
  setOffsets(layer: string, values: ArrayLike<number>): void {
    const l = this.network.layerIndex(layer);
    const mu = this.offsets[l]!;
    if (values.length !== mu.length)
      throw new SpecError('offsets', `must hold ${mu.length} values`);
    for (let j = 0; j < mu.length; j++) mu[j] = values[j]!;
    this.kernels.upload(mu);
    this.offsetInit[l] = 1;
  }

  /** Allocates stacked buffers for R positive rows and C negative rows (only when growing). */
  private ensure(R: number, C: number): void {
    if (R <= this.posCap && C <= this.negCap) return;
    const k = this.kernels;
    const net = this.network;
    this.posCap = Math.max(R, this.posCap);
    this.negCap = Math.max(C, this.negCap);
    const rows = this.posCap + this.negCap;
    this.primary = net.layers.map((l) => k.alloc(rows * l.size));
    this.secondary = net.layers.map((l) =>
      this.unscaledCopy[l.index] ? k.alloc(rows * l.size) : null,
    );
    this.recon = this.visible.map((l) => k.alloc(this.posCap * net.layers[l]!.size));
    this.bits = bitLayers(net, this.options.statistics, this.posCap, this.negCap);
    this.posSample = net.layers.map((l) =>
      this.isVisible[l.index] ? k.alloc(0) : k.alloc(this.posCap * l.size),
    );
    if (!this.chains && this.negState[0]!.length < this.posCap * net.layers[0]!.size)
      this.negState = net.allocState(this.posCap);
    this.vR = -1;
  }

  private views(R: number, C: number): void {
    if (R === this.vR && C === this.vC) return;
    const net = this.network;
    this.posView = net.layers.map((l) => this.primary[l.index]!.subarray(0, R * l.size));
    this.negView = net.layers.map((l) =>
      this.primary[l.index]!.subarray(R * l.size, (R + C) * l.size),
    );
    this.negMeans = net.layers.map((l) =>
      this.lastGroup[l.index] ? this.negView[l.index]! : null,
    );
    const chainState = this.chains ? this.chains.state : this.negState;
    this.negChain = chainState;
    // State for clamped positive sweeps: visible = data; hidden = CD chains or own buffers.
    this.sampleView = net.layers.map((l) =>
      this.isVisible[l.index]
        ? this.posView[l.index]!
        : this.chains
          ? this.posSample[l.index]!
          : this.negState[l.index]!,
    );
    this.vR = R;
    this.vC = C;
  }

  private copy(n: number, src: Float32Array, dst: Float32Array): void {
    this.kernels.axpby(n, 1, src, 0, dst);
  }

  /**
   * Positive phase for R rows whose visible data are staged in posView: hidden statistics into
   * posView; with CD, also a hidden sample into the chain state.
   */
  private positivePhase(R: number, t: number): void {
    const net = this.network;
    const k = this.kernels;
    const o = this.options;
    const cd = !this.chains;
    const site = this.site;
    site.step = t;
    site.stream = Streams.positive;
    site.chainOffset = o.chainOffset;
    const samples = o.statistics === 'samples';
    if (o.positive === 'exact') {
      for (const h of this.hidden) {
        const layer = net.layers[h]!;
        const P = this.posView[h]!;
        net.field(h, this.posView, R, P);
        site.unitOffset = layer.offset;
        // 'samples': the draw CD chains start from is the statistic itself (same site)
        k.sampleUnits(
          layer.type,
          R,
          layer.size,
          P,
          layer.size,
          net.biases[h]!,
          1,
          samples ? null : P,
          samples ? P : cd ? this.negState[h]! : null,
          site,
        );
        if (samples && cd) this.copy(R * layer.size, P, this.negState[h]!);
      }
      return;
    }
    if (o.positive === 'meanfield') {
      for (const h of this.hidden) {
        this.posView[h]!.fill(this.neutral[h]!);
        k.upload(this.primary[h]!);
      }
      const draws = cd ? this.negState : samples ? this.posSample : null;
      this.sampler.meanField(this.posView, R, {
        iterations: o.positiveIterations,
        damping: o.damping,
        clamp: this.clampVisible,
        samples: draws,
        step: t,
        stream: Streams.positive,
        chainOffset: o.chainOffset,
      });
      if (samples)
        for (const h of this.hidden)
          this.copy(R * net.layers[h]!.size, draws![h]!, this.posView[h]!);
      return;
    }
    // 'sample'
    const Q = this.sampleView;
    for (const h of this.hidden) {
      const x = Q[h]!;
      x.fill(0, 0, R * net.layers[h]!.size);
      k.upload(x);
    }
    const n = o.positiveIterations;
    const means = net.layers.map((l) =>
      this.lastGroup[l.index] && !this.isVisible[l.index] ? this.posView[l.index]! : null,
    );
    for (let s = 0; s < n; s++) {
      this.sampler.sweep(Q, R, t, {
        clamp: this.clampVisible,
        stream: Streams.positive + s,
        chainOffset: o.chainOffset,
        means: s === n - 1 ? means : undefined,
      });
    }
    for (const h of this.hidden)
      if (!means[h]) this.copy(R * net.layers[h]!.size, Q[h]!, this.posView[h]!);
  }

  /** Negative phase: k sweeps of the C chains; statistics into negView. */
  private negativePhase(R: number, C: number, t: number): void {
    const net = this.network;
    const o = this.options;
    const N = this.negChain;
    if (!this.chains) {
      // CD: chains start at the positive sample; layers of the first group are redrawn before
      // anything reads them, so only the others need the data / hidden sample, except a
      // lateral layer, whose unit-by-unit sweep reads its own units not yet redrawn.
      for (const v of this.visible) {
        if (!this.firstGroup[v] || net.layers[v]!.lateral)
          this.copy(R * net.layers[v]!.size, this.posView[v]!, N[v]!);
      }
    }
    for (let s = 0; s < o.k; s++) {
      this.sampler.sweep(N, C, t, {
        stream: Streams.negative + s,
        chainOffset: o.chainOffset,
        means: s === o.k - 1 ? this.negMeans : undefined,
      });
    }
    for (const l of net.layers) {
      if (!this.negMeans[l.index]) this.copy(C * l.size, N[l.index]!, this.negView[l.index]!);
    }
  }

  /** Mean-field reconstruction error of the visible data from the positive hidden statistics. */
  private reconstruction(R: number): number {
    const net = this.network;
    const k = this.kernels;
    let err = 0;
    this.visible.forEach((v, i) => {
      const layer = net.layers[v]!;
      const n = layer.size;
      const f = this.recon[i]!;
      net.field(v, this.posView, R, f);
      k.sampleUnits(layer.type, R, n, f, n, net.biases[v]!, 1, f, null, this.site);
      k.axpby(R * n, -1, this.posView[v]!, 1, f);
      err += k.sumSquares(R * n, f);
    });
    return err / R;
  }

  /**
   * The learning rule on stacked statistics (R positive rows, C negative rows already in
   * posView/negView): gradient, centring, decay, momentum, parameter and offset update.
   */
  private update(R: number, C: number, monitor: boolean): TrainStats {
    const net = this.network;
    const k = this.kernels;
    const o = this.options;
    const t = this.step;
    const lr = learningRateAt(o.learningRate, o.schedule, t);
    const centring = o.centring;
    const total = R + C;
    const grads = this.grads;
    // 1. centre and scale the stacked statistics; bias gradients
    const biasGrad = this.biasGrad;
    let pi = 0;
    for (const l of net.layers) {
      const n = l.size;
      const i = l.index;
      const prim = this.primary[i]!;
      const gb = biasGrad[i]!;
      const bits = this.bits[i];
      if (bits) packStatistics(k, n, R, C, prim, bits);
      if (centring) {
        k.colSums(R, n, prim, n, 1 / R, 0, this.bmean[i]!);
        if (!this.offsetInit[i]) {
          this.copy(n, this.bmean[i]!, this.offsets[i]!);
          this.offsetInit[i] = 1;
        }
      }
      const mu = centring ? this.offsets[i]! : null;
      const scaled = this.scaled[i] ? { sec: this.secondary[i] ?? null } : null;
      centreAndScale(k, n, R, C, prim, this.negView[i]!, mu, scaled, [0, n], gb);
    }
    // 2. correlation GEMMs: dW = S_from^T U_to over both phases at once
    pi = 0;
    for (const p of this.params) {
      const g = grads[pi++]!;
      if (p.kind === 'weights') {
        const c = net.connections[p.conn]!;
        const nf = net.layers[c.from]!.size;
        const nt = net.layers[c.to]!.size;
        const [from, to] = [this.bits[c.from], this.bits[c.to]];
        const bits =
          from && to
            ? {
                R,
                C,
                from,
                r0: 0,
                to,
                c0: 0,
                mu: centring ? this.offsets[c.from]! : null,
                lam: centring ? this.offsets[c.to]! : null,
              }
            : null;
        const U = this.secondary[c.to] ?? this.primary[c.to]!;
        weightCorrelation(k, nf, nt, total, this.primary[c.from]!, nf, U, nt, g, nt, bits);
      } else if (p.kind === 'lateral') {
        const S = this.primary[p.layer]!;
        lateralCorrelation(k, net.layers[p.layer]!.size, total, S, this.secondary[p.layer] ?? S, g);
      }
    }
    let corrDiff = NaN;
    if (monitor) {
      let s = 0;
      let cnt = 0;
      pi = 0;
      for (const p of this.params) {
        const g = grads[pi++]!;
        if (p.kind === 'bias') continue;
        k.download(g);
        for (let j = 0; j < g.length; j++) s += Math.abs(g[j]!);
        cnt += g.length;
      }
      corrDiff = cnt > 0 ? s / cnt : 0;
    }
    // 3. centring: map the centred gradient to the standard parameters
    if (centring) {
      pi = 0;
      for (const p of this.params) {
        const g = grads[pi++]!;
        if (p.kind === 'weights') {
          const c = net.connections[p.conn]!;
          const nf = net.layers[c.from]!.size;
          const nt = net.layers[c.to]!.size;
          centringMap(k, 'rows', nf, nt, g, nt, this.offsets[c.to]!, biasGrad[c.from]!);
          centringMap(k, 'cols', nf, nt, g, nt, this.offsets[c.from]!, biasGrad[c.to]!);
        } else if (p.kind === 'lateral') {
          const n = net.layers[p.layer]!.size;
          centringMap(k, 'rows', n, n, g, n, this.offsets[p.layer]!, biasGrad[p.layer]!);
        }
      }
    }
    // 4. decay, momentum, apply
    const m = o.momentum;
    let norm2 = 0;
    pi = 0;
    for (const p of this.params) {
      const i = pi++;
      const g = grads[i]!;
      const len = p.data.length;
      const isW = p.kind !== 'bias';
      const v = this.vels[i]!;
      applyGradient(k, p.data, v, g, lr, o, isW);
      if (monitor && isW) norm2 += m > 0 ? k.sumSquares(len, v) : lr * lr * k.sumSquares(len, g);
    }
    // 5. offsets: running means of the data phase
    if (centring) {
      const nu = o.centringRate;
      for (const l of net.layers)
        k.axpby(l.size, nu, this.bmean[l.index]!, 1 - nu, this.offsets[l.index]!);
    }
    this.step = t + 1;
    return {
      step: t,
      learningRate: lr,
      reconstructionError: NaN,
      updateNorm: monitor ? Math.sqrt(norm2) : NaN,
      corrDiff,
    };
  }

  private checkRows(rows: number, path: string, max: number): void {
    if (!Number.isInteger(rows) || rows < 1 || rows > max)
      throw new SpecError(path, `must be an integer in 1..${max}`);
  }

  /**
   * The pure learning rule: one update from given phase states (state[l] is rows x size for
   * every layer; values are the statistics: data, probabilities or samples). Uses and advances
   * the step counter (learning-rate schedule) and updates velocities and offsets.
   */
  applyUpdate(
    posState: State,
    posRows: number,
    negState: State,
    negRows: number,
    monitor = true,
  ): TrainStats {
    this.checkRows(posRows, 'applyUpdate.posRows', Number.MAX_SAFE_INTEGER);
    this.checkRows(negRows, 'applyUpdate.negRows', Number.MAX_SAFE_INTEGER);
    const net = this.network;
    for (const l of net.layers) {
      if (!posState[l.index] || posState[l.index]!.length < posRows * l.size)
        throw new SpecError(`posState[${l.index}]`, `must hold posRows x ${l.size} values`);
      if (!negState[l.index] || negState[l.index]!.length < negRows * l.size)
        throw new SpecError(`negState[${l.index}]`, `must hold negRows x ${l.size} values`);
    }
    this.ensure(posRows, negRows);
    this.views(posRows, negRows);
    for (const l of net.layers) {
      this.kernels.download(posState[l.index]!);
      this.kernels.download(negState[l.index]!);
      this.posView[l.index]!.set(posState[l.index]!.subarray(0, posRows * l.size));
      this.negView[l.index]!.set(negState[l.index]!.subarray(0, negRows * l.size));
      this.kernels.upload(this.primary[l.index]!);
    }
    return this.update(posRows, negRows, monitor);
  }

  /** Copies `rows` data rows (rows x visibleDims, from row `start` of order or directly) into posView. */
  private stage(
    src: Float32Array,
    rows: number,
    order: ArrayLike<number> | null,
    start: number,
    dataRows: number,
  ): void {
    const net = this.network;
    const d = this.visibleDims;
    if (this.visible.length === 1 && !order) {
      this.posView[this.visible[0]!]!.set(src.subarray(0, rows * d));
    } else {
      for (let r = 0; r < rows; r++) {
        const row = order ? order[start + r]! : r;
        if (!(row >= 0 && row < dataRows))
          throw new SpecError(
            `order[${start + r}]`,
            `is ${row}, not a row index in 0..${dataRows - 1}`,
          );
        let off = row * d;
        for (const v of this.visible) {
          const n = net.layers[v]!.size;
          this.posView[v]!.set(src.subarray(off, off + n), r * n);
          off += n;
        }
      }
    }
    for (const v of this.visible) this.kernels.upload(this.primary[v]!);
  }

  private trainStaged(R: number, monitor: boolean): TrainStats {
    const C = this.chains ? this.options.chains : R;
    const t = this.step;
    this.positivePhase(R, t);
    const recon = monitor ? this.reconstruction(R) : NaN;
    this.negativePhase(R, C, t);
    const stats = this.update(R, C, monitor);
    stats.reconstructionError = recon;
    return stats;
  }

  /**
   * One update from a batch of `rows` data rows (rows x visible units, visible layers
   * concatenated), at update step `step` (default: the trainer's counter, which then becomes
   * step + 1).
   */
  trainBatch(batch: Float32Array, rows: number, step?: number, monitor = true): TrainStats {
    this.checkRows(rows, 'trainBatch.rows', this.options.batchSize);
    if (batch.length < rows * this.visibleDims)
      throw new SpecError('trainBatch.batch', `must hold rows x ${this.visibleDims} values`);
    if (step !== undefined) {
      if (!Number.isInteger(step) || step < 0)
        throw new SpecError('trainBatch.step', 'must be an integer >= 0');
      this.step = step;
    }
    const C = this.chains ? this.options.chains : rows;
    this.views(rows, C);
    this.stage(batch, rows, null, 0, rows);
    return this.trainStaged(rows, monitor);
  }

  /**
   * One epoch over `rows` rows of x (rows x visible units) in batches of batchSize, in the
   * given order or epochOrder(rows, seed, epoch). Visible centring offsets that were never set
   * start at the data mean.
   */
  trainEpoch(x: Float32Array, rows: number, opts: EpochOptions = {}): EpochStats {
    const t0 = performance.now();
    if (!Number.isInteger(rows) || rows < 1)
      throw new SpecError('trainEpoch.rows', 'must be a positive integer');
    const d = this.visibleDims;
    if (x.length < rows * d) throw new SpecError('trainEpoch.x', `must hold rows x ${d} values`);
    const order = opts.order ?? epochOrder(rows, this.options.seed, this.epoch);
    const every = opts.monitorEvery ?? this.options.monitorEvery;
    if (!Number.isInteger(every) || every < 1)
      throw new SpecError('trainEpoch.monitorEvery', 'must be a positive integer');
    if (this.options.centring) this.initVisibleOffsets(x, rows);
    const B = this.options.batchSize;
    let batches = 0;
    let monitored = 0;
    let rec = 0;
    let norm = 0;
    let corr = 0;
    for (let start = 0; start < order.length; start += B) {
      const R = Math.min(B, order.length - start);
      const C = this.chains ? this.options.chains : R;
      this.views(R, C);
      this.stage(x, R, order, start, rows);
      const monitor = batches % every === 0;
      const s = this.trainStaged(R, monitor);
      if (monitor) {
        monitored++;
        rec += s.reconstructionError;
        norm += s.updateNorm;
        corr += s.corrDiff;
      }
      batches++;
    }
    this.epoch++;
    return {
      epoch: this.epoch - 1,
      batches,
      rows: order.length,
      seconds: (performance.now() - t0) / 1000,
      reconstructionError: rec / Math.max(monitored, 1),
      updateNorm: norm / Math.max(monitored, 1),
      corrDiff: corr / Math.max(monitored, 1),
    };
  }

  private initVisibleOffsets(x: Float32Array, rows: number): void {
    const net = this.network;
    let off = 0;
    for (const v of this.visible) {
      const n = net.layers[v]!.size;
      if (!this.offsetInit[v]) {
        const s = new Float64Array(n);
        const d = this.visibleDims;
        for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) s[j]! += x[r * d + off + j]!;
        const mu = this.offsets[v]!;
        for (let j = 0; j < n; j++) mu[j] = s[j]! / rows;
        this.kernels.upload(mu);
        this.offsetInit[v] = 1;
      }
      off += n;
    }
  }

  /**
   * Everything besides the network's parameters that training depends on, as named arrays:
   * trainer.step / trainer.epoch (48-bit counters as three 16-bit floats), velocity.<param>,
   * offset.<layer> and trainer.offsetsSet, and chains.<layer> (pcd).
   */
  state(): Record<string, StateArray> {
    const k = this.kernels;
    const out: Record<string, StateArray> = {};
    out['trainer.step'] = { data: split48(this.step), shape: [3] };
    out['trainer.epoch'] = { data: split48(this.epoch), shape: [3] };
    this.params.forEach((p, i) => {
      k.download(this.vels[i]!);
      out[`velocity.${p.name}`] = { data: this.vels[i]!.slice(), shape: [...p.shape] };
    });
    for (const l of this.network.layers) {
      k.download(this.offsets[l.index]!);
      out[`offset.${l.name}`] = { data: this.offsets[l.index]!.slice(), shape: [l.size] };
    }
    out['trainer.offsetsSet'] = {
      data: Float32Array.from(this.offsetInit),
      shape: [this.offsetInit.length],
    };
    if (this.chains) {
      for (const l of this.network.layers) {
        const x = this.chains.state[l.index]!;
        k.download(x);
        out[`chains.${l.name}`] = { data: x.slice(), shape: [this.chains.count, l.size] };
      }
    }
    return out;
  }

  /** Restores what state() returned (same network spec and options). @throws SpecError */
  restoreState(s: Readonly<Record<string, StateArray>>): void {
    const k = this.kernels;
    const expected = this.state();
    for (const [name, e] of Object.entries(expected)) {
      const got = s[name];
      if (!got) throw new SpecError(`state.${name}`, 'is missing');
      if (
        got.shape.length !== e.shape.length ||
        got.shape.some((v, i) => v !== e.shape[i]) ||
        got.data.length !== e.data.length
      ) {
        throw new SpecError(
          `state.${name}`,
          `has shape [${got.shape.join(', ')}], expected [${e.shape.join(', ')}]`,
        );
      }
    }
    this.step = join48(s['trainer.step']!.data);
    this.epoch = join48(s['trainer.epoch']!.data);
    this.params.forEach((p, i) => {
      this.vels[i]!.set(s[`velocity.${p.name}`]!.data);
      k.upload(this.vels[i]!);
    });
    for (const l of this.network.layers) {
      this.offsets[l.index]!.set(s[`offset.${l.name}`]!.data);
      k.upload(this.offsets[l.index]!);
    }
    this.offsetInit.set(s['trainer.offsetsSet']!.data);
    if (this.chains) {
      for (const l of this.network.layers) {
        this.chains.state[l.index]!.set(s[`chains.${l.name}`]!.data);
        k.upload(this.chains.state[l.index]!);
      }
    }
  }
}
