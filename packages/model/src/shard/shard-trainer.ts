// One worker's share of a sharded training run: it samples the units it owns, exchanges their
// 1-bit spins with its peers and applies the Boltzmann rule to the weights it holds, with no
// global barrier. Transport-agnostic: the caller moves the bytes (gRPC, or LoopbackCluster).
//
// PROTOCOL (packages/model/SHARDING.md has the long form)
//
// Ownership. A shard owns, for some layers, one contiguous range of units (all chains). It
// holds: the biases (and velocities) of its units; a lateral layer's whole matrix (a lateral
// layer lies within one shard); for every connection f->t touching its units, the rows of its
// own f-units (W[F_s, :]) and the columns of its own t-units (W[:, T_s]). Cut the matrix into
// tiles F_a x T_b by owner: shard s holds the tiles with a = s or b = s. Tile (a, b) with
// a != b is held twice, a replica on each side; its OWNER is a, the shard of the `from`
// units, and exportBlocks() returns only owned tiles, so an assembled model has one copy of
// everything. Offsets (centring) are replicated for every unit a shard's units connect to.
//
// A step (update t) is the Trainer's step written out as stages (plan.ts): the positive phase
// ('exact': one stage drawing every hidden layer from the data; 'sample': n clamped sweeps over
// the colour groups) then k negative sweeps over the colour groups. At stage p of step t a
// shard draws its own units of the stage's layers, reading its neighbours' states where the
// lockstep run would: data, zeros, an earlier stage of step t, or (persistent chains) the last
// stage of step t-1. Draws use the counter (seed, chain, global unit, step t, stream), so they
// are the single-process Trainer's draws, whatever the layout.
//
// Messages. After drawing its units of layer l at stage p of step t, a shard sends one
// SpinMessage {from, step t, stage p, layer l, packed} to every shard that owns units of a
// layer connected to l. packed = kernels.packSpins of its rows x units block (row-major), i.e.
// ceil(rows * units / 8) bytes: ONE BIT PER SPIN UPDATE, plus a header of 4 integers. Rows are
// the batch rows (positive stages, and negative stages with CD) or the persistent chains.
// Visible data are never sent: every worker reads the data set and computes the same minibatch
// order, epochOrder(rows, seed, epoch).
//
// Update. The update of step t uses the data, the shard's own step-t states and its peers'
// step-t states of the last positive and last negative stage of each layer. It is applied
// once all of those are in (and the shard has drawn all of step t), for all parameters the
// shard holds at once, with the learning rate of step t. A tile's gradient is computed by the
// same call (same shape, same operands) on both sides, so the two replicas apply the same
// sequence of updates and are bit-identical at equal update counts (with the portable kernels
// always; with OpenBLAS when both workers run the same build with the same thread count, since
// its sums depend on the shape and the thread split). Centring offsets are running means of
// each unit's own data-phase spins, so every replica of an offset follows the same sequence.
//
// Staleness s (0 = lockstep, Infinity = unbounded). (1) Weights: a shard draws step t only when
// its updates of steps < t - s are applied (lag t - applied <= s). (2) Spins: where the lockstep
// run reads a peer's persistent-chain state of stamp (t', p'), a shard may read an older one of
// the same chain when the newer has not arrived; the age in steps is ceil(stage lag / stages
// per step), at most s. States that belong to the current batch (positive phase; CD chains,
// which start from the batch) are always the exact ones: an older batch's rows would be a
// different data point. Staleness 0 reproduces Trainer with statistics 'samples' bit for bit
// (portable kernels; see SHARDING.md for OpenBLAS). stats() counts the staleness of every read
// and the weight lag of every stage (histograms).
//
// Pairing (persistent chains, s > 0). The final draw of a layer l at step t records the stamp
// sigma of every peer state it read and sends the stamps with its spins (SpinMessage.reads). In
// the update of step t, a cross tile whose other side e was drawn before l in the last sweep
// pairs l's final states with e's states at sigma, those l was drawn from, not with e's newer
// final states, which l never saw (such pairs are decorrelated and the cross weights run away).
// Both holders build the same rows (the reader from its inbox, e's owner from its own history,
// both checkpointed), so replicas stay identical; at staleness 0 sigma is always lockstep's.
//
// Checkpoints. A checkpoint is taken at a step boundary T with every update < T applied and
// nothing of step T drawn (with checkpointEvery, advance() stops there until checkpoint() is
// called; a shard that is ahead waits for its own update T-1, not for the other shards). It
// holds the shard's parameters, velocities, offsets, chain states (its own and its replicas of
// its peers', with their stamps), and the received spins of steps < T not yet read. Rule: all
// shards checkpoint at the same multiples of checkpointEvery; recovery restores EVERY shard
// from the latest T that all shards have, and messages sent before the rollback are not
// delivered after it (the transport fences them by generation). Each shard then redraws and
// resends everything from step T, which nobody has consumed in the restored state. With
// staleness 0 the recovered run is bit-identical to an undisturbed one.
import { type Kernels, type RngSite, UnitType, seedHalves } from '@spinmesh/kernels';
import { epochOrder } from '../data/dataset.js';
import { FormatError, SpecError } from '../errors.js';
import type { InitOptions, Network, NetworkSpec } from '../network.js';
import { learningRateAt } from '../schedule.js';
import { Streams, biasForMeans, sweepLateral } from '../sampler.js';
import {
  type ResolvedTrainOptions,
  type TrainOptions,
  type StatisticBits,
  applyGradient,
  bitLayers,
  centreAndScale,
  centringMap,
  lateralCorrelation,
  packStatistics,
  validateTrainOptions,
  weightCorrelation,
} from '../train.js';
import { type CodecArray, decodeContainer, encodeContainer } from './codec.js';
import { type ShardLayout, shapeNetwork, validateLayout } from './layout.js';
import {
  type ParameterBlock,
  type ParameterSource,
  type ShardExport,
  initSource,
} from './params.js';
import { type Source, type StepPlan, neighbours, stepPlan } from './plan.js';

/** The training data every worker reads in full: rows x (visible units), visible layers concatenated. */
export interface ShardData {
  x: Float32Array;
  rows: number;
}

export interface ShardTrainerOptions {
  network: NetworkSpec;
  /**
   * Training options as for Trainer. `statistics` must be 'samples' (the default here);
   * `positive` 'meanfield' is refused (it would exchange real-valued means).
   */
  train?: TrainOptions;
  layout: ShardLayout;
  /** This shard's index in `layout`. */
  shard: number;
  kernels: Kernels;
  data: ShardData;
  /** Updates in the whole run. @defaultValue Infinity */
  steps?: number;
  /** Steps by which weights and persistent-chain spins may lag (see the file header). @defaultValue 0 */
  staleness?: number;
  /** Stop at every multiple of this step for a checkpoint; 0: never. @defaultValue 0 */
  checkpointEvery?: number;
  /**
   * Stop at every multiple of this step too, as at a checkpoint step (advance() says
   * 'checkpoint'; checkpoint() goes on): a snapshot of the parameters at an exact step, such as
   * an evaluation's, that the checkpoint steps may miss. 0: never. @defaultValue 0
   */
  snapshotEvery?: number;
  /** Initial parameters. @defaultValue initSource(network, kernels, init) */
  params?: ParameterSource;
  /** Initialisation when `params` is not given (as Network.create). @defaultValue {} */
  init?: InitOptions;
}

/** A block of spins to deliver to the shards in `to`. `packed` is shared: do not modify it. */
export interface SpinMessage {
  from: number;
  to: readonly number[];
  step: number;
  stage: number;
  layer: number;
  packed: Uint8Array;
  /**
   * Asynchronous persistent chains only, on the last negative stage of a layer: the peer states
   * the draw read, as triples (layer, shard, stamp = step * stages + stage; -1: the initial
   * chains). The holders of a tile pair these spins with exactly those states (see "Pairing").
   */
  reads?: readonly number[];
}

/** Which spins a shard waits for. */
export interface SpinKey {
  from: number;
  step: number;
  stage: number;
  layer: number;
}

/** How much one advance() call may do. */
export interface AdvanceBudget {
  /** Stages to draw at most. @defaultValue Infinity */
  stages?: number;
  /** Updates to apply at most. @defaultValue Infinity */
  updates?: number;
}

export type AdvanceResult =
  /** Every step drawn and every update applied. */
  | { state: 'done' }
  /** At a checkpoint step: call checkpoint() to go on. */
  | { state: 'checkpoint'; step: number }
  /** The budget is spent; more could be done now. */
  | { state: 'budget' }
  /** Blocked until these spins arrive. */
  | { state: 'waiting'; waitingFor: SpinKey[] };

export interface ShardStats {
  /** spinStaleness[d]: peer-state reads that were d steps older than lockstep's. */
  spinStaleness: number[];
  /** weightLag[d]: stages drawn with the updates of the last d steps not yet applied. */
  weightLag: number[];
  stagesDrawn: number;
  /** Units drawn: rows x own units of every layer drawn (one spin update each). */
  spinUpdates: number;
  /** Gibbs sweeps completed, positive phase included (whether or not this shard drew in them). */
  sweeps: number;
  updatesApplied: number;
  messagesSent: number;
  /** Payload bytes sent, counted once per recipient. */
  bytesSent: number;
  messagesReceived: number;
  bytesReceived: number;
  /** Tile updates whose model-phase pairs used an older peer state than lockstep would. */
  stalePairings: number;
}

/**
 * One update measured on request (monitorNextUpdate), over the weights and laterals this shard
 * owns: those it exports, so the figures of all shards make up the whole network's (the norms
 * add in squares, the means weighted by owned weights).
 */
