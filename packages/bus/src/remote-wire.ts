// How the bus travels over gRPC: its constants, and each Bus method's call and reply encoded as
// JSON with the binary argument or result beside it.
import * as grpc from '@grpc/grpc-js';
import { BusCall, BusReply } from '@spinmesh/proto';
import type { Bus } from './bus.js';
import { InvalidArgumentError } from './errors.js';

/** Metadata entry that carries the cluster secret on every call. */
export const BUS_SECRET_METADATA = 'spinmesh-cluster-secret';

/** Trailing metadata entry of a failed call: the bus error (name, message, fields) as JSON. */
export const BUS_ERROR_METADATA = 'spinmesh-bus-error-bin';

/**
 * Largest message either end accepts, in bytes: a checkpoint travels in one message. Give the
 * grpc.Server that serveBus joins `grpc.max_receive_message_length` at least this large
 * ({@link BUS_SERVER_OPTIONS}); grpc-js's default of 4 MiB would refuse larger checkpoints.
 */
export const BUS_MAX_MESSAGE_BYTES = 512 * 1024 * 1024;

/** Channel options for a grpc.Server that serves the bus (messages up to BUS_MAX_MESSAGE_BYTES). */
export const BUS_SERVER_OPTIONS: grpc.ServerOptions = {
  'grpc.max_receive_message_length': BUS_MAX_MESSAGE_BYTES,
  'grpc.max_send_message_length': BUS_MAX_MESSAGE_BYTES,
};

// --- the methods on the wire ------------------------------------------------------------------

/** The Bus methods that travel (close is local to each client). */
export type RemoteMethod = Exclude<keyof Bus, 'close'>;

export type Args<M extends RemoteMethod> = Parameters<Bus[M]>;
export type Result<M extends RemoteMethod> = Awaited<ReturnType<Bus[M]>>;

/**
 * How a method travels: at most `arity` JSON arguments; `payloadArg`, the binary argument, goes
 * in BusCall.payload; `bytesResult`, the binary field of the result, goes in BusReply.payload.
 * The mapped type makes the compiler check that the table covers exactly the Bus methods.
 */
type MethodSpec = { arity: number; payloadArg?: number; bytesResult?: 'packed' | 'data' };
const METHODS: { readonly [M in RemoteMethod]: MethodSpec } = {
  registerWorker: { arity: 2 },
  heartbeat: { arity: 2 },
  listWorkers: { arity: 0 },
  removeWorker: { arity: 1 },
  createJob: { arity: 1 },
  getJob: { arity: 1 },
  listJobs: { arity: 1 },
  transitionJob: { arity: 4 },
  updateJobProgress: { arity: 2 },
  deleteJob: { arity: 1 },
  setAssignment: { arity: 2 },
  getAssignment: { arity: 1 },
  reassignShard: { arity: 4 },
  putSpins: { arity: 4, payloadArg: 3 },
  getSpins: { arity: 2, bytesResult: 'packed' },
  putCheckpoint: { arity: 5, payloadArg: 3 },
  getCheckpoint: { arity: 2, bytesResult: 'data' },
  listCheckpoints: { arity: 1 },
  appendEvent: { arity: 3 },
  readEvents: { arity: 2 },
  ping: { arity: 0 },
};

function isRemoteMethod(name: string): name is RemoteMethod {
  return Object.prototype.hasOwnProperty.call(METHODS, name);
}

/** BusCall of a method call: JSON arguments (trailing undefined dropped), bytes aside. */
export function encodeCall<M extends RemoteMethod>(method: M, args: Args<M>): BusCall {
  const spec: MethodSpec = METHODS[method];
  const list: unknown[] = [...args];
  while (list.length > 0 && list[list.length - 1] === undefined) list.pop();
  let payload: Buffer = Buffer.alloc(0);
  if (spec.payloadArg !== undefined) {
    const bytes = list[spec.payloadArg] as Uint8Array;
    payload = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    list[spec.payloadArg] = null;
  }
  return { method, args: JSON.stringify(list), payload };
}

/** The arguments of a BusCall, bytes back in place. @throws InvalidArgumentError */
export function decodeCall(call: BusCall): { method: RemoteMethod; args: unknown[] } {
  const { method } = call;
  if (!isRemoteMethod(method)) {
    throw new InvalidArgumentError('bus call: method', `'${method}' is not a Bus method`);
  }
  let args: unknown;
  try {
    args = call.args === '' ? [] : JSON.parse(call.args);
  } catch {
    throw new InvalidArgumentError('bus call: args', 'must be a JSON array');
  }
  const spec: MethodSpec = METHODS[method];
  if (!Array.isArray(args) || args.length > spec.arity) {
    throw new InvalidArgumentError(
      'bus call: args',
      `must be a JSON array of at most ${spec.arity} arguments for ${method}`,
    );
  }
  if (spec.payloadArg !== undefined) {
    while (args.length <= spec.payloadArg) args.push(undefined);
    // A plain Uint8Array of its own: a Buffer's slice() is a view, which a bus would keep.
    args[spec.payloadArg] = new Uint8Array(call.payload);
  }
  return { method, args };
}

export function encodeResult(method: RemoteMethod, result: unknown): BusReply {
  const spec: MethodSpec = METHODS[method];
  if (result === undefined) return { result: '', payload: Buffer.alloc(0) };
  if (spec.bytesResult !== undefined && result !== null) {
    const { [spec.bytesResult]: bytes, ...rest } = result as Record<string, Uint8Array>;
    return {
      result: JSON.stringify(rest),
      payload: Buffer.from(bytes!.buffer, bytes!.byteOffset, bytes!.byteLength),
    };
  }
  return { result: JSON.stringify(result), payload: Buffer.alloc(0) };
}

export function decodeResult<M extends RemoteMethod>(method: M, reply: BusReply): Result<M> {
  const spec: MethodSpec = METHODS[method];
  if (reply.result === '') return undefined as Result<M>;
  const value = JSON.parse(reply.result) as unknown;
  if (spec.bytesResult !== undefined && value !== null) {
    // A copy of its own, as a local bus returns (the Buffer may share a pool).
    const bytes = new Uint8Array(reply.payload);
    return { ...(value as object), [spec.bytesResult]: bytes } as Result<M>;
  }
  return value as Result<M>;
}
