// The errors of the client. gRPC status codes become domain errors here, at the client's
// boundary (JobNotFoundError, UnavailableError, ...); for a server's answer the message is the
// server's own text (it names the field or the job).
import * as grpc from '@grpc/grpc-js';

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
