// The one error a spinmesh gRPC handler throws on purpose: a status code and a message for the
// caller. Anything else a handler throws is reported as INTERNAL with a generic message.
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js';

/** An error that a server handler reports to its caller with this status and message. */
export class ServerError extends Error {
  override readonly name = 'ServerError';

  constructor(
    /** The gRPC status code (INVALID_ARGUMENT, FAILED_PRECONDITION, ...). */
    readonly code: Status,
    /** What the caller did wrong, naming the field: 'spin frame: packed must hold 4000 bytes'. */
    readonly details: string,
  ) {
    super(details);
  }

  /** The object grpc-js sends as the call's status. */
  toServiceError(): ServiceError {
    return Object.assign(new Error(this.details), {
      code: this.code,
      details: this.details,
      metadata: new Metadata(),
    });
  }
}

/**
 * The status to send for whatever a handler threw: a ServerError's own, INTERNAL with a generic
 * message for anything else (its text may hold internals the caller should not see).
 */
export function toServiceError(err: unknown, what: string): ServiceError {
  if (err instanceof ServerError) return err.toServiceError();
  return new ServerError(Status.INTERNAL, `${what} failed`).toServiceError();
}
