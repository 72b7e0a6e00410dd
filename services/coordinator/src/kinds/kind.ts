// The coordinator's half of a job kind: what differs per kind from submission to the model
// service. The control loop, the placement and the model service ask the kind of a job
// (kindOf) and never test its rule themselves.
import type { Assignment, UnitRange } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import type { Dataset, ShardLayout } from '@spinmesh/model';
import type { JobFields, JobKindContract, StoredJob } from '@spinmesh/cluster';
import type { ShardAssignment } from '@spinmesh/proto';

import type { PlacedShard } from '../assignment.js';
import type { ControlContext } from '../control-context.js';
import type { WorkOfShare } from '../rebalance.js';

/** A submitted spec, validated once and planned: what the job record and admission need. */
export interface PlannedJob {
  fields: JobFields;
  /** What the job is estimated to hold in memory (the admission's and the queue's limits). */
  bytes: number;
  /** Data loaded while planning, kept for the job's evaluations. */
  data?: { train: Dataset; test: Dataset };
  /** Figures for the 'job submitted' log line. */
  logged: Record<string, unknown>;
}

/** A file of a model as GetModel sends it. */
export interface ModelFile {
  file: string;
  bytes: Uint8Array;
}

/** A job the coordinator trains itself, on its own threads. */
export interface LocalTraining {
  readonly on: 'coordinator';
  /** Starts a queued job (it moves it to running itself). */
  start(job: StoredJob, ctx: ControlContext): Promise<void>;
  /** A pass's look at the running job (after a restart: train it again). */
  watch(job: StoredJob, ctx: ControlContext): Promise<void>;
}

/** A job trained in shards, one per worker, placed and watched by the control loop. */
export interface ShardedTraining {
  readonly on: 'workers';
  /** Shard s's units as ranges by layer index (the bus's assignment records them). */
  units(job: StoredJob, s: number): UnitRange[];
  /** What the worker of one shard is told. */
  assignment(
    job: StoredJob,
    args: {
      generation: number;
      shards: readonly PlacedShard[];
      shardId: number;
      restoreFromStep: number;
    },
  ): ShardAssignment;
  /** How the job moves between layouts when its workers run at different speeds, if it can. */
  rebalancing?: Rebalancing;
  /**
   * A pass's extra work while every shard is well, and before finish() (evaluations from
   * checkpoints): true when it did some, so that the caller may ask again.
   */
  duringTraining?(job: StoredJob, ctx: ControlContext): Promise<boolean>;
  /** Every shard has its final export: make the model, evaluate, store it, complete the job. */
  finish(job: StoredJob, a: Assignment, ctx: ControlContext): Promise<void>;
}

/** What rebalance.ts needs of a kind whose shards can be moved between layouts exactly. */
export interface Rebalancing {
  /** Whether this job can be rebalanced (lockstep, with checkpoints to move), else why not. */
  refusal(job: StoredJob): string | null;
  /** The layout the job's shards run now. */
  layout(job: StoredJob): ShardLayout;
  /** The share of the step's work a shard with a share of every layer's units does. */
  work(job: StoredJob): WorkOfShare;
  /** A layout of the job's network with shares of units in proportion to `speeds`. */
  balanced(job: StoredJob, speeds: readonly number[]): ShardLayout;
  /**
   * Every shard's checkpoint of one step, re-cut for `layout`.
   * @throws SpecError or FormatError when they cannot be moved exactly
   */
  relayout(checkpoints: readonly Uint8Array[], layout: ShardLayout): Uint8Array[];
}

export interface CoordinatorKind {
  readonly contract: JobKindContract;
  /**
   * Validates (once: the value stored is the validated one) and plans a submitted spec, checking
   * the limits. @throws SpecError naming the field, LimitError
   */
  plan(input: unknown, ctx: ControlContext): Promise<PlannedJob>;
  /** A stored job's estimate in bytes, for the queue's limits. @throws when it cannot be had */
  estimatedBytes(job: StoredJob): number;
  /** Where and how a stored job trains. */
  training(job: StoredJob): LocalTraining | ShardedTraining;
  /**
   * The files GetModel sends of a model: `npy` asks for arrays. @throws ServerError
   * FAILED_PRECONDITION when the kind's model has no such form
   */
  modelFiles(job: StoredJob, bytes: Uint8Array, npy: boolean, kernels: Kernels): ModelFile[];
}
