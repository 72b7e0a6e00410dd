// The values that travel over the bus. Everything here is plain data: it survives a JSON (or,
// for spins and checkpoints, a byte) round trip through Redis unchanged.

/** A JSON value. Numbers must be finite; the bus rejects NaN and Infinity rather than store null. */
export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;

/** A JSON object. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A worker process as it announces itself in the membership set. */
export interface WorkerInfo {
  /** Unique id: 1-128 characters of `[A-Za-z0-9._-]`, starting with a letter or digit. */
  id: string;
  /** `host:port` of the worker's gRPC server, where peers open spin-exchange streams. */
  address: string;
  /** CPU cores the worker has to itself (a positive integer). */
  cores: number;
  /** When the worker process started, in milliseconds since the Unix epoch. */
  startedAt: number;
  /** Free-form facts for schedulers and dashboards (version, host name, accelerator...). */
  meta: JsonObject;
}

/** The states of a job; see {@link LEGAL_TRANSITIONS} for the moves between them. */
export type JobState = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled';

/**
 * A job as stored on the bus. `id`, `state`, `createdAt` and `updatedAt` belong to the bus; every
 * other field (`spec`, `error`, `progress`, ...) is the caller's JSON, set by `createJob` and
 * changed by the patch of `transitionJob` or by `updateJobProgress`.
 */
export interface JobRecord {
  readonly id: string;
  readonly state: JobState;
  /** Milliseconds since the Unix epoch, by the clock of the client that created the job. */
  readonly createdAt: number;
  /** Milliseconds since the Unix epoch of the last change (transition, patch or progress). */
  readonly updatedAt: number;
  readonly [field: string]: JsonValue;
}

/**
 * What `createJob` takes: the id and any fields. Field values must be JSON, checked at run time
 * (typed `unknown` so that interfaces such as a generated spec type can be passed as they are).
 * A field whose value is `null` is not stored. The names `state`, `createdAt` and `updatedAt`
 * are reserved.
 */
export interface NewJob {
  readonly id: string;
  readonly [field: string]: unknown;
}

/**
 * A shallow JSON merge patch of a job's fields (RFC 7396 at the top level only): each key
 * replaces that field, a `null` value removes it. Values must be JSON (checked at run time).
 * Reserved names (`id`, `state`, `createdAt`, `updatedAt`) are refused.
 */
export type JobPatch = Readonly<Record<string, unknown>>;

/** What `transitionJob` answers. */
export interface TransitionResult {
  /** True if this call moved the job; false if its state was not one of `allowedFrom`. */
  readonly ok: boolean;
  /** The record after the call: the new one when `ok`, otherwise the unchanged current one. */
  readonly record: JobRecord;
}

/** Options of `listJobs`. */
export interface ListJobsOptions {
  /** Only jobs in this state. Default: every state. */
  state?: JobState;
  /**
   * Most jobs in one page, 1 to 1000.
   * @defaultValue 100
   */
  pageSize?: number;
  /** The `nextPageToken` of the previous page; omit for the first page. */
  pageToken?: string;
}

/** One page of `listJobs`. */
export interface JobPage {
  /** Jobs in creation order (oldest first). */
  readonly jobs: JobRecord[];
  /** Pass as `pageToken` to get the next page; null when there are no more jobs. */
  readonly nextPageToken: string | null;
}

/** A contiguous, half-open range `[start, end)` of unit indices within one layer. */
export interface UnitRange {
  /** Layer index in the network spec (a non-negative integer). */
  layer: number;
  /** First unit of the range (inclusive, a non-negative integer). */
  start: number;
  /** One past the last unit of the range (exclusive, an integer > start). */
  end: number;
}

/** One shard of a job's units and the worker that holds it. */
export interface ShardAssignment {
  /** The shard's id: a non-negative integer, unique within the job. */
  shardId: number;
  /** The worker that samples and trains this shard. */
  workerId: string;
  /** The units of the shard. */
  units: UnitRange[];
}

/** Which worker holds which shard of a job. */
export interface Assignment {
  /**
   * Version of the assignment, a non-negative integer. Every change raises it: `setAssignment`
   * must be given a larger one than the stored one, and `reassignShard` adds one. Workers compare
   * generations to notice that their view is stale.
   */
  generation: number;
  /** The shards, sorted by `shardId` when read back. */
  shards: ShardAssignment[];
}

/** The newest published spins of a shard. */
export interface SpinSnapshot {
  /** The step the spins belong to. */
  readonly step: number;
  /** Bit-packed spins, as the worker sends them to its peers. */
  readonly packed: Uint8Array;
}

/** A shard checkpoint (weights, biases, persistent chains), opaque bytes to the bus. */
export interface Checkpoint {
  /** The step at which it was taken. */
  readonly step: number;
  readonly data: Uint8Array;
}

/** What `listCheckpoints` says about a shard's current checkpoint, without its bytes. */
export interface CheckpointInfo {
  readonly shardId: number;
  readonly step: number;
  /** Size of the checkpoint in bytes. */
  readonly bytes: number;
  /** When it became current, in milliseconds since the Unix epoch (writer's clock). */
  readonly createdAt: number;
  /** The generation (of the job's assignment) its writer ran under; 0 when it gave none. */
  readonly generation: number;
}

/**
 * An entry of a job's event stream. `type` says what happened (`state`, `progress`, `eval`,
 * ...), `at` when (milliseconds since the Unix epoch); any other fields are the event's JSON.
 */
export interface JobEventRecord {
  readonly type: string;
  readonly at: number;
  readonly [field: string]: JsonValue;
}

/**
 * What `appendEvent` takes: like {@link JobEventRecord}, with the other fields typed `unknown`
 * (they must be JSON, checked at run time).
 */
export interface NewJobEvent {
  readonly type: string;
  readonly at: number;
  readonly [field: string]: unknown;
}

/**
 * The event that the bus itself appends, atomically, when a job is created (`from: null`,
 * `to: 'queued'`) and on every successful `transitionJob`.
 */
export interface JobStateEvent extends JobEventRecord {
  readonly type: 'state';
  readonly from: JobState | null;
  readonly to: JobState;
}

/** An event read back from a job's stream, with its id. */
export interface JobEvent {
  /**
   * Stream id, `<ms>-<seq>` as Redis makes them; strictly increasing within a job. Pass it as
   * `after` to read what follows.
   */
  readonly id: string;
  readonly event: JobEventRecord;
}

/** Options of `appendEvent`. */
export interface AppendEventOptions {
  /**
   * Keep at most this many newest events in the job's stream after appending (exact trimming).
   * Default: the bus's `maxEventsPerJob` option; no trimming if neither is set.
   */
  maxLen?: number;
}

/** Options of `readEvents`. */
export interface ReadEventsOptions {
  /** Return only events after this id (exclusive). Default: from the start of the stream. */
  after?: string;
  /**
   * Most events to return, 1 to 10000.
   * @defaultValue 100
   */
  count?: number;
  /**
   * When no event follows `after`, wait up to this many milliseconds for one to be appended.
   * 0 returns at once.
   * @defaultValue 0
   */
  blockMs?: number;
}