export interface ShardUpdateStats {
  /** The update's step. */
  step: number;
  learningRate: number;
  /** Euclidean norm of the change of the owned weights and laterals (momentum, decay included). */
  updateNorm: number;
  /** Owned weights and laterals (off-diagonal) the figures are over; 0: NaN means. */
  weights: number;
  /** Mean over the owned weights of <x_i x_j> over the data-phase rows (states, not centred). */
  dataCorrelation: number;
  /** The same over the model-phase rows. */
  modelCorrelation: number;
}

interface Slab {
  r0: number;
  c0: number;
  ld: number;
  data: Float32Array;
  vel: Float32Array;
  grad: Float32Array;
}

interface Tile {
  /** Owner of the rows (the `from` units) and of the columns. */
  a: number;
  b: number;
  r0: number;
  r1: number;
  c0: number;
  c1: number;
  dests: { slab: Slab; off: number }[];
  /** Pairing (asynchronous persistent chains, a != b): which side was drawn first, else null. */
  pair: Pairing | null;
}

/**
 * The two sides of a cross-shard tile in the last model-phase sweep: layer `e` (units of shard
 * eShard) was drawn before layer `l` (units of shard lShard), so l's final draw read e's states.
 */
interface Pairing {
  e: number;
  eShard: number;
  /** Whether e is the tile's `from` side (rows), else its `to` side (columns). */
  eIsFrom: boolean;
  e0: number;
  e1: number;
  l: number;
  lShard: number;
  /** The stamp of e's states the last applied update paired with (-Infinity: none yet). */
  sigma: number;
}

interface View {
  data: Float32Array;
  grad: Float32Array;
  ld: number;
}

interface Held {
  index: number;
  from: number;
  to: number;
  nf: number;
  nt: number;
  slabs: Slab[];
  tiles: Tile[];
  /** W[F_s, :] (rows of this shard's from-units), or null. */
  fromView: View | null;
  /** W[:, T_s] (columns of this shard's to-units), or null. */
  toView: View | null;
}

interface Range {
  shard: number;
  a: number;
  b: number;
}

interface Pending {
  step: number;
  pos: Float32Array[];
  neg: Float32Array[];
}

const POS = 0;
const NEG = 1;

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const all = new Uint8Array(parts.reduce((s, b) => s + b.length, 0));
  let off = 0;
  for (const b of parts) {
    all.set(b, off);
    off += b.length;
  }
  return all;
}

function checkSteps(v: unknown, path: string, allowInfinity: boolean): number {
  if (
    typeof v !== 'number' ||
    !((Number.isInteger(v) && v >= 0) || (allowInfinity && v === Infinity))
  )
    throw new SpecError(path, `must be an integer >= 0${allowInfinity ? ' or Infinity' : ''}`);
  return v;
}

/** One shard of a sharded training run (see the file header for the protocol). */
export class ShardTrainer {
  readonly shard: number;
  readonly shards: number;
  readonly layout: ShardLayout;
  readonly spec: NetworkSpec;
  readonly options: ResolvedTrainOptions;
  readonly kernels: Kernels;
  readonly plan: StepPlan;
  readonly staleness: number;
  readonly totalSteps: number;
  readonly checkpointEvery: number;
  readonly snapshotEvery: number;
  /** Batches (updates) per pass over the data. */
  readonly stepsPerEpoch: number;

  private readonly net: Network;
  private readonly data: ShardData;
  private readonly P: number;
  private readonly L: number;
  private readonly visible: number[];
  private readonly isVisible: boolean[];
  private readonly visOffset: number[];
  private readonly visibleDims: number;
  private readonly cd: boolean;
  private readonly B: number;
  private readonly Cn: number;
  private readonly own: (readonly [number, number] | null)[];
  private readonly ranges: Range[][];
  private readonly needs: boolean[];
  private readonly relevant: boolean[];
  private readonly recipients: number[][];
  private readonly nbrs: number[][];
  private readonly off: number[];
  private readonly scaled: boolean[];
  private readonly posX: Float32Array[];
  private readonly negX: Float32Array[];
  private readonly primary: Float32Array[];
  private readonly secondary: (Float32Array | null)[];
  /** Column bits of the statistics of the layers that may be all 0 or 1 (bitLayers). */
  private readonly bits: (StatisticBits | null)[];
  private readonly offsets: Float32Array[];
  private readonly bmean: Float32Array[];
  private readonly bias: Float32Array[];
  private readonly biasVel: Float32Array[];
  private readonly biasGrad: Float32Array[];
  private readonly lateral: (Float32Array | null)[];
  private readonly latVel: (Float32Array | null)[];
  private readonly latGrad: (Float32Array | null)[];
  private readonly held: (Held | null)[];
  private readonly fieldBuf: Float32Array[];
  private readonly unpackBuf: Float32Array;
  private readonly seen: Uint8Array;
  private readonly site: RngSite;

  private t = 0;
  /** The step whose batch the visible layers' posX hold (-1: none). */
  private posStep = -1;
  private p = 0;
  private applied = 0;
  private released = 0;
  private readonly ver: [Float64Array, Float64Array];
  private readonly inbox: (Map<number, Uint8Array> | null)[];
  private readonly pending = new Map<number, Pending>();
  private pool: Pending[] = [];
  private outbox: SpinMessage[] = [];
  private readonly orders = new Map<number, Uint32Array>();
  private spinHist: number[] = [0];
  private lagHist: number[] = [0];
  private monitorNext = false;
  private monitored: ShardUpdateStats | null = null;
  private counters = {
    stagesDrawn: 0,
    spinUpdates: 0,
    sweeps: 0,
    updatesApplied: 0,
    messagesSent: 0,
    bytesSent: 0,
    messagesReceived: 0,
    bytesReceived: 0,
    stalePairings: 0,
  };
  /** Pairing is on: persistent chains, staleness > 0, more than one shard. */
  private readonly pairing: boolean;
  /** Pairing: this shard's own model-phase states by stamp, per layer (packed). */
  private readonly ownHist: (Map<number, Uint8Array> | null)[];
  /**
   * Pairing: per unapplied step, the stamps of the peer states its final draws read, by
   * readKey(drawn layer, peer region).
   */
  private readonly ownReads = new Map<number, Map<number, number>>();
  /** Pairing: per unapplied step, the reads peers reported with their final draws, by region. */
  private readonly peerReads = new Map<number, Map<number, readonly number[]>>();
  /** Pairing: the pairings of the tiles this shard holds, in a fixed order (checkpoints). */
  private readonly pairs: Pairing[];
  /** Pairing: states of region idx at stamps >= keepFrom[idx] may still be paired with. */
  private readonly keepFrom: Float64Array;
  private readonly pairBuf: Float32Array;

