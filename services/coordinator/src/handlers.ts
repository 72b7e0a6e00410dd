// What the coordinator's public services share: turning what a handler threw into a status
// and message, unary handlers as async functions, and writing to a server stream with
// back-pressure.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import {
  BusClosedError,
  BusConnectionError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  RemoteBusError,
} from '@spinmesh/bus';
import { FormatError, LimitError, SpecError, type Limits } from '@spinmesh/model';
import { ServerError, toServiceError } from '@spinmesh/proto';
import { LIMIT_ENV_VARS } from './config.js';
import { JobStateError } from './coordinator.js';

const Status = grpc.status;

/** The status and message for what a handler threw. */
export function toStatusError(err: unknown, what: string, log: Logger): ServerError {
  if (err instanceof ServerError) return err;
  if (err instanceof SpecError) return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof LimitError) {
    const env = LIMIT_ENV_VARS[err.limit as keyof Limits];
    return new ServerError(
      Status.RESOURCE_EXHAUSTED,
      env === undefined ? err.message : `${err.message} (${env})`,
    );
  }
  if (err instanceof FormatError) return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof InvalidArgumentError)
    return new ServerError(Status.INVALID_ARGUMENT, err.message);
  if (err instanceof JobNotFoundError) return new ServerError(Status.NOT_FOUND, err.message);
  if (err instanceof JobExistsError) return new ServerError(Status.ALREADY_EXISTS, err.message);
  if (err instanceof JobStateError) return new ServerError(Status.FAILED_PRECONDITION, err.message);
  if (
    err instanceof BusConnectionError ||
    err instanceof BusClosedError ||
    err instanceof RemoteBusError
  ) {
    log.warn({ err }, `${what}: state bus unavailable`);
    return new ServerError(Status.UNAVAILABLE, `${what} failed: the state bus is unavailable`);
  }
  log.warn({ err }, `${what} failed`);
  return new ServerError(Status.INTERNAL, `${what} failed`);
}

/** Longest job id, in characters (SubmitJob refuses longer ones, so none exists). */
export const MAX_JOB_ID_CHARS = 128;

/** A job id from a request: INVALID_ARGUMENT when empty or longer than any job's. */
export function requireId(id: string): string {
  if (id === '') throw new ServerError(Status.INVALID_ARGUMENT, 'job_id must not be empty');
  if (id.length > MAX_JOB_ID_CHARS)
    throw new ServerError(
      Status.INVALID_ARGUMENT,
      `job_id must be at most ${MAX_JOB_ID_CHARS} characters (got ${id.length})`,
    );
  return id;
}

/** A unary handler from an async function of the request (and the call). */
export function unary<Req, Res>(
  log: Logger,
  what: string,
  fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    fn(call.request, call).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(toStatusError(err, what, log), what), null),
    );
  };
}

/** Writes one message and waits until the client has taken it (or the call ended). */
export function writeMessage<T>(
  call: grpc.ServerWritableStream<unknown, T>,
  msg: T,
): Promise<void> {
  return new Promise((resolve) => {
    if (call.write(msg)) {
      resolve();
      return;
    }
    const go = (): void => {
      call.off('drain', go);
      call.off('cancelled', go);
      resolve();
    };
    call.on('drain', go);
    call.on('cancelled', go);
  });
}
