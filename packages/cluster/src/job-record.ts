// A job record on the bus as the coordinator writes it and the workers read it: the fields
// besides the bus's own, typed once for both sides.
import type { JobRecord } from '@spinmesh/bus';
import type {
  Evaluation as ModelEvaluation,
  JobSpecJson,
  SequenceJobSpec,
  ShardLayout,
} from '@spinmesh/model';

/**
 * The coordinator's fields of a job record (besides the bus's id, state, createdAt,
 * updatedAt). Written once by SubmitJob, except `progress` (updateJobProgress) and the fields
 * that transitions patch in (`error`, `evaluation`, `model`, `reason`).
 */
export interface JobFields {
  /** spec.name. */
  name: string;
  /**
   * The validated spec, defaults filled in: what every worker reads to build its shard (the
   * spec's one channel to the workers; an assignment says only how a generation runs). Absent
   * for a sequence job, whose spec is `sequence`. In its JSON form (jobSpecFromJson gives the
   * code's).
   */
  spec?: JobSpecJson;
  /** A sequence job's spec (rule 'stdp'): on a thread of the coordinator, or in shards. */
  sequence?: SequenceJobSpec;
  /** Number of shards (spec.workers). */
  workers: number;
  /** Shard s owns layout[s] (layer name -> [start, end)). */
  layout: ShardLayout;
  rows: number;
  stepsPerEpoch: number;
  totalSteps: number;
  progress?: ProgressRecord;
  /** Why the job failed, or why it went back to the queue. */
  error?: string;
  reason?: string;
  /** The last evaluation. */
  evaluation?: ModelEvaluation;
  /** Where the model is, once completed. */
  model?: ModelRecord;
}

/** The job's `progress` field: the coordinator's aggregate of the workers' reports. */
export interface ProgressRecord {
  /** Steps every shard has completed. */
  step: number;
  totalSteps: number;
  epoch: number;
  /** Steps per shard, by shard id. */
  shardSteps: number[];
  /** The assignment generation the figures belong to. */
  generation: number;
  /** The step the shards last restarted from after a failure (0: never). */
  restoredFromStep: number;
  /** Reassignments after failures so far. */
  recoveries: number;
  /** Mean over the shards of the fraction of their run spent computing / waiting for peers. */
  computeFraction?: number;
  waitFraction?: number;
  /** The last evaluation during training, if any. */
  evaluation?: ModelEvaluation;
  /**
   * The layout the shards run now, when the coordinator has rebalanced the job (moved units
   * from slow workers to fast ones); absent: the record's `layout`. Read it with currentLayout.
   */
  layout?: ShardLayout;
  /** Rebalances so far. */
  rebalances?: number;
}

/** Where a completed job's model file is on the bus. */
export interface ModelRecord {
  /** The bus checkpoint slot that holds it (the coordinator's model store). */
  shard: number;
  /** The step it was trained to. */
  step: number;
  /** Size of the model file in bytes. */
  bytes: number;
}

/** The layout a job's shards run now: the last rebalance's, else the one it was planned with. */
export function currentLayout(job: StoredJob): ShardLayout | undefined {
  return job.progress?.layout ?? job.layout;
}

/**
 * A job record read back with the coordinator's fields typed. Every field is optional: a record
 * written by another hand than SubmitJob's may lack any, so a reader checks what it relies on.
 */
export type StoredJob = JobRecord & Partial<JobFields>;