  constructor(opts: ShardTrainerOptions) {
    const net = shapeNetwork(opts.network);
    this.net = net;
    this.spec = net.spec;
    this.kernels = opts.kernels;
    const k = opts.kernels;
    const trainIn = { statistics: 'samples', ...(opts.train ?? {}) } as TrainOptions;
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
    this.options = o;
    this.layout = validateLayout(net, opts.layout);
    this.shards = this.layout.length;
    if (!Number.isInteger(opts.shard) || opts.shard < 0 || opts.shard >= this.shards)
      throw new SpecError('shard', `must be an integer in 0..${this.shards - 1}`);
    this.shard = opts.shard;
    this.staleness = checkSteps(opts.staleness ?? 0, 'staleness', true);
    this.totalSteps = checkSteps(opts.steps ?? Infinity, 'steps', true);
    this.checkpointEvery = checkSteps(opts.checkpointEvery ?? 0, 'checkpointEvery', false);
    this.snapshotEvery = checkSteps(opts.snapshotEvery ?? 0, 'snapshotEvery', false);
    const L = net.layers.length;
    this.L = L;
    this.visible = o.visible.map((v) => net.layerIndex(v));
    this.isVisible = net.layers.map((l) => this.visible.includes(l.index));
    this.visOffset = new Array<number>(L).fill(-1);
    let vo = 0;
    for (const v of this.visible) {
      this.visOffset[v] = vo;
      vo += net.layers[v]!.size;
    }
    this.visibleDims = vo;
    const data = opts.data;
    if (!data || !Number.isInteger(data.rows) || data.rows < 1)
      throw new SpecError('data.rows', 'must be a positive integer');
    if (!(data.x instanceof Float32Array) || data.x.length < data.rows * vo)
      throw new SpecError('data.x', `must be a Float32Array of rows x ${vo} values`);
    this.data = data;
    this.plan = stepPlan(net, o, this.visible);
    this.P = this.plan.stages.length;
    this.cd = o.negative === 'cd';
    this.B = o.batchSize;
    this.Cn = this.cd ? o.batchSize : o.chains;
    this.stepsPerEpoch = Math.ceil(data.rows / o.batchSize);
    this.pairing = !this.cd && this.staleness > 0 && this.layout.length > 1;

    // ownership
    const S = this.shard;
    this.ranges = net.layers.map((l) => {
      const rs: Range[] = [];
      this.layout.forEach((u, s) => {
        const r = u[l.name];
        if (r) rs.push({ shard: s, a: r[0], b: r[1] });
      });
      return rs.sort((x, y) => x.a - y.a);
    });
    this.own = net.layers.map((l) => this.layout[S]![l.name] ?? null);
    this.nbrs = net.layers.map((l) => neighbours(net, l.index));
    const needsOf = (s: number, l: number): boolean =>
      this.nbrs[l]!.some((m) => this.layout[s]![net.layers[m]!.name] !== undefined);
    this.needs = net.layers.map((l) => needsOf(S, l.index));
    this.relevant = net.layers.map((l) => this.needs[l.index]! || this.own[l.index] !== null);
    this.recipients = net.layers.map((l) =>
      this.layout.map((_, s) => s).filter((s) => s !== S && needsOf(s, l.index)),
    );
    this.off = net.layers.map((l) => (l.type === UnitType.Ising ? -1 : 0));
    // Trainer's stacking flags: from-side layers are scaled by +1/R and -1/C.
    this.scaled = net.layers.map(
      (l) => l.lateral || net.connections.some((c) => c.from === l.index),
    );
    const unscaledCopy = net.layers.map(
      (l) => this.scaled[l.index]! && (l.lateral || net.connections.some((c) => c.to === l.index)),
    );

    // buffers (full width for the layers this shard reads)
    const rowsMax = Math.max(this.B, this.Cn);
    const allocRel = (l: number, rows: number): Float32Array =>
      k.alloc(this.relevant[l] ? rows * net.layers[l]!.size : 0);
    this.posX = net.layers.map((l) => allocRel(l.index, this.B));
    this.negX = net.layers.map((l) => allocRel(l.index, this.Cn));
    this.primary = net.layers.map((l) => allocRel(l.index, this.B + this.Cn));
    this.secondary = net.layers.map((l) =>
      this.relevant[l.index] && unscaledCopy[l.index] ? allocRel(l.index, this.B + this.Cn) : null,
    );
    // Packed whole, as Trainer packs them. Whether a pair of units is counted from bits depends
    // on their own rows only (odd marks are per unit), which both holders of a tile have alike:
    // units a shard does not refresh keep centred values, are marked odd, and are in no tile of
    // its own.
    this.bits = bitLayers(net, 'samples', this.B, this.Cn, (l) => this.relevant[l]!);
    this.offsets = net.layers.map((l) => allocRel(l.index, 1));
    this.bmean = net.layers.map((l) => allocRel(l.index, 1));
    const ownW = (l: number): number => {
      const r = this.own[l];
      return r ? r[1] - r[0] : 0;
    };
    this.fieldBuf = net.layers.map((l) => k.alloc(rowsMax * ownW(l.index)));
    let maxW = 1;
    for (const rs of this.ranges) for (const r of rs) maxW = Math.max(maxW, r.b - r.a);
    this.unpackBuf = k.alloc(rowsMax * maxW);
    this.pairBuf = k.alloc(this.pairing ? (this.B + this.Cn) * maxW : 0);
    this.seen = new Uint8Array(L);

    // parameters
    const src = opts.params ?? initSource(opts.network, k, opts.init ?? {});
    this.bias = net.layers.map((l) => k.alloc(ownW(l.index)));
    this.biasVel = net.layers.map((l) => k.alloc(ownW(l.index)));
    this.biasGrad = net.layers.map((l) => k.alloc(ownW(l.index)));
    for (const l of net.layers) {
      const r = this.own[l.index];
      if (!r) continue;
      src.bias(l.index, r[0], r[1], this.bias[l.index]!);
      k.upload(this.bias[l.index]!);
    }
    this.lateral = net.layers.map((l) =>
      l.lateral && this.own[l.index] ? k.alloc(l.size ** 2) : null,
    );
    this.latVel = this.lateral.map((x) => (x ? k.alloc(x.length) : null));
    this.latGrad = this.lateral.map((x) => (x ? k.alloc(x.length) : null));
    this.lateral.forEach((x, l) => {
      if (!x) return;
      src.lateral(l, x);
      k.upload(x);
    });
    this.held = net.connections.map((c) => this.buildHeld(c.index, c.from, c.to, src));

    // offsets: hidden at the neutral value, visible at the data means (as Trainer.trainEpoch)
    for (const l of net.layers) {
      if (!this.relevant[l.index]) continue;
      this.offsets[l.index]!.fill(l.type === UnitType.Bernoulli ? 0.5 : 0);
      if (o.centring && this.isVisible[l.index]) this.dataMeans(l.index, this.offsets[l.index]!);
      k.upload(this.offsets[l.index]!);
    }

    const { seedLo, seedHi } = seedHalves(o.seed);
    this.site = { seedLo, seedHi, unitOffset: 0, chainOffset: o.chainOffset, step: 0, stream: 0 };
    this.ver = [new Float64Array(L * this.shards).fill(NaN), new Float64Array(L * this.shards)];
    this.ver[NEG].fill(this.cd ? NaN : -1);
    this.inbox = new Array<Map<number, Uint8Array> | null>(L * this.shards).fill(null);
    for (const l of net.layers) {
      if (!this.needs[l.index]) continue;
      for (const r of this.ranges[l.index]!)
        if (r.shard !== S) this.inbox[l.index * this.shards + r.shard] = new Map();
    }
    if (!this.cd) this.initChains(src);
    this.keepFrom = new Float64Array(L * this.shards).fill(Infinity);
    this.pairs = this.held.flatMap((h) => h?.tiles.flatMap((t) => (t.pair ? [t.pair] : [])) ?? []);
    const firstSide = new Set(this.pairs.filter((q) => q.eShard === S).map((q) => q.e));
    this.ownHist = net.layers.map((l) => (firstSide.has(l.index) ? new Map() : null));
    if (this.pairing) this.keepChainStates(-1);
    this.updateKeepFrom();
  }

  /** Pairing: the key of a read in ownReads: the layer drawn, the peer region it read. */
  private readKey(l: number, region: number): number {
    return l * this.L * this.shards + region;
  }

  /** Pairing: the oldest stamp of each region a paired tile may still read (its last sigma). */
  private updateKeepFrom(): void {
    this.keepFrom.fill(Infinity);
    for (const q of this.pairs) {
      const idx = q.e * this.shards + q.eShard;
      this.keepFrom[idx] = Math.min(this.keepFrom[idx]!, q.sigma);
    }
  }

  /** Which side of a cross-shard tile (from-range ra, to-range rb) the last sweep draws first. */
  private pairingOf(from: number, ra: Range, to: number, rb: Range): Pairing {
    const last = this.plan.lastNegative;
    const eIsFrom = last[from]! < last[to]!;
    const [e, re, l, rl] = eIsFrom ? [from, ra, to, rb] : [to, rb, from, ra];
    return {
      e,
      eShard: re.shard,
      eIsFrom,
      e0: re.a,
      e1: re.b,
      l,
      lShard: rl.shard,
      sigma: -Infinity,
    };
  }

  /**
   * Pairing: the chain states as they are now, packed like messages: this shard's own (drawn in
   * the last sweep of step `step`; -1: the initial chains) and its replicas of its peers' (at
   * their versions).
   */
  private keepChainStates(step: number): void {
    const k = this.kernels;
    const C = this.Cn;
    const packRegion = (l: number, a: number, b: number): Uint8Array => {
      const n = this.net.layers[l]!.size;
      const w = b - a;
      const X = this.negX[l]!;
      k.download(X);
      this.kernels.copyBlock(C, w, X, a, n, this.unpackBuf, 0, w);
      k.upload(this.unpackBuf);
      const packed = new Uint8Array(Math.ceil((C * w) / 8));
      k.packSpins(C * w, this.unpackBuf, packed);
      return packed;
    };
    for (const l of this.net.layers) {
      const r = this.own[l.index];
      const hist = this.ownHist[l.index];
      const last = this.plan.lastNegative[l.index]!;
      if (r && hist)
        hist.set(step < 0 ? -1 : step * this.P + last, packRegion(l.index, r[0], r[1]));
      for (const rg of this.ranges[l.index]!) {
        const idx = l.index * this.shards + rg.shard;
        const box = this.inbox[idx];
        const g = this.ver[NEG][idx]!;
        if (box && rg.shard !== this.shard && Number.isFinite(g))
          box.set(g, packRegion(l.index, rg.a, rg.b));
      }
    }
  }

  /** Row slab, column slab or the full matrix of a connection, and the tiles in them. */
  private buildHeld(index: number, from: number, to: number, src: ParameterSource): Held | null {
    const net = this.net;
    const k = this.kernels;
    const S = this.shard;
    const nf = net.layers[from]!.size;
    const nt = net.layers[to]!.size;
    const F = this.own[from] ?? null;
    const T = this.own[to] ?? null;
    if (!F && !T) return null;
    const slab = (r0: number, r1: number, c0: number, c1: number): Slab => {
      const ld = c1 - c0;
      const data = k.alloc((r1 - r0) * ld);
      src.weights(index, r0, r1, c0, c1, data);
      k.upload(data);
      return { r0, c0, ld, data, vel: k.alloc(data.length), grad: k.alloc(data.length) };
    };
    const slabs: Slab[] = [];
    let rowSlab: Slab | null = null;
    let colSlab: Slab | null = null;
    const fullF = F !== null && F[0] === 0 && F[1] === nf;
    const fullT = T !== null && T[0] === 0 && T[1] === nt;
    if ((F && fullT) || (T && fullF)) {
      rowSlab = colSlab = slab(0, nf, 0, nt);
      slabs.push(rowSlab);
    } else {
      if (F) slabs.push((rowSlab = slab(F[0], F[1], 0, nt)));
      if (T) slabs.push((colSlab = slab(0, nf, T[0], T[1])));
    }
    const tiles: Tile[] = [];
    for (const ra of this.ranges[from]!) {
      for (const rb of this.ranges[to]!) {
        if (ra.shard !== S && rb.shard !== S) continue;
        const tile: Tile = {
          a: ra.shard,
          b: rb.shard,
          r0: ra.a,
          r1: ra.b,
          c0: rb.a,
          c1: rb.b,
          dests: [],
          pair: this.pairing && ra.shard !== rb.shard ? this.pairingOf(from, ra, to, rb) : null,
        };
        for (const s of slabs) {
          const rows = s.data.length / s.ld;
          if (ra.a >= s.r0 && ra.b <= s.r0 + rows && rb.a >= s.c0 && rb.b <= s.c0 + s.ld)
            tile.dests.push({ slab: s, off: (ra.a - s.r0) * s.ld + (rb.a - s.c0) });
        }
        tiles.push(tile);
      }
    }
    const view = (s: Slab, off: number): View => ({
      data: s.data.subarray(off),
      grad: s.grad.subarray(off),
      ld: s.ld,
    });
    return {
      index,
      from,
      to,
      nf,
      nt,
      slabs,
      tiles,
      fromView: F && rowSlab ? view(rowSlab, (F[0] - rowSlab.r0) * rowSlab.ld) : null,
      toView: T && colSlab ? view(colSlab, T[0] - colSlab.c0) : null,
    };
  }

