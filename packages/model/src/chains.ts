// Persistent chains: a set of model states that live across updates (PCD) and across calls,
// with their initial draws (see sampler.ts for the randomness).
import { UnitType } from '@spinmesh/kernels';
import { SpecError } from './errors.js';
import type { Network, State } from './network.js';
import { Streams, checkCount, makeSite, resolveLayer, type LayerRef } from './sampler.js';

/** Where persistent chains start. */
export type ChainInit =
  | 'uniform'
  | 'biases'
  | 'zeros'
  | {
      /**
       * Per layer name, the mean of each unit: a probability for Bernoulli, E[x] in (-1, 1) for
       * Ising, the mean for Gaussian (unit variance). Layers not named start 'uniform'.
       */
      means: Readonly<Record<string, ArrayLike<number>>>;
    };

export interface ChainOptions {
  /** @defaultValue 0 */
  seed?: number | bigint;
  /** Global index of the first chain held here. @defaultValue 0 */
  chainOffset?: number;
  /**
   * 'uniform': independent units with field 0 (Bernoulli and Ising fair coins, Gaussian
   * N(0,1)); 'biases': independent units from the biases alone; 'zeros': all zero; or given
   * means. @defaultValue 'uniform'
   */
  init?: ChainInit;
}

/**
 * out[j] = the bias that gives one free unit of `type` the mean means[j] (logit for Bernoulli,
 * atanh for Ising, the mean itself for Gaussian), clipped away from the saturated ends.
 * @throws SpecError at `path` when the lengths differ.
 */
export function biasForMeans(
  type: UnitType,
  means: ArrayLike<number>,
  out: Float32Array,
  path: string,
): void {
  const n = out.length;
  if (means.length !== n) throw new SpecError(path, `must hold ${n} values`);
  for (let j = 0; j < n; j++) {
    const m = means[j]!;
    if (type === UnitType.Bernoulli) {
      const p = Math.min(Math.max(m, 1e-7), 1 - 1e-7);
      out[j] = Math.log(p / (1 - p));
    } else if (type === UnitType.Ising) {
      out[j] = Math.atanh(Math.min(Math.max(m, -1 + 1e-7), 1 - 1e-7));
    } else {
      out[j] = m;
    }
  }
}

/** States of `count` chains, e.g. the fantasy particles of persistent contrastive divergence. */
export class PersistentChains {
  readonly state: State;
  readonly chainOffset: number;
  private readonly seed: number | bigint;

  constructor(
    readonly network: Network,
    readonly count: number,
    opts: ChainOptions = {},
  ) {
    checkCount(count, 'chains.count', 1);
    this.chainOffset = opts.chainOffset ?? 0;
    checkCount(this.chainOffset, 'chains.chainOffset');
    this.seed = opts.seed ?? 0;
    this.state = network.allocState(count);
    this.reset(opts.init ?? 'uniform');
  }

  /** Redraws every chain from `init` (draws use Streams.chainInit at step `step`). */
  reset(init: ChainInit = 'uniform', step = 0): void {
    const net = this.network;
    const k = net.kernels;
    const site = makeSite(this.seed);
    site.chainOffset = this.chainOffset;
    site.step = step;
    site.stream = Streams.chainInit;
    if (typeof init === 'object') {
      for (const name of Object.keys(init.means))
        resolveLayer(net, name, `chains.init.means.${name}`);
    } else if (init !== 'uniform' && init !== 'biases' && init !== 'zeros') {
      throw new SpecError('chains.init', 'must be uniform, biases, zeros or { means }');
    }
    for (const l of net.layers) {
      const x = this.state[l.index]!;
      const n = l.size;
      if (init === 'zeros') {
        x.fill(0);
        k.upload(x);
        continue;
      }
      const bias = k.alloc(n);
      const field = k.alloc(this.count * n);
      const means = typeof init === 'object' ? init.means[l.name] : undefined;
      if (means) {
        biasForMeans(l.type, means, bias, `chains.init.means.${l.name}`);
      } else if (init === 'biases') {
        k.download(net.biases[l.index]!);
        bias.set(net.biases[l.index]!);
      }
      k.upload(bias);
      site.unitOffset = l.offset;
      k.sampleUnits(l.type, this.count, n, field, n, bias, 1, null, x, site);
    }
  }

  /** Sets layer `layer` of every chain c to row (c mod rows) of data (rows x size). */
  setLayer(layer: LayerRef, data: ArrayLike<number>, rows: number): void {
    const l = resolveLayer(this.network, layer, 'chains.layer');
    const n = this.network.layers[l]!.size;
    checkCount(rows, 'chains.rows', 1);
    if (data.length < rows * n) throw new SpecError('chains.data', `must hold rows x ${n} values`);
    const x = this.state[l]!;
    for (let c = 0; c < this.count; c++) {
      const r = c % rows;
      for (let j = 0; j < n; j++) x[c * n + j] = data[r * n + j]!;
    }
    this.network.kernels.upload(x);
  }
}
