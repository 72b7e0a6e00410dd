// The state bus: the shared state of a spinmesh cluster that outlives any one process. The hot
// path (spins between peers) goes over gRPC; everything here is slower, durable-ish state.
import type {
  AppendEventOptions,
  Assignment,
  Checkpoint,
  CheckpointInfo,
  JobEvent,
  NewJobEvent,
  JobPage,
  JobPatch,
  JobRecord,
  JobState,
  ListJobsOptions,
  NewJob,
  ReadEventsOptions,
  SpinSnapshot,
  TransitionResult,
  WorkerInfo,
} from './types.js';

/**
 * The shared state of a cluster: worker membership, job records and their life cycle, shard
 * assignment, spin snapshots, checkpoints and job event streams.
 *
 * Two implementations keep the same contract (one test suite runs against both): `RedisBus`
 * for a cluster, `MemoryBus` for one process.
 *
 * Common rules:
 * - Ids of jobs and workers are 1-128 characters of `[A-Za-z0-9._-]` starting with a letter or
 *   digit; shard ids and steps are non-negative integers. Bad arguments throw
 *   `InvalidArgumentError` naming the field, before anything is read or written.
 * - Each write is atomic: other clients see all of its effect or none of it (the exceptions,
 *   `putCheckpoint` and `deleteJob`, say how they stay safe). Reads that gather several records
 *   (`listJobs`, `listWorkers`) are not snapshots: each record is read atomically.
 * - Writes that belong to a job (`transitionJob`, `updateJobProgress`, `setAssignment`,
 *   `reassignShard`, `putSpins`, `putCheckpoint`, `appendEvent`) throw `JobNotFoundError` if
 *   the job does not exist, so nothing is written for a deleted job. Reads of a missing job's
 *   data return `null` or an empty list (except `readEvents`, see there).
 * - Values are copied in and out: mutating an argument after the call has settled, or a
 *   result, changes nothing on the bus. (Until the call settles the bus may still be sending
 *   the bytes of `putSpins` and `putCheckpoint`: do not change them meanwhile.)
 * - After `close()`, every method throws `BusClosedError`.
 */
export interface Bus {
  // --- membership ---------------------------------------------------------------------------

  /**
   * Announces a worker, live for `ttlMs` milliseconds unless `heartbeat` extends it. Replaces
   * any earlier registration with the same id (a restarted worker registers again).
   * @param ttlMs - liveness time in milliseconds, a positive integer. Pick a few heartbeat
   *   intervals, so that one late heartbeat does not look like a death.
   */
  registerWorker(info: WorkerInfo, ttlMs: number): Promise<void>;

  /**
   * Extends a live worker's registration to `ttlMs` milliseconds from now.
   * @returns true if extended; false if the worker is unknown or its registration has already
   *   expired. On false the worker must call `registerWorker` again, and should expect that its
   *   shards may have been reassigned meanwhile.
   */
  heartbeat(workerId: string, ttlMs: number): Promise<boolean>;

  /** The live workers (registration not expired), sorted by id. */
  listWorkers(): Promise<WorkerInfo[]>;

  /**
   * Withdraws a worker at once (a clean shutdown), without waiting for its TTL.
   * @returns true if it was registered and live.
   */
  removeWorker(workerId: string): Promise<boolean>;

  // --- jobs -----------------------------------------------------------------------------------

  /**
   * Creates a job in state `queued`, with `createdAt = updatedAt = now`, and appends the state
   * event `{type: 'state', at, from: null, to: 'queued'}` to its stream, atomically.
   * @returns the stored record.
   * @throws `JobExistsError` if a job with that id exists; `InvalidArgumentError` for a bad id,
   *   a reserved field name or a value that is not JSON.
   */
  createJob(job: NewJob): Promise<JobRecord>;

  /** The job's record, or null if there is no such job. */
  getJob(jobId: string): Promise<JobRecord | null>;

  /**
   * Lists jobs in creation order, a page at a time. Pages are stable under concurrent creation
   * and deletion: a page token marks a position in creation order, so no job is listed twice and
   * every job that exists throughout the listing is listed. A page may hold fewer than
   * `pageSize` jobs even when more follow; only `nextPageToken === null` means the end.
   * @throws `InvalidArgumentError` for a page size out of 1-1000 or a token not from listJobs.
   */
  listJobs(options?: ListJobsOptions): Promise<JobPage>;

  /**
   * Atomic compare-and-set of a job's state: if the job's state is one of `allowedFrom`, moves it
   * to `to`, applies `patch` (a shallow merge patch of its fields, `null` removes a field), sets
   * `updatedAt`, and appends the state event `{type: 'state', at, from, to}` to its stream, all
   * at once. Of several concurrent calls from the same state, exactly one succeeds.
   * @returns `{ok: true, record}` with the new record, or `{ok: false, record}` with the
   *   unchanged current record if its state is not in `allowedFrom`.
   * @throws `IllegalTransitionError` if some state in `allowedFrom` may not move to `to` (see
   *   `LEGAL_TRANSITIONS`; terminal states are final), checked before anything is read;
   *   `JobNotFoundError`; `InvalidArgumentError` for an empty `allowedFrom` or a bad patch.
   */
  transitionJob(
    jobId: string,
    allowedFrom: readonly JobState[],
    to: JobState,
    patch?: JobPatch,
  ): Promise<TransitionResult>;

  /**
   * Sets the job's `progress` field (any JSON; the coordinator's aggregate of the workers'
   * reports) and `updatedAt`. Progress of a job in a terminal state is frozen.
   * @returns true if written, false if the job is in a terminal state.
   * @throws `JobNotFoundError`.
   */
  updateJobProgress(jobId: string, progress: unknown): Promise<boolean>;

