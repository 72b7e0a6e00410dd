// The types of a shard trainer's public surface: its options, the spin messages it exchanges,
// what advance() reports, and its statistics.
import type { Kernels } from '@spinmesh/kernels';
import type { InitOptions, NetworkSpec } from '../network.js';
import type { TrainOptions } from '../train-options.js';
import type { ShardLayout } from './layout.js';
import type { ParameterSource } from './params.js';

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
  /**
   * 'owned': every weight is held and updated by one shard, the shard of its `from` unit, which
   * sends the `to` side partial fields (float32); 'replicated': a cross-shard tile is held and
   * updated by both sides and only 1-bit spins travel (see SHARDING.md, "Owned tiles").
   * Owned tiles need staleness 0. @defaultValue 'replicated'
   */
  tiles?: 'replicated' | 'owned';
  /**
   * Draw every stage in this many groups of rows (chains), one after the other, sending each
   * group's messages as soon as it is drawn and a later group's partial fields as soon as their
   * inputs are drawn, so that messages travel while the next group computes. Changes nothing
   * drawn, but the products get shorter, which costs BLAS speed (on the benchmark machine more
   * than the hidden latency saved). Needs staleness 0. @defaultValue 1
   */
  rowGroups?: number;
}

/** A block of spins to deliver to the shards in `to`. `packed` is shared: do not modify it. */
export interface SpinMessage {
  from: number;
  to: readonly number[];
  step: number;
  stage: number;
  layer: number;
  /** Rows (chains) of the block: the stage's row group of the phase's rows. */
  rows: number;
  packed: Uint8Array;
  /**
   * Owned tiles: a partial field instead of spins (then `packed` is empty): the sender's
   * contribution to the fields of the recipient's units of `layer` at this stage, rows x the
   * recipient's units, row-major. Goes to one shard.
   */
  values?: Float32Array;
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
