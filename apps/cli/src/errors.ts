// The errors of the command line, and what it makes of every error: its exit code (exitCodeOf)
// and whether its message is meant for the user. The client's domain errors (one per gRPC
// status) come from @spinmesh/client.
import {
  ApiError,
  InvalidRequestError,
  JobNotFoundError,
  ModelTransferError,
  UnauthenticatedError,
  UnavailableError,
} from '@spinmesh/client';
import { FormatError, SpecError } from '@spinmesh/model';

/** The command line's exit codes (`spinmesh --help` lists them). */
export const ExitCode = {
  /** Done. */
  ok: 0,
  /** A failure while running: the job failed or was cancelled, a server error, a refusal. */
  failure: 1,
  /** Bad usage, spec, option or input file; or the server said INVALID_ARGUMENT. */
  usage: 2,
  /** The job (or its model) does not exist: NOT_FOUND. */
  notFound: 3,
  /** The coordinator cannot be reached, is unavailable, or the deadline passed. */
  unavailable: 4,
  /** The server refused the token (or its absence): UNAUTHENTICATED, PERMISSION_DENIED. */
  unauthenticated: 5,
  /** Interrupted by SIGINT (Ctrl-C). */
  interrupted: 130,
  /** Stopped by SIGTERM. */
  terminated: 143,
} as const;

/** A command line the user typed wrong: an unknown command or option, a bad value. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A job that ended without a model: FAILED or CANCELLED. */
export class JobFailedError extends Error {
  override readonly name = 'JobFailedError';
}

/**
 * The embedded local cluster could not go on: a process of it did not start, or one died that is
 * not restarted (the coordinator, or workers past their restarts).
 */
export class LocalClusterError extends Error {
  override readonly name = 'LocalClusterError';
}

/** The user interrupted the command (Ctrl-C) or it was told to stop. */
export class InterruptedError extends Error {
  override readonly name = 'InterruptedError';
  constructor(
    readonly signal: NodeJS.Signals,
    message = `interrupted (${signal})`,
  ) {
    super(message);
  }
}

/** The exit code for an error thrown by a command. */
export function exitCodeOf(e: unknown): number {
  if (e instanceof InterruptedError)
    return e.signal === 'SIGINT' ? ExitCode.interrupted : ExitCode.terminated;
  if (
    e instanceof UsageError ||
    e instanceof InvalidRequestError ||
    e instanceof SpecError ||
    e instanceof FormatError
  )
    return ExitCode.usage;
  if (e instanceof JobNotFoundError) return ExitCode.notFound;
  if (e instanceof UnavailableError) return ExitCode.unavailable;
  if (e instanceof UnauthenticatedError) return ExitCode.unauthenticated;
  return ExitCode.failure;
}

/** An error whose message is meant for the user (no stack trace needed). */
export function isKnownError(e: unknown): e is Error {
  return (
    e instanceof UsageError ||
    e instanceof JobFailedError ||
    e instanceof LocalClusterError ||
    e instanceof InterruptedError ||
    e instanceof ModelTransferError ||
    e instanceof ApiError ||
    e instanceof SpecError ||
    e instanceof FormatError
  );
}
