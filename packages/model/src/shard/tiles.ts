// Which tile design a lockstep run should use when its spec does not say: owned tiles save the
// replicated design's duplicate gradient work and send float32 partial fields instead of 1-bit
// spins. Both costs scale with the network's shape, so the choice is the ratio of the two.
import type { Network } from '../network.js';
import type { ResolvedTrainOptions } from '../train-options.js';

/**
 * Owned tiles are chosen when a step's gradient work saved (multiply-adds) is at least this
 * many times the partial-field bytes it adds: a core does some 10-20 multiply-adds in the time
 * the transport spends on a byte (`npm run bench -- scaling` measures both; docs/cluster-scaling.md).
 */
export const OWNED_TILES_MIN_RATIO = 16;

/**
 * Per step and shard of K: the weight-gradient multiply-adds owned tiles save, sum over
 * connections f -> t of (K - 1)/K^2 |F||T| (R + C), over the partial-field bytes they add,
 * sum of (K - 1)/K |T| 4 (R p_t + C n_t), where R and C are the positive and model rows and
 * p_t, n_t how often t is drawn in each phase. K cancels but for one factor: the ratio is
 * sum |F||T|(R + C) / (4 K sum |T|(R p_t + C n_t)).
 */
export function ownedTilesRatio(net: Network, o: ResolvedTrainOptions, shards: number): number {
  const R = o.batchSize;
  const C = o.negative === 'cd' ? o.batchSize : o.chains;
  const positiveDraws = o.positive === 'sample' ? o.positiveIterations : 1;
  let saved = 0;
  let bytes = 0;
  for (const c of net.connections) {
    const f = net.layers[c.from]!.size;
    const t = net.layers[c.to]!.size;
    saved += f * t * (R + C);
    bytes += 4 * shards * t * (R * positiveDraws + C * o.k);
  }
  return bytes === 0 ? Infinity : saved / bytes;
}

/** The tiles of a run that does not choose: owned at staleness 0 where they pay, else replicated. */
export function defaultTiles(
  net: Network,
  o: ResolvedTrainOptions,
  shards: number,
  staleness: number,
): 'owned' | 'replicated' {
  if (staleness !== 0) return 'replicated';
  return ownedTilesRatio(net, o, shards) >= OWNED_TILES_MIN_RATIO ? 'owned' : 'replicated';
}
