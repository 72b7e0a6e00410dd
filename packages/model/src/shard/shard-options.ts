// The checks of a ShardTrainer's options: each names the option at fault (SpecError).
import { SpecError } from '../errors.js';
import {
  type ResolvedTrainOptions,
  type TrainOptions,
  validateTrainOptions,
} from '../train-options.js';
import type { shapeNetwork } from './layout.js';
import type { ShardData } from './shard-types.js';

export function checkSteps(v: unknown, path: string, allowInfinity: boolean): number {
  if (
    typeof v !== 'number' ||
    !((Number.isInteger(v) && v >= 0) || (allowInfinity && v === Infinity))
  )
    throw new SpecError(path, `must be an integer >= 0${allowInfinity ? ' or Infinity' : ''}`);
  return v;
}

export function checkData(data: ShardData | undefined, visibleDims: number): ShardData {
  if (!data || !Number.isInteger(data.rows) || data.rows < 1)
    throw new SpecError('data.rows', 'must be a positive integer');
  if (!(data.x instanceof Float32Array) || data.x.length < data.rows * visibleDims)
    throw new SpecError('data.x', `must be a Float32Array of rows x ${visibleDims} values`);
  return data;
}

export function checkRowGroups(v: unknown, staleness: number): number {
  if (v === undefined) return 1;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 64)
    throw new SpecError('rowGroups', 'must be an integer in 1..64');
  if (v > 1 && staleness !== 0) throw new SpecError('rowGroups', 'above 1 needs staleness 0');
  return v;
}

export function checkTiles(
  tiles: unknown,
  staleness: number,
  productBlock: number,
): 'replicated' | 'owned' {
  if (tiles === undefined || tiles === 'replicated') return 'replicated';
  if (tiles !== 'owned') throw new SpecError('tiles', "must be 'owned' or 'replicated'");
  if (staleness !== 0)
    throw new SpecError(
      'tiles',
      "'owned' needs staleness 0 (a shard draws from its peers' partial fields of the same stage); use 'replicated' for asynchronous runs",
    );
  if (productBlock !== 0) throw new SpecError('train.productBlock', OWNED_PRODUCT_BLOCK);
  return 'owned';
}

/** Why owned tiles refuse train.productBlock. */
export const OWNED_PRODUCT_BLOCK =
  "must be 0 with tiles 'owned': their fields are summed in parts from every shard's rows, an order no block can fix; use 'replicated' tiles for layout-independent fields";

/** Training options for a sharded run: Trainer's, with the two a shard cannot honour refused. */
export function shardTrainOptions(
  train: TrainOptions | undefined,
  net: ReturnType<typeof shapeNetwork>,
): ResolvedTrainOptions {
  const trainIn = { statistics: 'samples', ...(train ?? {}) } as TrainOptions;
  const o = validateTrainOptions(trainIn, net);
  if (o.statistics !== 'samples')
    throw new SpecError(
      'train.statistics',
      "must be 'samples' in a sharded run: a worker sees its peers' spins, not their probabilities",
    );
  if (o.positive === 'meanfield')
    throw new SpecError(
      'train.positive',
      "'meanfield' is not supported in a sharded run (it exchanges real-valued means); use 'exact' or 'sample'",
    );
  return o;
}
