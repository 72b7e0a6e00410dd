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
import { type Kernels, type RngSite, UnitType, seedHalves } from '@spinmesh/kernels';
import { epochOrder } from './data/dataset.js';
import { SpecError } from './errors.js';
import type { StateArray } from './io/modelfile.js';
import type { Network, State } from './network.js';
import { PersistentChains } from './chains.js';
import { GibbsSampler, Streams } from './sampler.js';
import {
  type EpochOptions,
  type EpochStats,
  type ResolvedTrainOptions,
  type TrainOptions,
  validateTrainOptions,
} from './train-options.js';
import { type StatisticBits, bitLayers } from './train-rule.js';
import { restoreTrainerState, trainerState } from './train-state.js';
import { type StackedStatistics, type TrainStats, TrainerUpdate } from './train-update.js';

export type { EpochOptions, EpochStats };

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
  /** The rule's parameter list, gradients and velocities. */
  private readonly rule: TrainerUpdate;
  /** Column bits of the statistics of the layers that may be all 0 or 1 (bitLayers). */
  private bits: (StatisticBits | null)[] = [];
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
    this.sampler = new GibbsSampler(network, { seed: o.seed, order, productBlock: o.productBlock });
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
    this.neutral = network.layers.map((l) => (l.type === UnitType.Bernoulli ? 0.5 : 0));
    this.offsets = network.layers.map((l) => {
      const mu = k.alloc(l.size);
      mu.fill(this.neutral[l.index]!);
      k.upload(mu);
      return mu;
    });
    this.offsetInit = Uint8Array.from(network.layers, (l) => (this.isVisible[l.index] ? 0 : 1));
    this.rule = new TrainerUpdate(network, k, o, this.offsets, this.offsetInit, this.scaled);
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
    const o = this.options;
    const site = this.site;
    site.step = t;
    site.stream = Streams.positive;
    site.chainOffset = o.chainOffset;
    if (o.positive === 'exact') this.exactPositive(R);
    else if (o.positive === 'meanfield') this.meanFieldPositive(R, t);
    else this.sampledPositive(R, t);
  }

  /** 'exact': each hidden layer from the data alone (conditionally independent given it). */
  private exactPositive(R: number): void {
    const net = this.network;
    const cd = !this.chains;
    const site = this.site;
    const samples = this.options.statistics === 'samples';
    for (const h of this.hidden) {
      const layer = net.layers[h]!;
      const P = this.posView[h]!;
      net.field(h, this.posView, R, P, this.options.productBlock);
      site.unitOffset = layer.offset;
      // 'samples': the draw CD chains start from is the statistic itself (same site)
      this.kernels.sampleUnits(
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
  }

  /** 'meanfield': damped mean-field iterations with the visible layers clamped. */
  private meanFieldPositive(R: number, t: number): void {
    const net = this.network;
    const o = this.options;
    const samples = o.statistics === 'samples';
    for (const h of this.hidden) {
      this.posView[h]!.fill(this.neutral[h]!);
      this.kernels.upload(this.primary[h]!);
    }
    const draws = !this.chains ? this.negState : samples ? this.posSample : null;
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
      for (const h of this.hidden) this.copy(R * net.layers[h]!.size, draws![h]!, this.posView[h]!);
  }

  /** 'sample': clamped Gibbs sweeps from zeros. */
  private sampledPositive(R: number, t: number): void {
    const net = this.network;
    const o = this.options;
    const Q = this.sampleView;
    for (const h of this.hidden) {
      const x = Q[h]!;
      x.fill(0, 0, R * net.layers[h]!.size);
      this.kernels.upload(x);
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
      net.field(v, this.posView, R, f, this.options.productBlock);
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
    const t = this.step;
    const stack: StackedStatistics = {
      primary: this.primary,
      secondary: this.secondary,
      negative: this.negView,
      bits: this.bits,
    };
    const figures = this.rule.apply(stack, R, C, t, monitor);
    this.step = t + 1;
    const { learningRate, updateNorm, corrDiff } = figures;
    return { step: t, learningRate, reconstructionError: NaN, updateNorm, corrDiff };
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
    return trainerState(this.stateParts(), this.step, this.epoch);
  }

  /** Restores what state() returned (same network spec and options). @throws SpecError */
  restoreState(s: Readonly<Record<string, StateArray>>): void {
    const counters = restoreTrainerState(this.stateParts(), s, this.state());
    this.step = counters.step;
    this.epoch = counters.epoch;
  }

  private stateParts(): Parameters<typeof trainerState>[0] {
    return {
      kernels: this.kernels,
      network: this.network,
      params: this.rule.params,
      velocities: this.rule.velocities,
      offsets: this.offsets,
      offsetSet: this.offsetInit,
      chains: this.chains,
    };
  }
}
