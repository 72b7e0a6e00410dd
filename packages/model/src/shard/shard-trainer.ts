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
//
// Owned tiles (tiles: 'owned', staleness 0). Each weight is held and updated only by the shard
// of its `from` unit (the row band W[F_s, :]); a `to` unit's field is summed from its owner's
// part and its peers' partial fields (float32, one message per stage, layer and receiving
// peer), which a shard sends when a stage opens, before it waits for its own. Row groups
// (rowGroups): each stage is drawn in groups of rows, one after the other, a group's messages
// out as soon as it is drawn, so the exchange of one group travels while the next computes.
//
// CODE. This file is the façade the worker and LoopbackCluster drive: progress and advance().
// The parts: shard-geometry.ts (who owns and reads what), shard-holdings.ts (the parameters
// and tiles held), shard-states.ts (unit states and batches), shard-inbox.ts (received spins
// and the stage inputs), shard-draw.ts (drawing a stage, sending spins), shard-pairing.ts,
// shard-update.ts (the rule), shard-monitor.ts (update statistics), shard-checkpoint.ts
// (checkpoints and exports), shard-tally.ts (ShardStats), shard-types.ts (the public types).
import { type Kernels, seedHalves } from '@spinmesh/kernels';
import { SpecError } from '../errors.js';
import type { NetworkSpec } from '../network.js';
import type { ResolvedTrainOptions } from '../train-options.js';
import { type ShardLayout, shapeNetwork, validateLayout } from './layout.js';
import { type ShardExport, initSource } from './params.js';
import { type StepPlan, stepPlan } from './plan.js';
import { ShardCheckpoints, type StateBlock, type WeightTile } from './shard-checkpoint.js';
import {
  checkData,
  checkRowGroups,
  checkSteps,
  checkTiles,
  shardTrainOptions,
} from './shard-options.js';
import { StageDrawer } from './shard-draw.js';
import { ShardGeometry } from './shard-geometry.js';
import { ShardParameters } from './shard-holdings.js';
import { SpinInbox } from './shard-inbox.js';
import { UpdateMonitor } from './shard-monitor.js';
import { PairingBook } from './shard-pairing.js';
import { ShardStates } from './shard-states.js';
import { ShardTally } from './shard-tally.js';
import type {
  AdvanceBudget,
  AdvanceResult,
  ShardStats,
  ShardTrainerOptions,
  ShardUpdateStats,
  SpinKey,
  SpinMessage,
} from './shard-types.js';
import { ShardUpdater } from './shard-update.js';

