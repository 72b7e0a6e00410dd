// The learning rule as Trainer applies it to a whole network: the parameter list with its
// gradients and velocities, and the steps of one update on the stacked statistics.
import type { Kernels } from '@spinmesh/kernels';
import type { Network, State } from './network.js';
import { learningRateAt } from './schedule.js';
import type { ResolvedTrainOptions } from './train-options.js';
import {
  type StatisticBits,
  applyGradient,
  centreAndScale,
  centringMap,
  lateralCorrelation,
  packStatistics,
  weightCorrelation,
} from './train-rule.js';

/** One parameter array of the network, as the rule and the trainer's state name it. */
export interface TrainedParameter {
  name: string;
  data: Float32Array;
  shape: number[];
  kind: 'bias' | 'lateral' | 'weights';
  /** The layer of a bias or lateral matrix, else -1. */
  layer: number;
  /** The connection of a weight matrix, else -1. */
  conn: number;
}

/** The statistics of one update, stacked per layer: R positive rows, then C negative rows. */
export interface StackedStatistics {
  primary: Float32Array[];
  /** The centred, unscaled copy of the layers on both sides of a product, else null. */
  secondary: (Float32Array | null)[];
  /** The negative rows of each layer (views into primary). */
  negative: State;
  bits: (StatisticBits | null)[];
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

/** What an update reports besides its step. NaN where not measured. */
export interface UpdateFigures {
  learningRate: number;
  updateNorm: number;
  corrDiff: number;
}

/** Biases and laterals per layer, then the weights per connection: the order of state(). */
function parameterList(network: Network): TrainedParameter[] {
  const params: TrainedParameter[] = [];
  for (const l of network.layers) {
    const [layer, conn] = [l.index, -1];
    const bias = network.biases[l.index]!;
    params.push({ name: `${l.name}.bias`, data: bias, shape: [l.size], kind: 'bias', layer, conn });
    const L = network.laterals[l.index];
    const shape = [l.size, l.size];
    if (L) params.push({ name: `${l.name}.lateral`, data: L, shape, kind: 'lateral', layer, conn });
  }
  for (const c of network.connections) {
    const f = network.layers[c.from]!;
    const t = network.layers[c.to]!;
    params.push({
      name: `${f.name}-${t.name}.weights`,
      data: c.weights,
      shape: [f.size, t.size],
      kind: 'weights',
      layer: -1,
      conn: c.index,
    });
  }
  return params;
}

export class TrainerUpdate {
  readonly params: TrainedParameter[];
  /** Velocities, one per parameter array. */
  readonly velocities: Float32Array[];
  private readonly gradients: Float32Array[];
  /** The gradients entry of each layer's bias. */
  private readonly biasGradient: Float32Array[];
  /** Per layer: the data phase's column means (the offsets' running-mean input). */
  private readonly batchMeans: Float32Array[];

  /**
   * `offsets` and `offsetSet` are the trainer's (an update moves them; a layer's first update
   * sets an unset one to its batch mean); `scaled`: Trainer's stacking flags.
   */
  constructor(
    private readonly network: Network,
    private readonly kernels: Kernels,
    private readonly options: ResolvedTrainOptions,
    private readonly offsets: readonly Float32Array[],
    private readonly offsetSet: Uint8Array,
    private readonly scaled: readonly boolean[],
  ) {
    const k = kernels;
    this.params = parameterList(network);
    this.gradients = this.params.map((p) => k.alloc(p.data.length));
    this.velocities = this.params.map((p) => k.alloc(p.data.length));
    this.biasGradient = network.layers.map(
      (l) =>
        this.gradients[this.params.findIndex((p) => p.kind === 'bias' && p.layer === l.index)]!,
    );
    this.batchMeans = network.layers.map((l) => k.alloc(l.size));
  }

  /**
   * The learning rule on stacked statistics: gradient, centring, decay, momentum, parameter and
   * offset update, with the learning rate of step t.
   */
  apply(
    stack: StackedStatistics,
    R: number,
    C: number,
    t: number,
    monitor: boolean,
  ): UpdateFigures {
    const o = this.options;
    const lr = learningRateAt(o.learningRate, o.schedule, t);
    this.centreStatistics(stack, R, C);
    this.correlate(stack, R, C);
    const corrDiff = monitor ? this.meanCorrelationDiff() : NaN;
    if (o.centring) this.centringCorrection();
    const norm2 = this.step(lr, monitor);
    if (o.centring) this.moveOffsets();
    return { learningRate: lr, updateNorm: monitor ? Math.sqrt(norm2) : NaN, corrDiff };
  }

