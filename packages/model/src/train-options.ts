// Training options: the types, their defaults, and the validator that checks them against a
// network (untrusted input: the job spec's `train` part).
import { isRecord } from './checks.js';
import { SpecError } from './errors.js';
import type { Network } from './network.js';
import { quote } from './quote.js';
import type { ChainInit } from './chains.js';
import { type LearningRateSchedule, validateSchedule } from './schedule.js';

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
  /**
   * Compute every layer's fields in blocks of this many units cut at fixed unit indices
   * (multiples of it), one product per block, instead of one product per layer or shard. A
   * BLAS library rounds a column of a product according to where it lies in the call
   * (OpenBLAS: differently within 8 columns of a call's or a cache block's edge), so a field
   * computed in one call of a shard's width differs in the last bit from the same field of
   * another layout. Cut at fixed indices, each block is the same call in every layout whose
   * shard boundaries are multiples of the block, and in one process: such runs are then equal
   * bit for bit with native kernels too (a rebalanced run equals the one it moved from). Costs
   * a few per cent of the products (docs/job-spec.md, "Rebalancing"). 0: off. @defaultValue 0
   */
  productBlock?: number;
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
  productBlock: number;
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
  'productBlock',
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

/** Checks training options (from untrusted input) against a network; fills in defaults. @throws SpecError */
export function validateTrainOptions(input: unknown, network: Network): ResolvedTrainOptions {
  // Long by design (exempt in test/shape.test.ts): a validator, one check per field.
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
  const productBlock = int(input, 'productBlock', 0, 0);
  if (productBlock > 65536) throw new SpecError('train.productBlock', 'must be <= 65536');
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
    productBlock,
  };
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
