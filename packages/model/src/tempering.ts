// Parallel tempering: replicas at increasing inverse temperatures, each swept by block Gibbs,
// with neighbouring replicas swapped by the Metropolis rule (see sampler.ts for the randomness).
import type { RngSite } from '@spinmesh/kernels';
import { type ChainInit, PersistentChains } from './chains.js';
import { SpecError } from './errors.js';
import type { Network, State } from './network.js';
import { GibbsSampler, Streams, checkBeta, checkCount, makeSite } from './sampler.js';

export interface TemperingOptions {
  /** Inverse temperatures, strictly increasing and > 0; the last replica is the target (usually beta = 1). */
  betas: readonly number[];
  /** Chains per replica. */
  chains: number;
  /** @defaultValue 0 */
  seed?: number | bigint;
  /** @defaultValue 0 */
  chainOffset?: number;
  /** @defaultValue 'uniform' */
  init?: ChainInit;
}

/**
 * Parallel tempering (replica exchange): K replicas of `chains` chains at inverse temperatures
 * betas[0] < ... < betas[K-1]. A sweep does one Gibbs sweep of every replica (replica r with
 * stream Streams.tempering + r), then, for each chain, proposes swaps of neighbours
 * (r, r+1) for r = 0..K-2 in turn, accepted with probability
 * min(1, exp((beta_r - beta_{r+1}) (E(x_r) - E(x_{r+1})))) (network.energy), the uniform for
 * pair r of chain c coming from kernels.uniform at (unit r, chain c, step, Streams.swap).
 */
export class ParallelTempering {
  readonly betas: readonly number[];
  readonly replicas: State[];
  readonly chains: number;
  readonly chainOffset: number;
  /** Per neighbour pair r: accepted and proposed swaps so far. */
  readonly accepted: Float64Array;
  readonly proposed: Float64Array;
  readonly sampler: GibbsSampler;
  private readonly u: Float32Array;
  private readonly site: RngSite;

  constructor(
    readonly network: Network,
    opts: TemperingOptions,
  ) {
    const betas = opts.betas;
    if (!Array.isArray(betas) || betas.length < 1)
      throw new SpecError('tempering.betas', 'must be a non-empty array');
    betas.forEach((b, i) => {
      checkBeta(b, `tempering.betas[${i}]`);
      if (i > 0 && !(b > betas[i - 1]!))
        throw new SpecError(`tempering.betas[${i}]`, 'must be greater than the one before');
    });
    this.betas = [...betas];
    checkCount(opts.chains, 'tempering.chains', 1);
    this.chains = opts.chains;
    this.chainOffset = opts.chainOffset ?? 0;
    const seed = opts.seed ?? 0;
    this.sampler = new GibbsSampler(network, { seed });
    // Replica r starts from its own draw (init step r), so replicas do not start identical.
    this.replicas = this.betas.map((_, r) => {
      const pc = new PersistentChains(network, opts.chains, {
        seed,
        chainOffset: this.chainOffset,
        init: 'zeros',
      });
      pc.reset(opts.init ?? 'uniform', r);
      return pc.state;
    });
    const K = this.betas.length;
    this.accepted = new Float64Array(Math.max(K - 1, 0));
    this.proposed = new Float64Array(Math.max(K - 1, 0));
    this.u = network.kernels.alloc(Math.max(K - 1, 1) * this.chains);
    this.site = makeSite(seed);
  }

  /** The replica at the largest beta. */
  get target(): State {
    return this.replicas[this.replicas.length - 1]!;
  }

  /** One sweep of every replica then one round of neighbour swaps, at update step `step`. */
  sweep(step: number): void {
    checkCount(step, 'tempering.step');
    const K = this.betas.length;
    const C = this.chains;
    this.replicas.forEach((st, r) =>
      this.sampler.sweep(st, C, step, {
        beta: this.betas[r]!,
        stream: Streams.tempering + r,
        chainOffset: this.chainOffset,
      }),
    );
    if (K < 2) return;
    const net = this.network;
    const k = net.kernels;
    const energies = this.replicas.map((st) => net.energy(st, C));
    const site = this.site;
    site.unitOffset = 0;
    site.chainOffset = this.chainOffset;
    site.step = step;
    site.stream = Streams.swap;
    k.uniform(this.u, (K - 1) * C, K - 1, site);
    k.download(this.u);
    for (const st of this.replicas) for (const x of st) k.download(x);
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < K - 1; r++) {
        const e0 = energies[r]!;
        const e1 = energies[r + 1]!;
        const logA = (this.betas[r]! - this.betas[r + 1]!) * (e0[c]! - e1[c]!);
        this.proposed[r]!++;
        if (logA >= 0 || this.u[c * (K - 1) + r]! < Math.exp(logA)) {
          this.accepted[r]!++;
          const t = e0[c]!;
          e0[c] = e1[c]!;
          e1[c] = t;
          const a = this.replicas[r]!;
          const b = this.replicas[r + 1]!;
          for (const l of net.layers) {
            const xa = a[l.index]!;
            const xb = b[l.index]!;
            for (let j = c * l.size, end = j + l.size; j < end; j++) {
              const v = xa[j]!;
              xa[j] = xb[j]!;
              xb[j] = v;
            }
          }
        }
      }
    }
    for (const st of this.replicas) for (const x of st) k.upload(x);
  }

  /** `sweeps` sweeps at steps step, step+1, ...; returns the next step. */
  run(sweeps: number, step = 0, onSweep?: (sweep: number, step: number) => void): number {
    checkCount(sweeps, 'tempering.sweeps');
    for (let s = 0; s < sweeps; s++, step++) {
      this.sweep(step);
      onSweep?.(s, step);
    }
    return step;
  }

  /** Accepted / proposed swaps per neighbour pair. */
  acceptanceRates(): Float64Array {
    return this.accepted.map((a, r) => (this.proposed[r]! > 0 ? a / this.proposed[r]! : 0));
  }
}
