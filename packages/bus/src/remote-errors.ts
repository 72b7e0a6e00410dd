// Bus errors over gRPC: each travels as a status and a JSON trailer from which the client
// rebuilds the same class.
import * as grpc from '@grpc/grpc-js';
import {
  BusClosedError,
  BusConnectionError,
  BusError,
  CheckpointReadError,
  IllegalTransitionError,
  InvalidArgumentError,
  JobExistsError,
  JobNotFoundError,
  ShardNotFoundError,
  StaleAssignmentError,
  StaleWriterError,
} from './errors.js';
import { BUS_ERROR_METADATA } from './remote-wire.js';

const Status = grpc.status;

/** A call failed for a reason that is not the bus's own: unreachable server, refused secret... */
export class RemoteBusError extends BusError {
  override name = 'RemoteBusError';
  constructor(
    /** The gRPC status of the call (UNAVAILABLE, UNAUTHENTICATED, DEADLINE_EXCEEDED...). */
    readonly code: grpc.status,
    /** The server's address. */
    readonly address: string,
    details: string,
  ) {
    super(`bus at ${address}: ${details} (${Status[code] ?? code})`);
  }
}

type ErrorJson = { name: string; message: string } & Record<string, unknown>;

/** The status a bus error travels with, and the JSON that rebuilds it at the client. */
export function errorToStatus(err: unknown): { code: grpc.status; json: ErrorJson | null } {
  if (!(err instanceof BusError)) return { code: Status.INTERNAL, json: null };
  const json: ErrorJson = { name: err.name, message: err.message };
  let code: grpc.status = Status.INTERNAL;
  if (err instanceof InvalidArgumentError) {
    code = Status.INVALID_ARGUMENT;
    json.field = err.field;
  } else if (err instanceof JobNotFoundError) {
    code = Status.NOT_FOUND;
    json.jobId = err.jobId;
  } else if (err instanceof ShardNotFoundError) {
    code = Status.NOT_FOUND;
    json.jobId = err.jobId;
    json.shardId = err.shardId;
  } else if (err instanceof JobExistsError) {
    code = Status.ALREADY_EXISTS;
    json.jobId = err.jobId;
  } else if (err instanceof IllegalTransitionError) {
    code = Status.FAILED_PRECONDITION;
    Object.assign(json, { jobId: err.jobId, from: err.from, to: err.to });
  } else if (err instanceof StaleAssignmentError) {
    code = Status.FAILED_PRECONDITION;
    Object.assign(json, {
      jobId: err.jobId,
      generation: err.generation,
      currentGeneration: err.currentGeneration,
    });
  } else if (err instanceof StaleWriterError) {
    code = Status.FAILED_PRECONDITION;
    Object.assign(json, {
      jobId: err.jobId,
      shardId: err.shardId,
      generation: err.generation,
      currentGeneration: err.currentGeneration,
    });
  } else if (err instanceof CheckpointReadError) {
    code = Status.ABORTED;
    json.jobId = err.jobId;
    json.shardId = err.shardId;
  } else if (err instanceof BusClosedError) {
    code = Status.UNAVAILABLE;
  } else if (err instanceof BusConnectionError) {
    code = Status.UNAVAILABLE;
    json.target = err.target;
  }
  return { code, json };
}

/** The bus error a failed call stands for, rebuilt as the class the server's bus threw. */
export function errorFromStatus(err: grpc.ServiceError, address: string): BusError {
  const raw = err.metadata?.get(BUS_ERROR_METADATA)[0];
  if (raw !== undefined) {
    try {
      const e = rebuildError(JSON.parse(Buffer.from(raw).toString('utf8')) as ErrorJson);
      if (e !== null) return e;
    } catch {
      // not ours: fall through to the status
    }
  }
  return new RemoteBusError(err.code, address, err.details);
}

function rebuildError(j: ErrorJson): BusError | null {
  const s = (k: string): string => String(j[k]);
  const n = (k: string): number => Number(j[k]);
  let e: BusError;
  switch (j.name) {
    case 'InvalidArgumentError':
      e = new InvalidArgumentError(s('field'), j.message.slice(s('field').length + 1));
      break;
    case 'JobNotFoundError':
      e = new JobNotFoundError(s('jobId'));
      break;
    case 'ShardNotFoundError':
      e = new ShardNotFoundError(s('jobId'), j.shardId === null ? null : n('shardId'));
      break;
    case 'JobExistsError':
      e = new JobExistsError(s('jobId'));
      break;
    case 'IllegalTransitionError':
      e = new IllegalTransitionError(s('jobId'), s('from'), s('to'));
      break;
    case 'StaleAssignmentError':
      e = new StaleAssignmentError(s('jobId'), n('generation'), n('currentGeneration'));
      break;
    case 'StaleWriterError':
      e = new StaleWriterError(s('jobId'), n('shardId'), n('generation'), n('currentGeneration'));
      break;
    case 'CheckpointReadError':
      e = new CheckpointReadError(s('jobId'), n('shardId'), 0);
      break;
    case 'BusClosedError':
      e = new BusClosedError();
      break;
    case 'BusConnectionError':
      e = new BusConnectionError(s('target'), '');
      break;
    default:
      return null;
  }
  // The server's wording wins where a constructor could not rebuild it exactly.
  e.message = j.message;
  return e;
}