  /** 1. Centres and scales the stacked statistics; bias gradients. */
  private centreStatistics(stack: StackedStatistics, R: number, C: number): void {
    const k = this.kernels;
    const centring = this.options.centring;
    for (const l of this.network.layers) {
      const n = l.size;
      const i = l.index;
      const prim = stack.primary[i]!;
      const bits = stack.bits[i];
      if (bits) packStatistics(k, n, R, C, prim, bits);
      if (centring) {
        k.colSums(R, n, prim, n, 1 / R, 0, this.batchMeans[i]!);
        if (!this.offsetSet[i]) {
          k.axpby(n, 1, this.batchMeans[i]!, 0, this.offsets[i]!);
          this.offsetSet[i] = 1;
        }
      }
      const mu = centring ? this.offsets[i]! : null;
      const scaled = this.scaled[i] ? { sec: stack.secondary[i] ?? null } : null;
      const gb = this.biasGradient[i]!;
      centreAndScale(k, n, R, C, prim, stack.negative[i]!, mu, scaled, [0, n], gb);
    }
  }

  /** 2. Correlation GEMMs: dW = S_from^T U_to over both phases at once. */
  private correlate(stack: StackedStatistics, R: number, C: number): void {
    const net = this.network;
    const k = this.kernels;
    const centring = this.options.centring;
    const { primary, secondary, bits } = stack;
    for (let pi = 0; pi < this.params.length; pi++) {
      const p = this.params[pi]!;
      const g = this.gradients[pi]!;
      if (p.kind === 'weights') {
        const c = net.connections[p.conn]!;
        const nf = net.layers[c.from]!.size;
        const nt = net.layers[c.to]!.size;
        const [from, to] = [bits[c.from], bits[c.to]];
        const mu = centring ? this.offsets[c.from]! : null;
        const lam = centring ? this.offsets[c.to]! : null;
        const counted = from && to ? { R, C, from, r0: 0, to, c0: 0, mu, lam } : null;
        const U = secondary[c.to] ?? primary[c.to]!;
        weightCorrelation(k, nf, nt, R + C, primary[c.from]!, nf, U, nt, g, nt, counted);
      } else if (p.kind === 'lateral') {
        const S = primary[p.layer]!;
        lateralCorrelation(k, net.layers[p.layer]!.size, R + C, S, secondary[p.layer] ?? S, g);
      }
    }
  }

  /** Mean over weights and laterals of |gradient| (before centring's mapping). */
  private meanCorrelationDiff(): number {
    // Plain loops: a sum captured by a closure would live boxed in its context.
    let s = 0;
    let cnt = 0;
    for (let pi = 0; pi < this.params.length; pi++) {
      if (this.params[pi]!.kind === 'bias') continue;
      const g = this.gradients[pi]!;
      this.kernels.download(g);
      for (let j = 0; j < g.length; j++) s += Math.abs(g[j]!);
      cnt += g.length;
    }
    return cnt > 0 ? s / cnt : 0;
  }

  /** 3. Centring: maps the centred gradient to the standard parameters. */
  private centringCorrection(): void {
    const net = this.network;
    const k = this.kernels;
    const bg = this.biasGradient;
    for (let pi = 0; pi < this.params.length; pi++) {
      const p = this.params[pi]!;
      const g = this.gradients[pi]!;
      if (p.kind === 'weights') {
        const c = net.connections[p.conn]!;
        const nf = net.layers[c.from]!.size;
        const nt = net.layers[c.to]!.size;
        centringMap(k, 'rows', nf, nt, g, nt, this.offsets[c.to]!, bg[c.from]!);
        centringMap(k, 'cols', nf, nt, g, nt, this.offsets[c.from]!, bg[c.to]!);
      } else if (p.kind === 'lateral') {
        const n = net.layers[p.layer]!.size;
        centringMap(k, 'rows', n, n, g, n, this.offsets[p.layer]!, bg[p.layer]!);
      }
    }
  }

  /** 4. Decay, momentum, apply; returns the squared norm of the change (monitor only). */
  private step(lr: number, monitor: boolean): number {
    const k = this.kernels;
    const o = this.options;
    const m = o.momentum;
    let norm2 = 0;
    for (let i = 0; i < this.params.length; i++) {
      const p = this.params[i]!;
      const g = this.gradients[i]!;
      const len = p.data.length;
      const isW = p.kind !== 'bias';
      const v = this.velocities[i]!;
      applyGradient(k, p.data, v, g, lr, o, isW);
      if (monitor && isW) norm2 += m > 0 ? k.sumSquares(len, v) : lr * lr * k.sumSquares(len, g);
    }
    return norm2;
  }

  /** 5. Offsets: running means of the data phase. */
  private moveOffsets(): void {
    const nu = this.options.centringRate;
    for (const l of this.network.layers)
      this.kernels.axpby(l.size, nu, this.batchMeans[l.index]!, 1 - nu, this.offsets[l.index]!);
  }
}