  /** PersistentChains' initial draws (chainInit), for every layer this shard reads. */
  private initChains(src: ParameterSource): void {
    const net = this.net;
    const k = this.kernels;
    const o = this.options;
    const init = o.chainInit;
    const site: RngSite = { ...this.site, step: 0, stream: Streams.chainInit };
    if (typeof init === 'object') {
      for (const name of Object.keys(init.means))
        if (!net.layers.some((l) => l.name === name))
          throw new SpecError(
            `chains.init.means.${name}`,
            `'${name}' is not a layer of this network`,
          );
    }
    const C = this.Cn;
    for (const l of net.layers) {
      if (!this.relevant[l.index]) continue;
      const x = this.negX[l.index]!;
      const n = l.size;
      if (init === 'zeros') {
        x.fill(0);
        k.upload(x);
        continue;
      }
      const bias = k.alloc(n);
      const field = k.alloc(C * n);
      const means = typeof init === 'object' ? init.means[l.name] : undefined;
      if (means) {
        biasForMeans(l.type, means, bias, `chains.init.means.${l.name}`);
      } else if (init === 'biases') {
        src.bias(l.index, 0, n, bias);
      }
      k.upload(bias);
      site.unitOffset = l.offset;
      k.sampleUnits(l.type, C, n, field, n, bias, 1, null, x, site);
    }
  }

  /** Column means of visible layer v over all data rows (Trainer.initVisibleOffsets). */
  private dataMeans(v: number, mu: Float32Array): void {
    const n = this.net.layers[v]!.size;
    const d = this.visibleDims;
    const off = this.visOffset[v]!;
    const x = this.data.x;
    const s = new Float64Array(n);
    for (let r = 0; r < this.data.rows; r++)
      for (let j = 0; j < n; j++) s[j]! += x[r * d + off + j]!;
    for (let j = 0; j < n; j++) mu[j] = s[j]! / this.data.rows;
  }

  // ---------------------------------------------------------------------------- progress

  /** Where the shard stands: drawing stage `stage` of step `step`; `applied` updates applied. */
  get position(): { step: number; stage: number; applied: number } {
    return { step: this.t, stage: this.p, applied: this.applied };
  }

  /** Whether every step is drawn and every update applied. */
  get done(): boolean {
    return this.applied >= this.totalSteps;
  }

  /** Whether a checkpoint can be taken now (a step boundary with every update applied). */
  get quiescent(): boolean {
    return this.p === 0 && this.applied === this.t && this.pending.size === 0;
  }

  private rowsOf(step: number): number {
    const start = (step % this.stepsPerEpoch) * this.B;
    return Math.min(this.B, this.data.rows - start);
  }

  private negRowsOf(step: number): number {
    return this.cd ? this.rowsOf(step) : this.Cn;
  }

  private orderOf(epoch: number): Uint32Array {
    let o = this.orders.get(epoch);
    if (!o) {
      o = epochOrder(this.data.rows, this.options.seed, epoch);
      this.orders.set(epoch, o);
      for (const e of this.orders.keys())
        if (e < Math.floor(this.applied / this.stepsPerEpoch)) this.orders.delete(e);
    }
    return o;
  }

  /** Rows of step `step`'s batch, visible layer v, all columns, into dst (rows x size). */
  private gatherData(step: number, v: number, dst: Float32Array): void {
    const n = this.net.layers[v]!.size;
    const d = this.visibleDims;
    const off = this.visOffset[v]!;
    const order = this.orderOf(Math.floor(step / this.stepsPerEpoch));
    const start = (step % this.stepsPerEpoch) * this.B;
    const R = this.rowsOf(step);
    const x = this.data.x;
    for (let r = 0; r < R; r++) {
      const row = order[start + r]! * d + off;
      dst.set(x.subarray(row, row + n), r * n);
    }
    this.kernels.upload(dst);
  }

  /**
   * Draws stages and applies updates as far as the received spins allow, within the budget
   * (stages drawn, updates applied; both unlimited by default), then says why it stopped.
   * Spins to send accumulate in outgoing().
   */
  advance(budget: AdvanceBudget = {}): AdvanceResult {
    const maxStages = budget.stages ?? Infinity;
    const maxUpdates = budget.updates ?? Infinity;
    let stages = 0;
    let updates = 0;
    for (;;) {
      if (this.applied < this.t && this.updateReady(this.applied, null)) {
        if (updates >= maxUpdates) return { state: 'budget' };
        this.applyStep(this.applied);
        updates++;
        continue;
      }
      if (this.applied >= this.totalSteps) return { state: 'done' };
      if (this.t >= this.totalSteps) return this.waitUpdate();
      if (this.p === 0 && this.t > 0 && this.released < this.t && this.stopsAt(this.t)) {
        return this.applied === this.t ? { state: 'checkpoint', step: this.t } : this.waitUpdate();
      }
      if (this.t - this.applied > this.staleness) return this.waitUpdate();
      if (stages >= maxStages) return { state: 'budget' };
      if (!this.inputsReady(this.t, this.p, false, null)) {
        const waitingFor: SpinKey[] = [];
        this.inputsReady(this.t, this.p, false, waitingFor);
        if (this.applied < this.t) this.updateReady(this.applied, waitingFor);
        return { state: 'waiting', waitingFor };
      }
      this.runStage();
      stages++;
    }
  }

  /** Whether step t is a checkpoint or snapshot step. */
  private stopsAt(t: number): boolean {
    return (
      (this.checkpointEvery > 0 && t % this.checkpointEvery === 0) ||
      (this.snapshotEvery > 0 && t % this.snapshotEvery === 0)
    );
  }

  private waitUpdate(): AdvanceResult {
    const waitingFor: SpinKey[] = [];
    this.updateReady(this.applied, waitingFor);
    return { state: 'waiting', waitingFor };
  }

  /** The spins produced since the last call, to send. */
  outgoing(): SpinMessage[] {
    const out = this.outbox;
    this.outbox = [];
    return out;
  }

