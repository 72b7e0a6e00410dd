// Typed errors of the bus. Services map them to gRPC statuses (InvalidArgumentError ->
// INVALID_ARGUMENT, JobNotFoundError -> NOT_FOUND, JobExistsError -> ALREADY_EXISTS,
// IllegalTransitionError, StaleAssignmentError and StaleWriterError -> FAILED_PRECONDITION).

/** Base class of every error the bus throws on purpose. */
export class BusError extends Error {
  override name = 'BusError';
}

/** An argument is invalid; `field` is its path, e.g. `assignment.shards[2].units[0].end`. */
export class InvalidArgumentError extends BusError {
  override name = 'InvalidArgumentError';
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field} ${message}`);
  }
}

/** `createJob` was given an id that is already taken. */
export class JobExistsError extends BusError {
  override name = 'JobExistsError';
  constructor(readonly jobId: string) {
    super(`job '${jobId}' already exists`);
  }
}

/** The job does not exist (never created, or deleted). */
export class JobNotFoundError extends BusError {
  override name = 'JobNotFoundError';
  constructor(readonly jobId: string) {
    super(`job '${jobId}' not found`);
  }
}

/** A state change that the job life cycle forbids (see `LEGAL_TRANSITIONS`). */
export class IllegalTransitionError extends BusError {
  override name = 'IllegalTransitionError';
  constructor(
    readonly jobId: string,
    readonly from: string,
    readonly to: string,
  ) {
    super(`job '${jobId}': illegal state transition ${from} -> ${to}`);
  }
}

/** The job has no shard assignment, or none with that shard. */
export class ShardNotFoundError extends BusError {
  override name = 'ShardNotFoundError';
  constructor(
    readonly jobId: string,
    readonly shardId: number | null,
  ) {
    super(
      shardId === null
        ? `job '${jobId}' has no shard assignment`
        : `job '${jobId}' has no shard ${shardId} in its assignment`,
    );
  }
}

/** `setAssignment` was given a generation that is not larger than the stored one. */
export class StaleAssignmentError extends BusError {
  override name = 'StaleAssignmentError';
  constructor(
    readonly jobId: string,
    readonly generation: number,
    readonly currentGeneration: number,
  ) {
    super(
      `job '${jobId}': assignment generation ${generation} is stale ` +
        `(the stored one is ${currentGeneration}; a new one must be larger)`,
    );
  }
}

/**
 * `putCheckpoint` was given a writer's generation older than the job's assignment: the writer's
 * run was replaced (it is a worker whose heartbeat lapsed, or one not yet told of a rollback),
 * and what it would write belongs to an abandoned run.
 */
export class StaleWriterError extends BusError {
  override name = 'StaleWriterError';
  constructor(
    readonly jobId: string,
    readonly shardId: number,
    readonly generation: number,
    readonly currentGeneration: number,
  ) {
    super(
      `job '${jobId}' slot ${shardId}: a checkpoint written under generation ${generation} is ` +
        `refused: the assignment is at generation ${currentGeneration} (a newer run replaced it)`,
    );
  }
}

/** A checkpoint kept being replaced while it was read, more times than the reader retries. */
export class CheckpointReadError extends BusError {
  override name = 'CheckpointReadError';
  constructor(
    readonly jobId: string,
    readonly shardId: number,
    attempts: number,
  ) {
    super(
      `job '${jobId}' shard ${shardId}: the checkpoint was replaced during each of ${attempts} reads`,
    );
  }
}

/** The bus was closed; no further calls are possible. */
export class BusClosedError extends BusError {
  override name = 'BusClosedError';
  constructor() {
    super('the bus is closed');
  }
}

/** The Redis server could not be reached or refused us (wrong password, TLS failure...). */
export class BusConnectionError extends BusError {
  override name = 'BusConnectionError';
  constructor(
    readonly target: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot connect to Redis at ${target}: ${message}`, options);
  }
}
