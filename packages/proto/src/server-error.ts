// The one error a spinmesh gRPC handler throws on purpose: a status code and a message for the
// caller. Anything else a handler throws is reported as INTERNAL with a generic message.
import { status as Status, type ServiceError, Metadata } from '@grpc/grpc-js';

/**
 * Longest message a status carries, in characters. Messages quote caller input only shortened,
 * but should one slip through, a status must not outgrow the trailer a client accepts (grpc-js
 * would then report RESOURCE_EXHAUSTED instead of the real status).
 */
export const MAX_DETAILS_CHARS = 1024;

/** `details` cut to MAX_DETAILS_CHARS, saying how long it was. */
export function capDetails(details: string): string {
  if (details.length <= MAX_DETAILS_CHARS) return details;
  const tail = `…(${details.length} chars)`;
  return details.slice(0, MAX_DETAILS_CHARS - tail.length) + tail;
}

/** An error that a server handler reports to its caller with this status and message. */
export class ServerError extends Error {
  override readonly name = 'ServerError';
  /** What the caller did wrong, naming the field: 'spin frame: packed must hold 4000 bytes'. */
  readonly details: string;

  constructor(
    /** The gRPC status code (INVALID_ARGUMENT, FAILED_PRECONDITION, ...). */
    readonly code: Status,
    /** The message; cut to MAX_DETAILS_CHARS. */
    details: string,
  ) {
    const capped = capDetails(details);
    super(capped);
    this.details = capped;
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