  /**
   * Delivers a peer's spins (copied). Returns false when they are no longer needed (an old
   * duplicate) and were dropped. @throws SpecError when the message cannot be meant for this
   * shard (wrong sender, layer, stage or size)
   */
  receive(
    from: number,
    step: number,
    stage: number,
    layer: number,
    packed: Uint8Array,
    reads?: readonly number[],
  ): boolean {
    if (!Number.isInteger(from) || from < 0 || from >= this.shards || from === this.shard)
      throw new SpecError('receive.from', `must be a peer shard index, got ${from}`);
    if (!Number.isInteger(stage) || stage < 0 || stage >= this.P)
      throw new SpecError('receive.stage', `must be in 0..${this.P - 1}, got ${stage}`);
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.L)
      throw new SpecError('receive.layer', `must be a layer index, got ${layer}`);
    if (!Number.isInteger(step) || step < 0 || step >= this.totalSteps)
      throw new SpecError('receive.step', `must be an integer in 0..${this.totalSteps - 1}`);
    const box = this.inbox[layer * this.shards + from];
    if (!box || !this.plan.stages[stage]!.layers.includes(layer))
      throw new SpecError(
        'receive.layer',
        `shard ${this.shard} reads no spins of layer ${layer} from shard ${from} at stage ${stage}`,
      );
    const r = this.ranges[layer]!.find((x) => x.shard === from)!;
    const rows =
      this.plan.stages[stage]!.phase === 'positive' ? this.rowsOf(step) : this.negRowsOf(step);
    const bytes = Math.ceil((rows * (r.b - r.a)) / 8);
    if (packed.length !== bytes)
      throw new SpecError('receive.packed', `must hold ${bytes} bytes, got ${packed.length}`);
    const paired = this.pairing && stage === this.plan.lastNegative[layer];
    if (paired) {
      if (
        !reads ||
        reads.length % 3 !== 0 ||
        !reads.every((x, i) => Number.isInteger(x) && (i % 3 === 2 ? x >= -1 : x >= 0))
      )
        throw new SpecError(
          'receive.reads',
          'must list (layer, shard, stamp) triples: the states the final draw of an asynchronous persistent chain read',
        );
    }
    const g = step * this.P + stage;
    if (box.has(g) || this.obsolete(layer * this.shards + from, g)) return false;
    box.set(g, packed.slice());
    if (paired) {
      let byRegion = this.peerReads.get(step);
      if (!byRegion) this.peerReads.set(step, (byRegion = new Map()));
      byRegion.set(layer * this.shards + from, reads!.slice());
    }
    this.counters.messagesReceived++;
    this.counters.bytesReceived += packed.length;
    return true;
  }

  /** Whether a message (region idx, stamp g) can never be read again. */
  private obsolete(idx: number, g: number): boolean {
    const step = Math.floor(g / this.P);
    if (step >= this.applied) return false;
    if (g < 0) return !(g >= this.keepFrom[idx]!); // the initial chains (pairing only)
    const batch = this.cd || this.plan.stages[g % this.P]!.phase === 'positive';
    if (batch) return step < this.t;
    return g <= this.ver[NEG][idx]! && !(g >= this.keepFrom[idx]!);
  }

  private prune(): void {
    if (this.pairing) {
      this.updateKeepFrom();
      this.ownHist.forEach((hist, l) => {
        if (!hist) return;
        const keep = this.keepFrom[l * this.shards + this.shard]!;
        for (const g of hist.keys()) if (!(g >= keep)) hist.delete(g);
      });
    }
    this.inbox.forEach((box, idx) => {
      if (!box) return;
      for (const g of box.keys()) if (this.obsolete(idx, g)) box.delete(g);
    });
  }

  // ---------------------------------------------------------------------------- sampling

  /**
   * Whether every peer region that stage p of step t reads is available (apply: also copy it
   * into the state buffers and count its staleness; missing: collect what is not there).
   */
  private inputsReady(t: number, p: number, apply: boolean, missing: SpinKey[] | null): boolean {
    const st = this.plan.stages[p]!;
    const set = st.phase === 'positive' ? POS : NEG;
    const seen = this.seen;
    seen.fill(0);
    let ok = true;
    for (const l of st.layers) {
      if (!this.own[l]) continue;
      for (const m of this.nbrs[l]!) {
        if (seen[m]) continue;
        seen[m] = 1;
        const src = this.plan.inputs[p]![m]!;
        for (const r of this.ranges[m]!) {
          if (r.shard === this.shard) continue;
          if (!this.region(set, m, r, src, t, apply, missing)) {
            ok = false;
            if (!missing) return false;
          }
        }
      }
    }
    return ok;
  }

  private region(
    set: number,
    m: number,
    r: Range,
    src: Source,
    t: number,
    apply: boolean,
    missing: SpinKey[] | null,
  ): boolean {
    const idx = m * this.shards + r.shard;
    const ver = this.ver[set]!;
    if (src.kind === 'data' || src.kind === 'zero') {
      if (apply) {
        const n = this.net.layers[m]!.size;
        const rows = this.rowsOf(t);
        const X = set === POS ? this.posX[m]! : this.negX[m]!;
        if (src.kind === 'zero') {
          for (let i = 0; i < rows; i++) X.fill(0, i * n + r.a, i * n + r.b);
        } else if (set === NEG) {
          const Y = this.posX[m]!;
          this.kernels.copyBlock(rows, r.b - r.a, Y, r.a, n, X, r.a, n);
        }
        this.kernels.upload(X);
        ver[idx] = NaN;
      }
      return true;
    }
    const P = this.P;
    const gReq = Math.max((t - src.stepsBack) * P + src.stage, -1);
    if (ver[idx] === gReq) {
      if (apply) this.countSpin(0);
      return true;
    }
    const box = this.inbox[idx]!;
    // the exact stamp, else (persistent chains only) the newest older state within the bound
    let best = box.has(gReq) ? gReq : NaN;
    if (Number.isNaN(best) && set === NEG && !this.cd && this.staleness > 0) {
      best = ver[idx]!;
      for (const g of box.keys())
        if (g <= gReq && g > best && this.plan.stages[g % P]!.phase === 'negative') best = g;
      if (Math.ceil((gReq - best) / P) > this.staleness) best = NaN;
    }
    if (Number.isNaN(best)) {
      missing?.push({ from: r.shard, step: Math.floor(gReq / P), stage: gReq % P, layer: m });
      return false;
    }
    if (apply) {
      if (best !== ver[idx]) {
        const X = set === POS ? this.posX[m]! : this.negX[m]!;
        const rows = set === POS ? this.rowsOf(t) : this.negRowsOf(t);
        this.unpackTo(box.get(best)!, m, r, rows, X, 0);
        ver[idx] = best;
      }
      this.countSpin(Math.ceil((gReq - best) / P));
    }
    return true;
  }

  private countSpin(d: number): void {
    while (this.spinHist.length <= d) this.spinHist.push(0);
    this.spinHist[d]!++;
  }

  /** Unpacks a peer's rows x (r.b - r.a) spins into columns [r.a, r.b) of X from row row0. */
  private unpackTo(
    packed: Uint8Array,
    m: number,
    r: Range,
    rows: number,
    X: Float32Array,
    row0: number,
  ): void {
    const k = this.kernels;
    const n = this.net.layers[m]!.size;
    const w = r.b - r.a;
    const buf = this.unpackBuf;
    k.unpackSpins(rows * w, packed, this.off[m]!, buf);
    k.download(buf);
    k.download(X);
    this.kernels.copyBlock(rows, w, buf, 0, w, X, row0 * n + r.a, n);
    k.upload(X);
  }

  private runStage(): void {
    const t = this.t;
    const p = this.p;
    const k = this.kernels;
    const net = this.net;
    const st = this.plan.stages[p]!;
    const pos = st.phase === 'positive';
    if (p === 0) this.beginStep(t);
    if (p === this.plan.firstNegative && this.cd) {
      // CD chains start from the batch's positive states: copy this shard's own regions
      const R = this.rowsOf(t);
      for (const l of net.layers) {
        const r = this.own[l.index];
        if (!r) continue;
        const n = l.size;
        const X = this.posX[l.index]!;
        const Y = this.negX[l.index]!;
        k.download(X);
        this.kernels.copyBlock(R, r[1] - r[0], X, r[0], n, Y, r[0], n);
        k.upload(Y);
      }
    }
    if (st.layers.some((l) => this.own[l])) {
      this.inputsReady(t, p, true, null);
      const lag = t - this.applied;
      while (this.lagHist.length <= lag) this.lagHist.push(0);
      this.lagHist[lag]!++;
      const X = pos ? this.posX : this.negX;
      const rows = pos ? this.rowsOf(t) : this.negRowsOf(t);
      this.site.step = t;
      this.site.stream = st.stream;
      for (const l of st.layers) if (this.own[l]) this.drawLayer(l, X, rows, t, p);
      this.counters.stagesDrawn++;
    }
    const next = this.plan.stages[p + 1];
    if (next === undefined || next.phase !== st.phase || next.sweep !== st.sweep)
      this.counters.sweeps++;
    this.p++;
    if (this.p === this.P) {
      this.savePending(t);
      this.t++;
      this.p = 0;
    }
  }

  /** Start of step t: the batch into the visible layers; zeros for a sampled positive phase. */
  private beginStep(t: number): void {
    const net = this.net;
    for (const v of this.visible) if (this.relevant[v]) this.gatherData(t, v, this.posX[v]!);
    this.posStep = t;
    if (this.options.positive === 'sample') {
      const R = this.rowsOf(t);
      for (const l of net.layers) {
        const r = this.own[l.index];
        if (!r || this.isVisible[l.index]) continue;
        const X = this.posX[l.index]!;
        for (let i = 0; i < R; i++) X.fill(0, i * l.size + r[0], i * l.size + r[1]);
        this.kernels.upload(X);
      }
    }
  }

  /** Draws this shard's units of layer l into X and queues their spins for the peers. */
  private drawLayer(l: number, X: Float32Array[], rows: number, t: number, p: number): void {
    const net = this.net;
    const k = this.kernels;
    const layer = net.layers[l]!;
    const n = layer.size;
    const [a, b] = this.own[l]!;
    const w = b - a;
    this.counters.spinUpdates += rows * w;
    const f = this.fieldBuf[l]!;
    let beta = 0;
    for (const c of net.connections) {
      const h = this.held[c.index];
      if (c.from === l) {
        const v = h!.fromView!;
        const nt = net.layers[c.to]!.size;
        k.sgemm(false, true, rows, w, nt, 1, X[c.to]!, nt, v.data, v.ld, beta, f, w);
        beta = 1;
      } else if (c.to === l) {
        const v = h!.toView!;
        const nf = net.layers[c.from]!.size;
        k.sgemm(false, false, rows, w, nf, 1, X[c.from]!, nf, v.data, v.ld, beta, f, w);
        beta = 1;
      }
    }
    if (beta === 0) {
      f.fill(0, 0, rows * w);
      k.upload(f);
    }
    const site = this.site;
    const x = X[l]!;
    const bias = this.bias[l]!;
    const Lm = this.lateral[l];
    let spins: Float32Array;
    if (Lm) {
      // the whole layer is here (w = n): GibbsSampler's unit-by-unit sweep, in place
      sweepLateral(k, layer, rows, f, x, Lm, bias, 1, null, site, null, null);
      spins = x;
    } else {
      site.unitOffset = layer.offset + a;
      k.sampleUnits(layer.type, rows, w, f, w, bias, 1, null, f, site);
      k.download(f);
      k.download(x);
      this.kernels.copyBlock(rows, w, f, 0, w, x, a, n);
      k.upload(x);
      spins = f;
    }
    const to = this.recipients[l]!;
    if (to.length === 0) return;
    const packed = new Uint8Array(Math.ceil((rows * w) / 8));
    k.packSpins(rows * w, spins, packed);
    const g = t * this.P + p;
    const negative = this.plan.stages[p]!.phase === 'negative';
    if (negative) this.ownHist[l]?.set(g, packed);
    const reads = negative && p === this.plan.lastNegative[l] ? this.recordReads(l, t) : undefined;
    this.outbox.push({ from: this.shard, to, step: t, stage: p, layer: l, packed, reads });
    this.counters.messagesSent++;
    this.counters.bytesSent += packed.length * to.length;
  }

  /**
   * Pairing: the stamps of the peer states the final draw of layer l at step t read, kept for
   * the update of step t and returned as (layer, shard, stamp) triples for the message.
   */
  private recordReads(l: number, t: number): number[] | undefined {
    if (!this.pairing) return undefined;
    let mine = this.ownReads.get(t);
    if (!mine) this.ownReads.set(t, (mine = new Map()));
    const reads: number[] = [];
    for (const m of this.nbrs[l]!) {
      for (const r of this.ranges[m]!) {
        if (r.shard === this.shard) continue;
        const idx = m * this.shards + r.shard;
        const g = this.ver[NEG][idx]!;
        mine.set(this.readKey(l, idx), g);
        reads.push(m, r.shard, g);
      }
    }
    return reads;
  }

  /** Keeps this shard's own final states of step t until its update is applied. */
  private savePending(t: number): void {
    const net = this.net;
    const k = this.kernels;
    const R = this.rowsOf(t);
    const C = this.negRowsOf(t);
    const pend =
      this.pool.pop() ??
      ({
        step: t,
        pos: net.layers.map((l) => new Float32Array(this.B * this.ownWidth(l.index))),
        neg: net.layers.map((l) => new Float32Array(this.Cn * this.ownWidth(l.index))),
      } satisfies Pending);
    pend.step = t;
    for (const l of net.layers) {
      const r = this.own[l.index];
      if (!r) continue;
      const w = r[1] - r[0];
      const n = l.size;
      const X = this.posX[l.index]!;
      const Y = this.negX[l.index]!;
      k.download(X);
      k.download(Y);
      const pp = pend.pos[l.index]!;
      const pn = pend.neg[l.index]!;
      this.kernels.copyBlock(R, w, X, r[0], n, pp, 0, w);
      this.kernels.copyBlock(C, w, Y, r[0], n, pn, 0, w);
    }
    this.pending.set(t, pend);
  }

  private ownWidth(l: number): number {
    const r = this.own[l];
    return r ? r[1] - r[0] : 0;
  }

  // ---------------------------------------------------------------------------- updates

  /** Whether every peer state the update of step u reads has arrived (else collect them). */
  private updateReady(u: number, missing: SpinKey[] | null): boolean {
    let ok = true;
    const P = this.P;
    for (let x = 0; x < this.L; x++) {
      if (!this.needs[x]) continue;
      for (const r of this.ranges[x]!) {
        if (r.shard === this.shard) continue;
        const box = this.inbox[x * this.shards + r.shard]!;
        for (const stage of [
          this.isVisible[x] ? -1 : this.plan.lastPositive[x]!,
          this.plan.lastNegative[x]!,
        ]) {
          if (stage < 0 || box.has(u * P + stage)) continue;
          ok = false;
          if (!missing) return false;
          missing.push({ from: r.shard, step: u, stage, layer: x });
        }
      }
    }
    return ok;
  }

  /** Stacks the statistics of step u (data, own states, peers' states) and applies the rule. */
  private applyStep(u: number): void {
    const net = this.net;
    const k = this.kernels;
    const P = this.P;
    const R = this.rowsOf(u);
    const C = this.negRowsOf(u);
    const pend = this.pending.get(u)!;
    for (const l of net.layers) {
      const x = l.index;
      if (!this.relevant[x]) continue;
      const n = l.size;
      const prim = this.primary[x]!;
      k.download(prim);
      if (this.isVisible[x]) {
        // the batch: still in posX when no later step has begun (always at staleness 0)
        const X = this.posX[x]!;
        k.download(X);
        if (this.posStep === u) this.kernels.copyBlock(R, n, X, 0, n, prim, 0, n);
        else this.gatherData(u, x, prim);
      }
      const r = this.own[x];
      if (r) {
        const w = r[1] - r[0];
        const pp = pend.pos[x]!;
        const pn = pend.neg[x]!;
        if (!this.isVisible[x]) this.kernels.copyBlock(R, w, pp, 0, w, prim, r[0], n);
        this.kernels.copyBlock(C, w, pn, 0, w, prim, R * n + r[0], n);
      }
      k.upload(prim);
      if (this.needs[x]) {
        for (const rg of this.ranges[x]!) {
          if (rg.shard === this.shard) continue;
          const box = this.inbox[x * this.shards + rg.shard]!;
          if (!this.isVisible[x])
            this.unpackTo(box.get(u * P + this.plan.lastPositive[x]!)!, x, rg, R, prim, 0);
          this.unpackTo(box.get(u * P + this.plan.lastNegative[x]!)!, x, rg, C, prim, R);
        }
      }
    }
    this.update(u, R, C);
    if (this.pairing) {
      this.ownReads.delete(u);
      this.peerReads.delete(u);
    }
    this.pending.delete(u);
    this.pool.push(pend);
    this.applied = u + 1;
    this.counters.updatesApplied++;
    this.prune();
  }

  /**
   * Trainer.update restricted to what this shard holds, operation for operation on the same
   * values (R positive rows, C negative rows stacked in `primary`).
   */
  private update(u: number, R: number, C: number): void {
    const net = this.net;
    const k = this.kernels;
    const o = this.options;
    const lr = learningRateAt(o.learningRate, o.schedule, u);
    const centring = o.centring;
    const total = R + C;
    const monitor = this.monitorNext ? this.correlations(u, lr, R, C) : null;
    this.monitorNext = false;
    // 1. centre and scale the stacked statistics; bias gradients of own units
    for (const l of net.layers) {
      const i = l.index;
      if (!this.relevant[i]) continue;
      const n = l.size;
      const prim = this.primary[i]!;
      const r = this.own[i];
      const gb = this.biasGrad[i]!;
      const bits = this.bits[i];
      if (bits) packStatistics(k, n, R, C, prim, bits);
      if (centring) k.colSums(R, n, prim, n, 1 / R, 0, this.bmean[i]!);
      const mu = centring ? this.offsets[i]! : null;
      const scaled = this.scaled[i] ? { sec: this.secondary[i] ?? null } : null;
      centreAndScale(k, n, R, C, prim, prim.subarray(R * n), mu, scaled, r ?? null, gb);
    }
    // 2. correlation GEMMs: laterals whole; weights tile by tile, each tile by one canonical
    // call (same shape and operands on both replicas; only where it writes differs) into the
    // first slab that holds it, then copied into the others
    for (const l of net.layers) {
      const g = this.latGrad[l.index];
      if (!g) continue;
      const S = this.primary[l.index]!;
      lateralCorrelation(k, l.size, total, S, this.secondary[l.index] ?? S, g);
    }
    for (const h of this.held) {
      if (!h) continue;
      const S = this.primary[h.from]!;
      const U = this.secondary[h.to] ?? this.primary[h.to]!;
      const [from, to] = [this.bits[h.from], this.bits[h.to]];
      const mu = centring ? this.offsets[h.from]! : null;
      const lam = centring ? this.offsets[h.to]! : null;
      for (const tile of h.tiles) {
        const m = tile.r1 - tile.r0;
        const w = tile.c1 - tile.c0;
        let rows = S.subarray(tile.r0);
        let ldRows = h.nf;
        let cols = U.subarray(tile.c0);
        let ldCols = h.nt;
        const paired = tile.pair ? this.pairedSide(u, tile.pair, R, C) : null;
        if (paired && tile.pair!.eIsFrom) [rows, ldRows] = [paired, m];
        else if (paired) [cols, ldCols] = [paired, w];
        const [first, ...others] = tile.dests;
        const out = first!.slab.grad;
        const ld = first!.slab.ld;
        // Counted from bits where both layers have them and the rows are the stacked ones (a
        // paired side is read from other steps' states: its GEMM stands).
        const bits =
          from && to && !paired ? { R, C, from, r0: tile.r0, to, c0: tile.c0, mu, lam } : null;
        const at = out.subarray(first!.off);
        weightCorrelation(k, m, w, total, rows, ldRows, cols, ldCols, at, ld, bits);
        if (others.length === 0) continue;
        k.download(out);
        for (const d of others) {
          const G = d.slab.grad;
          k.download(G);
          this.kernels.copyBlock(m, w, out, first!.off, ld, G, d.off, d.slab.ld);
          k.upload(G);
        }
      }
    }
    // 3. centring: db -= (weight updates of the unit's synapses) . (the other side's offsets)
    if (centring) {
      for (const l of net.layers) {
        const g = this.latGrad[l.index];
        if (!g) continue;
        const n = l.size;
        centringMap(k, 'rows', n, n, g, n, this.offsets[l.index]!, this.biasGrad[l.index]!);
      }
      for (const h of this.held) {
        if (!h) continue;
        const F = this.own[h.from];
        const T = this.own[h.to];
        const [gf, gt] = [this.biasGrad[h.from]!, this.biasGrad[h.to]!];
        const v = h.fromView;
        if (F && v)
          centringMap(k, 'rows', F[1] - F[0], h.nt, v.grad, v.ld, this.offsets[h.to]!, gf);
        const u = h.toView;
        if (T && u)
          centringMap(k, 'cols', h.nf, T[1] - T[0], u.grad, u.ld, this.offsets[h.from]!, gt);
      }
    }
    // 4. decay, momentum, apply
    const step = (data: Float32Array, vel: Float32Array, g: Float32Array, isW: boolean): void => {
      if (data.length > 0) applyGradient(k, data, vel, g, lr, o, isW);
    };
    for (const l of net.layers) {
      if (this.own[l.index])
        step(this.bias[l.index]!, this.biasVel[l.index]!, this.biasGrad[l.index]!, false);
      const Lm = this.lateral[l.index];
      if (Lm) step(Lm, this.latVel[l.index]!, this.latGrad[l.index]!, true);
    }
    for (const h of this.held) if (h) for (const s of h.slabs) step(s.data, s.vel, s.grad, true);
    if (monitor) this.monitored = { ...monitor, updateNorm: this.ownedUpdateNorm(lr) };
    // 5. offsets (own units and replicas alike): running means of the data phase
    if (centring) {
      const nu = o.centringRate;
      for (const l of net.layers)
        if (this.relevant[l.index])
          k.axpby(l.size, nu, this.bmean[l.index]!, 1 - nu, this.offsets[l.index]!);
    }
  }

  /**
   * Pairing: the stacked operand of a tile's first-drawn side e when the final draw of its other
   * side read e's states at an older stamp than lockstep's (else null: the stacked layer as it
   * is). Rows: the data phase as stacked, then e's states at that stamp, centred and scaled as
   * the stacked layer is. Both holders of the tile build the same operand.
   */
  private pairedSide(u: number, q: Pairing, R: number, C: number): Float32Array | null {
    const k = this.kernels;
    const exact = u * this.P + this.plan.lastNegative[q.e]!;
    const eIdx = q.e * this.shards + q.eShard;
    let sigma = NaN;
    if (q.lShard === this.shard) {
      sigma = this.ownReads.get(u)?.get(this.readKey(q.l, eIdx)) ?? NaN;
    } else {
      const reads = this.peerReads.get(u)?.get(q.l * this.shards + q.lShard) ?? [];
      for (let i = 0; i < reads.length; i += 3)
        if (reads[i] === q.e && reads[i + 1] === q.eShard) sigma = reads[i + 2]!;
    }
    const packed =
      sigma === exact
        ? null
        : q.eShard === this.shard
          ? this.ownHist[q.e]?.get(sigma)
          : this.inbox[eIdx]?.get(sigma);
    if (Number.isNaN(sigma) || packed === undefined)
      throw new Error(
        `shard ${this.shard}, update ${u}: the states of layer ${q.e} (shard ${q.eShard}) that the ` +
          `final draw of layer ${q.l} (shard ${q.lShard}) read are unknown (a protocol bug)`,
      );
    q.sigma = sigma;
    if (packed === null) return null;
    this.counters.stalePairings++;
    const n = this.net.layers[q.e]!.size;
    const w = q.e1 - q.e0;
    const stacked = q.eIsFrom ? this.primary[q.e]! : (this.secondary[q.e] ?? this.primary[q.e]!);
    const buf = this.pairBuf;
    k.download(stacked);
    k.download(buf);
    this.kernels.copyBlock(R, w, stacked, q.e0, n, buf, 0, w);
    k.upload(buf);
    const neg = buf.subarray(R * w, (R + C) * w);
    k.unpackSpins(C * w, packed, this.off[q.e]!, neg);
    const mu = this.options.centring ? this.offsets[q.e]!.subarray(q.e0, q.e1) : null;
    k.shiftScaleRows(C, w, neg, w, mu, q.eIsFrom ? -1 / C : 1);
    return buf;
  }

  /**
   * The pure rule, for tests and tools: one update from given full-width phase states
   * (pos[l]: posRows x size, neg[l]: negRows x size, for every layer this shard reads),
   * as if step `position.step` had been drawn with them. Only at a step boundary with every
   * update applied.
   */
  applyUpdate(
    pos: readonly Float32Array[],
    posRows: number,
    neg: readonly Float32Array[],
    negRows: number,
  ): void {
    if (!this.quiescent)
      throw new SpecError('applyUpdate', 'needs a step boundary with every update applied');
    if (!(Number.isInteger(posRows) && posRows >= 1 && posRows <= this.B))
      throw new SpecError('applyUpdate.posRows', `must be an integer in 1..${this.B}`);
    if (!(Number.isInteger(negRows) && negRows >= 1 && negRows <= this.Cn))
      throw new SpecError('applyUpdate.negRows', `must be an integer in 1..${this.Cn}`);
    for (const l of this.net.layers) {
      if (!this.relevant[l.index]) continue;
      const n = l.size;
      const P = pos[l.index];
      const N = neg[l.index];
      if (!P || P.length < posRows * n || !N || N.length < negRows * n)
        throw new SpecError(`applyUpdate.state[${l.index}]`, `must hold rows x ${n} values`);
      const prim = this.primary[l.index]!;
      prim.set(P.subarray(0, posRows * n));
      prim.set(N.subarray(0, negRows * n), posRows * n);
      this.kernels.upload(prim);
    }
    this.update(this.t, posRows, negRows);
    this.t++;
    this.applied++;
    this.released = Math.max(this.released, this.t);
  }

  // ---------------------------------------------------------------------------- exports

  /** The blocks this shard owns (its biases, its lateral layers, the rows of its from-units). */
  exportBlocks(): ShardExport {
    const net = this.net;
    const k = this.kernels;
    const blocks: ParameterBlock[] = [];
    for (const l of net.layers) {
      const r = this.own[l.index];
      if (!r) continue;
      k.download(this.bias[l.index]!);
      blocks.push({
        name: `${l.name}.bias`,
        rows: [0, 1],
        cols: [r[0], r[1]],
        data: this.bias[l.index]!.slice(),
      });
      const Lm = this.lateral[l.index];
      if (Lm) {
        k.download(Lm);
        blocks.push({
          name: `${l.name}.lateral`,
          rows: [0, l.size],
          cols: [0, l.size],
          data: Lm.slice(),
        });
      }
    }
    for (const h of this.held) {
      if (!h || !h.fromView) continue;
      const F = this.own[h.from]!;
      const v = h.fromView;
      k.download(v.data);
      const name = `${net.layers[h.from]!.name}-${net.layers[h.to]!.name}.weights`;
      blocks.push({
        name,
        rows: [F[0], F[1]],
        cols: [0, h.nt],
        data: v.data.slice(0, (F[1] - F[0]) * h.nt),
      });
    }
    return { shard: this.shard, step: this.applied, blocks };
  }

  /**
   * Every weight tile this shard holds, owned or replica: tile (a, b) is rows of shard a's
   * from-units x columns of shard b's to-units; `owner` is a. For checking replicas.
   */
  weightTiles(): (ParameterBlock & { owner: number; step: number })[] {
    const net = this.net;
    const out: (ParameterBlock & { owner: number; step: number })[] = [];
    for (const h of this.held) {
      if (!h) continue;
      const name = `${net.layers[h.from]!.name}-${net.layers[h.to]!.name}.weights`;
      for (const t of h.tiles) {
        const d = t.dests[0]!;
        const w = t.c1 - t.c0;
        const data = new Float32Array((t.r1 - t.r0) * w);
        this.kernels.download(d.slab.data);
        for (let i = 0; i < t.r1 - t.r0; i++)
          data.set(d.slab.data.subarray(d.off + i * d.slab.ld, d.off + i * d.slab.ld + w), i * w);
        out.push({
          name,
          rows: [t.r0, t.r1],
          cols: [t.c0, t.c1],
          data,
          owner: t.a,
          step: this.applied,
        });
      }
    }
    return out;
  }

  /**
   * Measures the next update applied (lastUpdateStats). Costs about one pass over the shard's
   * states and owned weights, so callers ask for one update in many (a worker: one a report).
   */
  monitorNextUpdate(): void {
    this.monitorNext = true;
  }

  /** The last update measured since monitorNextUpdate(), or null. */
  get lastUpdateStats(): ShardUpdateStats | null {
    return this.monitored;
  }

  /** <x_i x_j> means over the owned weights, from the raw stacked states (before centring). */
  private correlations(
    step: number,
    learningRate: number,
    R: number,
    C: number,
  ): Omit<ShardUpdateStats, 'updateNorm'> {
    const k = this.kernels;
    let weights = 0;
    let data = 0;
    let model = 0;
    // Sum over rows r of (sum_i x_ri)(sum_j x_rj), i over rows r0..r1 of S, j over c0..c1 of U.
    const blockSum = (
      S: Float32Array,
      ldS: number,
      r0: number,
      r1: number,
      U: Float32Array,
      ldU: number,
      c0: number,
      c1: number,
      row0: number,
      rows: number,
    ): number => {
      let s = 0;
      for (let r = row0; r < row0 + rows; r++) {
        let a = 0;
        let b = 0;
        for (let i = r0; i < r1; i++) a += S[r * ldS + i]!;
        for (let j = c0; j < c1; j++) b += U[r * ldU + j]!;
        s += a * b;
      }
      return s;
    };
    for (const h of this.held) {
      if (!h) continue;
      const S = this.primary[h.from]!;
      const U = this.primary[h.to]!;
      k.download(S);
      k.download(U);
      for (const t of h.tiles) {
        if (t.a !== this.shard) continue;
        weights += (t.r1 - t.r0) * (t.c1 - t.c0);
        data += blockSum(S, h.nf, t.r0, t.r1, U, h.nt, t.c0, t.c1, 0, R) / R;
        model += blockSum(S, h.nf, t.r0, t.r1, U, h.nt, t.c0, t.c1, R, C) / C;
      }
    }
    for (const l of this.net.layers) {
      if (!this.lateral[l.index] || !this.own[l.index]) continue;
      const n = l.size;
      const X = this.primary[l.index]!;
      k.download(X);
      // sum over i != j of x_ri x_rj = (sum_i x_ri)^2 - sum_i x_ri^2
      const offDiagonal = (row0: number, rows: number): number => {
        let s = 0;
        for (let r = row0; r < row0 + rows; r++) {
          let a = 0;
          let q = 0;
          for (let i = 0; i < n; i++) {
            const x = X[r * n + i]!;
            a += x;
            q += x * x;
          }
          s += a * a - q;
        }
        return s;
      };
      weights += n * (n - 1);
      data += offDiagonal(0, R) / R;
      model += offDiagonal(R, C) / C;
    }
    return {
      step,
      learningRate,
      weights,
      dataCorrelation: weights > 0 ? data / weights : NaN,
      modelCorrelation: weights > 0 ? model / weights : NaN,
    };
  }

  /** Norm of the change the update just applied to the owned weights and laterals. */
  private ownedUpdateNorm(lr: number): number {
    const k = this.kernels;
    const m = this.options.momentum;
    let sq = 0;
    // The change is the velocity with momentum, else lr x the gradient (decay included).
    const add = (x: Float32Array, off: number, rows: number, w: number, ld: number): void => {
      k.download(x);
      let s = 0;
      for (let i = 0; i < rows; i++)
        for (let j = 0; j < w; j++) {
          const v = x[off + i * ld + j]!;
          s += v * v;
        }
      sq += m > 0 ? s : lr * lr * s;
    };
    for (const h of this.held) {
      if (!h) continue;
      for (const t of h.tiles) {
        if (t.a !== this.shard) continue;
        const d = t.dests[0]!;
        add(m > 0 ? d.slab.vel : d.slab.grad, d.off, t.r1 - t.r0, t.c1 - t.c0, d.slab.ld);
      }
    }
    for (const l of this.net.layers) {
      if (!this.lateral[l.index] || !this.own[l.index]) continue;
      const n = l.size;
      add(m > 0 ? this.latVel[l.index]! : this.latGrad[l.index]!, 0, n, n, n);
    }
    return Math.sqrt(sq);
  }

  /** Copies of the staleness histograms and traffic counters. */
  stats(): ShardStats {
    return { spinStaleness: [...this.spinHist], weightLag: [...this.lagHist], ...this.counters };
  }

  // ---------------------------------------------------------------------------- checkpoints

  private identity(): Record<string, unknown> {
    return { spec: this.spec, layout: this.layout, shard: this.shard, train: this.options };
  }

  /**
   * The parameter, velocity, offset and chain arrays a checkpoint holds, by name: checkpoint()
   * writes them and restore() reads them back from this one list.
   */
  private stateArrays(): [string, Float32Array][] {
    const net = this.net;
    const out: [string, Float32Array][] = [];
    const add = (name: string, a: Float32Array | null | undefined): void => {
      if (a) out.push([name, a]);
    };
    for (const l of net.layers) {
      if (this.own[l.index]) {
        add(`bias.${l.name}`, this.bias[l.index]);
        add(`biasVel.${l.name}`, this.biasVel[l.index]);
      }
      add(`lateral.${l.name}`, this.lateral[l.index]);
      add(`lateralVel.${l.name}`, this.latVel[l.index]);
      if (this.relevant[l.index]) {
        add(`offset.${l.name}`, this.offsets[l.index]);
        if (!this.cd) add(`chains.${l.name}`, this.negX[l.index]);
      }
    }
    for (const h of this.held) {
      if (!h) continue;
      h.slabs.forEach((s, i) => {
        add(`weights.${h.index}.${i}`, s.data);
        add(`weightsVel.${h.index}.${i}`, s.vel);
      });
    }
    return out;
  }

  /**
   * The shard's state at the current step boundary T (see the file header for the rule that
   * makes recovery exact). @throws SpecError unless quiescent (a step boundary with every
   * update applied: where advance() reports 'checkpoint')
   */
  checkpoint(): Uint8Array {
    if (!this.quiescent)
      throw new SpecError(
        'checkpoint',
        'needs a step boundary with every update applied (take it when advance() reports a checkpoint)',
      );
    const k = this.kernels;
    const arrays: [string, CodecArray][] = [];
    for (const [name, a] of this.stateArrays()) {
      k.download(a);
      arrays.push([name, a]);
    }
    arrays.push(['versions', this.ver[NEG].slice()]);
    const index: number[] = [];
    const parts: Uint8Array[] = [];
    this.inbox.forEach((box, idx) => {
      if (!box) return;
      for (const [g, bytes] of box) {
        if (Math.floor(g / this.P) >= this.t) continue; // resent after a rollback
        index.push(idx, g, bytes.length);
        parts.push(bytes);
      }
    });
    arrays.push(['inbox.index', Float64Array.from(index)], ['inbox.bytes', concat(parts)]);
    if (this.pairing) {
      const hIndex: number[] = [];
      const hParts: Uint8Array[] = [];
      this.ownHist.forEach((hist, l) => {
        for (const [g, bytes] of hist ?? []) {
          hIndex.push(l, g, bytes.length);
          hParts.push(bytes);
        }
      });
      arrays.push(
        ['pairing.hist.index', Float64Array.from(hIndex)],
        ['pairing.hist.bytes', concat(hParts)],
        ['pairing.sigma', Float64Array.from(this.pairs.map((q) => q.sigma))],
      );
    }
    arrays.push(
      ['stats.spin', Float64Array.from(this.spinHist)],
      ['stats.lag', Float64Array.from(this.lagHist)],
    );
    this.released = Math.max(this.released, this.t);
    return encodeContainer(
      { format: 1, ...this.identity(), step: this.t, counters: this.counters },
      arrays,
    );
  }

  /**
   * Pairing after a restore: the own states peers may still pair with and each tile's last
   * pairing, as checkpointed (the inbox holds the peers' states); a checkpoint of a lockstep run
   * (no pairing arrays) needs only the chain states, at their lockstep stamps.
   */
  private restorePairing(arrays: Map<string, CodecArray>, step: number): void {
    for (const hist of this.ownHist) hist?.clear();
    const index = arrays.get('pairing.hist.index');
    const bytes = arrays.get('pairing.hist.bytes');
    const sigma = arrays.get('pairing.sigma');
    const pairs = this.pairs;
    if (index !== undefined || bytes !== undefined || sigma !== undefined) {
      if (
        !(index instanceof Float64Array) ||
        !(bytes instanceof Uint8Array) ||
        !(sigma instanceof Float64Array) ||
        sigma.length !== pairs.length
      )
        throw new FormatError('checkpoint', 'has damaged pairing arrays');
      let off = 0;
      for (let i = 0; i < index.length; i += 3) {
        const hist = this.ownHist[index[i]!];
        const len = index[i + 2]!;
        if (!hist || off + len > bytes.length)
          throw new FormatError('checkpoint', 'has a damaged pairing history');
        hist.set(index[i + 1]!, bytes.slice(off, off + len));
        off += len;
      }
      pairs.forEach((q, i) => (q.sigma = sigma[i]!));
    } else {
      for (const q of pairs) q.sigma = -Infinity;
      this.keepChainStates(step - 1);
    }
    this.ownReads.clear();
    this.peerReads.clear();
    this.updateKeepFrom();
  }

  /**
   * Restores a checkpoint of this shard (same network, layout, shard index and training
   * options; staleness and checkpointEvery may differ). The shard is then at its step boundary
   * with nothing pending; it redraws and resends everything from there.
   * @throws FormatError for a damaged checkpoint, SpecError for one of another configuration
   */
  restore(bytes: Uint8Array): void {
    const { header, arrays } = decodeContainer(bytes);
    if (header['format'] !== 1) throw new FormatError('checkpoint', 'has an unknown format');
    const id = this.identity();
    for (const key of Object.keys(id)) {
      if (JSON.stringify(header[key]) !== JSON.stringify(id[key]))
        throw new SpecError(`checkpoint.${key}`, 'differs from this shard trainer');
    }
    const step = header['step'];
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 0)
      throw new FormatError('checkpoint', 'has no valid step');
    const k = this.kernels;
    this.posStep = -1;
    for (const [name, into] of this.stateArrays()) {
      const a = arrays.get(name);
      if (!(a instanceof Float32Array) || a.length !== into.length)
        throw new FormatError('checkpoint', `lacks array ${name} of ${into.length} values`);
      into.set(a);
      k.upload(into);
    }
    const versions = arrays.get('versions');
    const index = arrays.get('inbox.index');
    const all = arrays.get('inbox.bytes');
    const spin = arrays.get('stats.spin');
    const lag = arrays.get('stats.lag');
    if (
      !(versions instanceof Float64Array) ||
      versions.length !== this.ver[NEG].length ||
      !(index instanceof Float64Array) ||
      !(all instanceof Uint8Array) ||
      !(spin instanceof Float64Array) ||
      !(lag instanceof Float64Array)
    )
      throw new FormatError('checkpoint', 'lacks its progress arrays');
    this.ver[NEG].set(versions);
    this.ver[POS].fill(NaN);
    for (const box of this.inbox) box?.clear();
    let off = 0;
    for (let i = 0; i < index.length; i += 3) {
      const box = this.inbox[index[i]!];
      const len = index[i + 2]!;
      if (!box || off + len > all.length)
        throw new FormatError('checkpoint', 'has a damaged inbox');
      box.set(index[i + 1]!, all.slice(off, off + len));
      off += len;
    }
    if (this.pairing) this.restorePairing(arrays, step);
    this.spinHist = Array.from(spin);
    this.lagHist = Array.from(lag);
    const counters = header['counters'] as Partial<typeof this.counters> | undefined;
    if (counters)
      for (const key of Object.keys(this.counters) as (keyof typeof this.counters)[])
        this.counters[key] = Number(counters[key] ?? 0);
    for (const p of this.pending.values()) this.pool.push(p);
    this.pending.clear();
    this.outbox = [];
    this.t = step;
    this.p = 0;
    this.applied = step;
    this.released = step;
  }
}
