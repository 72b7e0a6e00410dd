// The errors of the client and the command line. gRPC status codes become domain errors here, at
// the client's boundary (JobNotFoundError, UnavailableError, ...); the command line turns each
// into its exit code (exitCodeOf) and prints its message, which for a server's answer is the
// server's own text (it names the field or the job).
import * as grpc from '@grpc/grpc-js';
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

/** A model download that did not add up (a chunk out of place, a file short of its size). */
export class ModelTransferError extends Error {
  override readonly name = 'ModelTransferError';
}

/** A call the server answered with an error status; `message` is the server's text. */
export class ApiError extends Error {
  override readonly name: string = 'ApiError';
  constructor(
    /** The gRPC status code. */
    readonly code: grpc.status,
    /** The RPC, e.g. 'GetJob'. */
    readonly method: string,
    message: string,
  ) {
    super(message);
  }
}

/** NOT_FOUND: no job with that id. */
export class JobNotFoundError extends ApiError {
  override readonly name = 'JobNotFoundError';
}

/** INVALID_ARGUMENT or OUT_OF_RANGE: the message names the field. */
export class InvalidRequestError extends ApiError {
  override readonly name = 'InvalidRequestError';
}

/** FAILED_PRECONDITION: the job's state does not allow it (cancelling a finished job). */
export class JobStateError extends ApiError {
  override readonly name = 'JobStateError';
}

/** UNAVAILABLE or DEADLINE_EXCEEDED: the coordinator did not answer in time, or at all. */
export class UnavailableError extends ApiError {
  override readonly name = 'UnavailableError';
}

/** UNAUTHENTICATED or PERMISSION_DENIED: a missing or wrong token. */
export class UnauthenticatedError extends ApiError {
  override readonly name = 'UnauthenticatedError';
}

/** CANCELLED: the call was given up on this side (SpinmeshClient.cancelAll). */
export class CallCancelledError extends ApiError {
  override readonly name = 'CallCancelledError';
}

/**
 * The domain error of a failed call. `address` and `deadlineMs` make the messages of a
 * connection failure or a passed deadline say where and how long.
 */
export function toApiError(
  err: grpc.ServiceError,
  method: string,
  address: string,
  deadlineMs?: number,
): ApiError {
  const S = grpc.status;
  const details = err.details || err.message;
  switch (err.code) {
    case S.NOT_FOUND:
      return new JobNotFoundError(err.code, method, details);
    case S.INVALID_ARGUMENT:
    case S.OUT_OF_RANGE:
      return new InvalidRequestError(err.code, method, details);
    case S.FAILED_PRECONDITION:
      return new JobStateError(err.code, method, details);
    case S.UNAUTHENTICATED:
    case S.PERMISSION_DENIED:
      return new UnauthenticatedError(err.code, method, details);
    case S.DEADLINE_EXCEEDED:
      return new UnavailableError(
        err.code,
        method,
        `${method} at ${address}: no answer within the deadline${deadlineMs === undefined ? '' : ` of ${deadlineMs / 1000} s`} (DEADLINE_EXCEEDED)`,
      );
    case S.UNAVAILABLE: {
      // grpc-js: 'No connection established. Last error: Error: connect ECONNREFUSED ...'
      const m =
        /^No connection established\. Last error: (?:Error: )?(.*?)(?:\.? Resolution note:.*)?$/s.exec(
          details,
        );
      return new UnavailableError(
        err.code,
        method,
        m
          ? `cannot reach the coordinator at ${address} (${method}): ${m[1]}`
          : `${method} at ${address}: ${details}`,
      );
    }
    case S.CANCELLED:
      return new CallCancelledError(err.code, method, `${method}: cancelled`);
    default:
      return new ApiError(err.code, method, `${method}: ${details} (${S[err.code] ?? err.code})`);
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