  /**
   * Deletes the job and every key that belongs to it (record, events, assignment, spins,
   * checkpoints). The record goes first, atomically with its index entry, so that any write for
   * the job that arrives afterwards fails with `JobNotFoundError` and leaves nothing behind;
   * then the rest is removed. Blocked `readEvents` callers are not woken; they time out.
   * @returns true if the job existed.
   */
  deleteJob(jobId: string): Promise<boolean>;

  // --- shard assignment -----------------------------------------------------------------------

  /**
   * Replaces the job's shard assignment atomically.
   * @throws `StaleAssignmentError` unless `assignment.generation` is larger than the stored
   *   one (a coordinator with an outdated view cannot overwrite a newer assignment);
   *   `JobNotFoundError`; `InvalidArgumentError` for repeated shard ids, bad worker ids or
   *   empty unit ranges.
   */
  setAssignment(jobId: string, assignment: Assignment): Promise<void>;

  /** The job's assignment with shards sorted by id, or null if it has none. */
  getAssignment(jobId: string): Promise<Assignment | null>;

  /**
   * Moves one shard from `fromWorker` to `toWorker` if `fromWorker` still holds it, and raises
   * the generation by one, atomically. Of several coordinators racing to move the shard of a dead
   * worker, exactly one succeeds.
   * @returns true if moved; false if the shard is no longer held by `fromWorker`.
   * @throws `ShardNotFoundError` if the job has no assignment or no such shard;
   *   `JobNotFoundError`; `InvalidArgumentError` if the two workers are the same.
   */
  reassignShard(
    jobId: string,
    shardId: number,
    fromWorker: string,
    toWorker: string,
  ): Promise<boolean>;

  // --- spin snapshots -------------------------------------------------------------------------

  /**
   * Publishes the newest spins of a shard for observers and late joiners; only the latest is
   * kept. A snapshot of an earlier step than the stored one is ignored (a slow write cannot
   * overwrite a newer one); an equal step replaces it.
   * @returns true if stored, false if a later step was already stored.
   * @throws `JobNotFoundError`.
   */
  putSpins(jobId: string, shardId: number, step: number, packed: Uint8Array): Promise<boolean>;

  /** The newest spin snapshot of a shard, or null if none was published. */
  getSpins(jobId: string, shardId: number): Promise<SpinSnapshot | null>;

  // --- checkpoints ----------------------------------------------------------------------------

  /**
   * Stores a shard checkpoint and makes it the shard's current one. The bytes are written in
   * chunks under a fresh version, then one atomic switch of the shard's pointer makes them
   * current, then the previous version's chunks are deleted. A reader never sees a half-written
   * checkpoint; a writer that dies midway leaves the previous checkpoint current (its orphaned
   * chunks go with `deleteJob`). A checkpoint of an earlier step than the current one is
   * refused and its chunks removed; an equal step replaces it. `generation` (default 0) is the
   * assignment generation the writer runs under, listed with the checkpoint: after a rollback,
   * a checkpoint written before it of a later step than the one restored belongs to an abandoned
   * run (`commonCheckpointStep` of the worker's protocol skips it). A generation older than the
   * job's assignment is refused: its writer's run was replaced (a worker whose heartbeat lapsed
   * but still runs, or one not yet told of a rollback), so it can overwrite nothing, not even
   * the checkpoint a rollback restores. Generation 0 is not checked.
   * @returns true if it became current, false if a later one was already current.
   * @throws `JobNotFoundError`; `StaleWriterError` for a replaced writer (either way nothing is
   *   left behind).
   */
  putCheckpoint(
    jobId: string,
    shardId: number,
    step: number,
    data: Uint8Array,
    generation?: number,
  ): Promise<boolean>;

  /**
   * The current checkpoint of a shard, whole and exactly as written, or null if it has none. If
   * the checkpoint is replaced while being read, the read starts over on the new one.
   * @throws `CheckpointReadError` if it was replaced during each of several attempts.
   */
  getCheckpoint(jobId: string, shardId: number): Promise<Checkpoint | null>;

  /** What the job's current checkpoints are (one per shard that has one), sorted by shard id. */
  listCheckpoints(jobId: string): Promise<CheckpointInfo[]>;

  // --- events ---------------------------------------------------------------------------------

  /**
   * Appends an event to the job's stream (for WatchJob), trimming the stream to `maxLen` newest
   * events if set (or the bus's `maxEventsPerJob`).
   * @returns the event's id, larger than every earlier id of the stream.
   * @throws `JobNotFoundError`; `InvalidArgumentError` if `type` is empty, `at` not a number or a
   *   field not JSON.
   */
  appendEvent(jobId: string, event: NewJobEvent, options?: AppendEventOptions): Promise<string>;

  /**
   * Reads the job's events after `after` (from the start of the stream when omitted: a watcher
   * gets the history first), oldest first, at most `count`. With `blockMs > 0` and nothing to
   * read yet, waits up to that long for the next append and returns what it brought, or `[]` on
   * time-out. Readers never consume events: any number of watchers may read the same stream.
   * @throws `JobNotFoundError` if the job does not exist when the call starts;
   *   `BusClosedError` if the bus is closed while waiting.
   */
  readEvents(jobId: string, options?: ReadEventsOptions): Promise<JobEvent[]>;

  // --- lifetime -------------------------------------------------------------------------------

  /** Resolves if the bus's store answers; rejects otherwise (for health checks). */
  ping(): Promise<void>;

  /**
   * Releases the bus's connections. Pending blocking reads reject with `BusClosedError`.
   * Idempotent. The stored state stays.
   */
  close(): Promise<void>;
}