export type {
  AdvanceBudget,
  AdvanceResult,
  ShardData,
  ShardStats,
  ShardTrainerOptions,
  ShardUpdateStats,
  SpinKey,
  SpinMessage,
} from './shard-types.js';

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
  /** Who holds a cross-shard weight tile (see ShardTrainerOptions.tiles). */
  readonly tiles: 'replicated' | 'owned';

  private readonly geometry: ShardGeometry;
  private readonly states: ShardStates;
  private readonly params: ShardParameters;
  private readonly tally = new ShardTally();
  private readonly inbox: SpinInbox;
  private readonly pairing: PairingBook;
  private readonly drawer: StageDrawer;
  private readonly updater: ShardUpdater;
  private readonly monitor: UpdateMonitor;
  private readonly checkpoints: ShardCheckpoints;

  /** The step being drawn. */
  private step = 0;
  /** The stage of `step` drawn next. */
  private stage = 0;
  /** Updates applied: those of steps < applied. */
  private applied = 0;
  /** The step requestCheckpoint() asked to stop at (0: none). */
  private requested = 0;
  /** Steps up to which checkpoint() has let the shard go on past a checkpoint stop. */
  private released = 0;
  /** The stamp of the last stage opened (its batch in place; owned tiles: its fields sent). */
  private opened = -1;

  constructor(opts: ShardTrainerOptions) {
    const net = shapeNetwork(opts.network);
    this.spec = net.spec;
    this.kernels = opts.kernels;
    const k = opts.kernels;
    const o = shardTrainOptions(opts.train, net);
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
    const visible = o.visible.map((v) => net.layerIndex(v));
    const dims = visible.reduce((sum, v) => sum + net.layers[v]!.size, 0);
    const data = checkData(opts.data, dims);
    const tiles = checkTiles(opts.tiles, this.staleness, o.productBlock);
    const groups = checkRowGroups(opts.rowGroups, this.staleness);
    this.plan = stepPlan(net, o, visible, groups, tiles === 'owned');
    const [layout, shard, staleness] = [this.layout, this.shard, this.staleness];
    const g = new ShardGeometry(net, layout, shard, o, this.plan, data.rows, staleness, tiles);
    this.geometry = g;
    this.tiles = g.owned ? 'owned' : 'replicated';
    this.stepsPerEpoch = g.stepsPerEpoch;

    this.states = new ShardStates(g, k, data);
    const src = opts.params ?? initSource(opts.network, k, opts.init ?? {});
    this.params = new ShardParameters(g, k, src, g.pairing);
    this.states.initOffsets();
    const { seedLo, seedHi } = seedHalves(o.seed);
    const site = { seedLo, seedHi, unitOffset: 0, chainOffset: o.chainOffset, step: 0, stream: 0 };
    this.inbox = new SpinInbox(g, k, this.states, this.tally);
    if (!g.contrastive) this.states.initChains(src, site);
    this.pairing = new PairingBook(
      g,
      k,
      this.states,
      this.inbox,
      this.tally,
      this.params.pairings(),
    );
    const [states, params, inbox] = [this.states, this.params, this.inbox];
    this.drawer = new StageDrawer(g, k, states, params, this.pairing, this.tally, site, inbox);
    this.monitor = new UpdateMonitor(g, k, this.states, this.params);
    this.updater = new ShardUpdater(
      g,
      k,
      this.states,
      this.params,
      this.inbox,
      this.pairing,
      this.monitor,
    );
    this.checkpoints = new ShardCheckpoints(
      g,
      k,
      this.states,
      this.params,
      this.inbox,
      this.pairing,
      this.tally,
    );
  }

  // ---------------------------------------------------------------------------- progress

  /** Where the shard stands: drawing stage `stage` of step `step`; `applied` updates applied. */
  get position(): { step: number; stage: number; applied: number } {
    return { step: this.step, stage: this.stage, applied: this.applied };
  }

  /** Whether every step is drawn and every update applied. */
  get done(): boolean {
    return this.applied >= this.totalSteps;
  }

  /** Whether a checkpoint can be taken now (a step boundary with every update applied). */
  get quiescent(): boolean {
    return this.stage === 0 && this.applied === this.step && this.drawer.pending.size === 0;
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
    const queued = this.drawer.outbox.length;
    for (;;) {
      if (this.applied < this.step && this.inbox.updateReady(this.applied, null)) {
        if (updates >= maxUpdates) return { state: 'budget' };
        // Spins drawn in this call go out before the update: the peers' next stage waits for
        // them, the update (the step's longest work) for nobody until this shard's next draw.
        if (this.drawer.outbox.length > queued) return { state: 'budget' };
        this.applyStep(this.applied);
        updates++;
        continue;
      }
      if (this.applied >= this.totalSteps) return { state: 'done' };
      if (this.step >= this.totalSteps) return this.waitUpdate();
      const t = this.step;
      if (this.stage === 0 && t > 0 && this.released < t && this.stopsAt(t)) {
        return this.applied === t ? { state: 'checkpoint', step: t } : this.waitUpdate();
      }
      if (t - this.applied > this.staleness) return this.waitUpdate();
      if (stages >= maxStages) return { state: 'budget' };
      const before = this.drawer.outbox.length;
      this.openStage(t, this.stage);
      // partial fields the peers wait for go out before this shard computes on
      if (this.drawer.outbox.length > before) return { state: 'budget' };
      if (!this.inbox.inputsReady(t, this.stage, false, null)) {
        const waitingFor: SpinKey[] = [];
        this.inbox.inputsReady(t, this.stage, false, waitingFor);
        if (this.applied < t) this.inbox.updateReady(this.applied, waitingFor);
        return { state: 'waiting', waitingFor };
      }
      this.runStage();
      stages++;
    }
  }

  /** Whether step t is a checkpoint or snapshot step, or the one requestCheckpoint() asked for. */
  private stopsAt(t: number): boolean {
    return (
      (this.checkpointEvery > 0 && t % this.checkpointEvery === 0) ||
      (this.snapshotEvery > 0 && t % this.snapshotEvery === 0) ||
      t === this.requested
    );
  }

  /**
   * Asks for one more checkpoint stop, at step boundary t, besides the periodic ones (a worker
   * checkpoints it for a move to another layout); replaces an earlier request not yet reached.
   * @returns false (and changes nothing) unless t is a boundary ahead of the shard: past the
   *   step it is drawing, and within the run
   */
  requestCheckpoint(t: number): boolean {
    if (!Number.isSafeInteger(t) || t <= this.step || t >= this.totalSteps) return false;
    this.requested = t;
    return true;
  }

  private waitUpdate(): AdvanceResult {
    const waitingFor: SpinKey[] = [];
    this.inbox.updateReady(this.applied, waitingFor);
    return { state: 'waiting', waitingFor };
  }

  /** The spins produced since the last call, to send. */
  outgoing(): SpinMessage[] {
    const out = this.drawer.outbox;
    this.drawer.outbox = [];
    return out;
  }

  /**
   * Gives back messages of outgoing() once they are sent (serialized, or delivered and not
   * kept): their buffers are used again, so a worker does not allocate them every stage.
   */
  recycle(msgs: readonly SpinMessage[]): void {
    this.drawer.recycle(msgs);
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
    const g = this.geometry;
    const box = this.inbox.boxFor(from, step, stage, layer, packed, this.totalSteps);
    const paired = g.pairing && stage === this.plan.lastNegative[layer];
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
    const stamp = g.stamp(step, stage);
    const at = { step: this.step, applied: this.applied };
    if (
      box.has(stamp) ||
      this.inbox.obsolete(g.region(layer, from), stamp, at, this.pairing.keepFrom)
    )
      return false;
    box.set(stamp, packed.slice());
    if (paired) this.pairing.notePeerReads(step, layer, from, reads!);
    this.tally.counters.messagesReceived++;
    this.tally.counters.bytesReceived += packed.length;
    return true;
  }

  /**
   * Delivers a peer's partial field (owned tiles). The array is kept, not copied (a partial
   * field has one recipient): the caller must not change it afterwards. Returns false when it
   * is no longer needed (a duplicate, or a stage already drawn) and was dropped.
   * @throws SpecError when it cannot be meant for this shard (wrong sender, layer, stage or size)
   */
  receiveField(
    from: number,
    step: number,
    stage: number,
    layer: number,
    values: Float32Array,
  ): boolean {
    const g = this.geometry;
    const box = this.inbox.fieldBoxFor(from, step, stage, layer, values, this.totalSteps);
    const stamp = g.stamp(step, stage);
    if (box.has(stamp) || stamp < g.stamp(this.step, this.stage)) return false;
    box.set(stamp, values);
    this.tally.counters.messagesReceived++;
    this.tally.counters.bytesReceived += values.byteLength;
    return true;
  }

  // ---------------------------------------------------------------------------- stages

  /**
   * Puts stage p of step t's own inputs in place once (the batch at its start; CD chains from
   * the batch) and, with owned tiles, sends the peers their partial fields: they need them to
   * draw, so they go before this shard waits for its own.
   */
  private openStage(t: number, p: number): void {
    const g = this.geometry;
    const stamp = g.stamp(t, p);
    if (this.opened >= stamp) return;
    this.opened = stamp;
    if (p === 0) this.drawer.beginStep(t, this.applied);
    if (p === this.plan.firstNegative && g.contrastive) this.drawer.startChainsFromBatch(t);
    if (g.owned) this.drawer.sendReadyFields(t, p);
  }

  private runStage(): void {
    const g = this.geometry;
    const t = this.step;
    const p = this.stage;
    const stage = this.plan.stages[p]!;
    this.openStage(t, p);
    if (stage.layers.some((l) => g.ownRange[l])) {
      this.inbox.inputsReady(t, p, true, null);
      this.tally.countWeightLag(t - this.applied);
      this.drawer.drawStage(t, p);
      this.tally.counters.stagesDrawn++;
    }
    // what this draw made ready goes out before the next stage is drawn
    if (g.owned && p + 1 < g.stagesPerStep) this.drawer.sendReadyFields(t, p + 1);
    if (this.plan.sweepEnds[p]) this.tally.counters.sweeps++;
    this.stage++;
    if (this.stage === g.stagesPerStep) {
      this.drawer.keepOwnStates(t);
      this.step++;
      this.stage = 0;
    }
  }

  // ---------------------------------------------------------------------------- updates

  /** Stacks the statistics of step u (data, own states, peers' states) and applies the rule. */
  private applyStep(u: number): void {
    const g = this.geometry;
    this.updater.stack(u, this.drawer.pending.get(u)!, this.applied);
    this.updater.apply(u, g.batchRowsOf(u), g.modelRowsOf(u));
    if (g.pairing) this.pairing.forget(u);
    this.drawer.release(u);
    this.applied = u + 1;
    this.tally.counters.updatesApplied++;
    const at = { step: this.step, applied: this.applied };
    if (g.pairing) this.pairing.prune();
    this.inbox.prune(at, this.pairing.keepFrom);
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
    const g = this.geometry;
    if (!this.quiescent)
      throw new SpecError('applyUpdate', 'needs a step boundary with every update applied');
    if (!(Number.isInteger(posRows) && posRows >= 1 && posRows <= g.batchSize))
      throw new SpecError('applyUpdate.posRows', `must be an integer in 1..${g.batchSize}`);
    if (!(Number.isInteger(negRows) && negRows >= 1 && negRows <= g.chainRows))
      throw new SpecError('applyUpdate.negRows', `must be an integer in 1..${g.chainRows}`);
    for (const l of g.net.layers) {
      if (!g.tracksLayer[l.index]) continue;
      const n = l.size;
      const P = pos[l.index];
      const N = neg[l.index];
      if (!P || P.length < posRows * n || !N || N.length < negRows * n)
        throw new SpecError(`applyUpdate.state[${l.index}]`, `must hold rows x ${n} values`);
      const stacked = this.states.stacked[l.index]!;
      stacked.set(P.subarray(0, posRows * n));
      stacked.set(N.subarray(0, negRows * n), posRows * n);
      this.kernels.upload(stacked);
    }
    this.updater.apply(this.step, posRows, negRows);
    this.step++;
    this.applied++;
    this.released = Math.max(this.released, this.step);
  }

  // ---------------------------------------------------------------------------- exports

  /** The blocks this shard owns (its biases, its lateral layers, the rows of its from-units). */
  exportBlocks(): ShardExport {
    return this.checkpoints.exportBlocks(this.applied);
  }

  /**
   * Every weight tile this shard holds, owned or replica: tile (a, b) is rows of shard a's
   * from-units x columns of shard b's to-units; `owner` is a. For checking replicas.
   */
  weightTiles(): WeightTile[] {
    return this.checkpoints.weightTiles(this.applied);
  }

  /**
   * Measures the next update applied (lastUpdateStats). Costs about one pass over the shard's
   * states and owned weights, so callers ask for one update in many (a worker: one a report).
   */
  monitorNextUpdate(): void {
    this.monitor.requested = true;
  }

  /** The last update measured since monitorNextUpdate(), or null. */
  get lastUpdateStats(): ShardUpdateStats | null {
    return this.monitor.last;
  }

  /** Copies of the staleness histograms and traffic counters. */
  stats(): ShardStats {
    return this.tally.snapshot();
  }

  // ---------------------------------------------------------------------------- checkpoints

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
    const bytes = this.checkpoints.encode(this.step);
    this.released = Math.max(this.released, this.step);
    return bytes;
  }

  /**
   * Restores a checkpoint of this shard (same network, layout, shard index and training
   * options; staleness and checkpointEvery may differ). The shard is then at its step boundary
   * with nothing pending; it redraws and resends everything from there.
   * @throws FormatError for a damaged checkpoint, SpecError for one of another configuration
   */
  restore(bytes: Uint8Array): void {
    const step = this.checkpoints.restore(bytes);
    this.drawer.reset();
    this.step = step;
    this.stage = 0;
    this.applied = step;
    this.released = step;
    this.requested = 0;
    this.opened = -1;
  }

  // ---------------------------------------------------------------------------- relayout

  /** Where each array of this shard's checkpoints lies in the whole run's state (relayout.ts). */
  stateBlocks(): StateBlock[] {
    return this.checkpoints.stateBlocks();
  }

  /** A checkpoint at step boundary `step` of state moved from another layout (relayout.ts). */
  movedCheckpoint(
    step: number,
    value: (b: StateBlock) => Float32Array,
    stats: ShardStats,
  ): Uint8Array {
    return this.checkpoints.encodeMoved(step, value, stats);
  }
}
