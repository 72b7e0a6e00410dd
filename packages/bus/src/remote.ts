// The bus over gRPC (spinmesh.v1.BusService, proto/spinmesh/v1/bus.proto): serveBus puts any Bus
// on a grpc.Server, and RemoteBus is a Bus whose every method is one call to such a server. The
// embedded local cluster's coordinator keeps a MemoryBus in its process and serves it this way
// to its worker processes.
import { createHash, timingSafeEqual } from 'node:crypto';

import * as grpc from '@grpc/grpc-js';
import { BusCall, BusReply, BusServiceService, type BusServiceServer } from '@spinmesh/proto';

import type { Bus } from './bus.js';
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
import type {
  AppendEventOptions,
  Assignment,
  Checkpoint,
  CheckpointInfo,
  JobEvent,
  JobPage,
  JobPatch,
  JobRecord,
  JobState,
  ListJobsOptions,
  NewJob,
  NewJobEvent,
  ReadEventsOptions,
  SpinSnapshot,
  TransitionResult,
  WorkerInfo,
} from './types.js';
import {
  checkAssignment,
  checkBytes,
  checkId,
  checkListJobs,
  checkMaxLen,
  checkNonNegativeInt,
  checkPositiveInt,
  checkReadEvents,
  checkReassignArgs,
  checkShardArgs,
  checkTransitionArgs,
  encodeEvent,
  encodeJson,
  encodeNewJob,
  encodePatch,
  encodeWorkerInfo,
} from './validate.js';

const Status = grpc.status;

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

/** What a blocked readEvents leaves of the call's deadline, so its empty answer arrives in time. */
const DEADLINE_MARGIN_MS = 100;

// --- the methods on the wire ------------------------------------------------------------------

/** The Bus methods that travel (close is local to each client). */
export type RemoteMethod = Exclude<keyof Bus, 'close'>;

type Args<M extends RemoteMethod> = Parameters<Bus[M]>;
type Result<M extends RemoteMethod> = Awaited<ReturnType<Bus[M]>>;

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
function encodeCall<M extends RemoteMethod>(method: M, args: Args<M>): BusCall {
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
function decodeCall(call: BusCall): { method: RemoteMethod; args: unknown[] } {
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

function encodeResult(method: RemoteMethod, result: unknown): BusReply {
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

function decodeResult<M extends RemoteMethod>(method: M, reply: BusReply): Result<M> {
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

// --- errors on the wire -----------------------------------------------------------------------

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
function errorToStatus(err: unknown): { code: grpc.status; json: ErrorJson | null } {
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
function errorFromStatus(err: grpc.ServiceError, address: string): BusError {
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

// --- server -----------------------------------------------------------------------------------

/** Options of serveBus. */
export interface ServeBusOptions {
  /**
   * The cluster secret: calls must carry it as the `spinmesh-cluster-secret` metadata entry,
   * else they fail with UNAUTHENTICATED. Unset or empty: no check.
   */
  secret?: string;
  /** Receives what a handler threw that is not a bus error (answered INTERNAL). */
  onError?: (err: unknown, method: string) => void;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * Adds spinmesh.v1.BusService to `server` (before it is bound), serving `bus`. The caller owns
 * both: it binds and shuts down the server and closes the bus. Make the server with
 * {@link BUS_SERVER_OPTIONS} so that checkpoints larger than 4 MiB pass.
 */
export function serveBus(server: grpc.Server, bus: Bus, opts: ServeBusOptions = {}): void {
  const secret = opts.secret !== undefined && opts.secret !== '' ? digest(opts.secret) : null;
  const impl: BusServiceServer = {
    call(call, callback) {
      if (secret !== null) {
        const given = call.metadata.get(BUS_SECRET_METADATA)[0];
        const ok = typeof given === 'string' && timingSafeEqual(digest(given), secret);
        if (!ok) {
          callback({
            code: Status.UNAUTHENTICATED,
            details: 'bus: missing or wrong cluster secret',
          });
          return;
        }
      }
      const method = call.request.method;
      const run = async (): Promise<BusReply> => {
        const { method, args } = decodeCall(call.request);
        if (method === 'readEvents') capBlock(args, call.getDeadline());
        const fn = bus[method] as (...a: unknown[]) => Promise<unknown>;
        return encodeResult(method, await fn.apply(bus, args));
      };
      run().then(
        (reply) => callback(null, reply),
        (err: unknown) => {
          const { code, json } = errorToStatus(err);
          const metadata = new grpc.Metadata();
          if (json !== null) {
            metadata.set(BUS_ERROR_METADATA, Buffer.from(JSON.stringify(json), 'utf8'));
          } else {
            opts.onError?.(err, method);
          }
          const details = json !== null ? json.message : `bus: ${method} failed`;
          callback({ code, details, metadata });
        },
      );
    },
  };
  server.addService(BusServiceService, impl);
}

/** Shortens a readEvents wait so that its answer beats the call's deadline. */
function capBlock(args: unknown[], deadline: grpc.Deadline): void {
  const at = deadline instanceof Date ? deadline.getTime() : deadline;
  if (!Number.isFinite(at)) return;
  const opts = args[1];
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) return;
  const o = opts as Record<string, unknown>;
  if (typeof o.blockMs !== 'number' || !(o.blockMs > 0)) return;
  const left = Math.max(0, Math.floor(at - Date.now() - DEADLINE_MARGIN_MS));
  args[1] = { ...o, blockMs: Math.min(o.blockMs, left) };
}

// --- client -----------------------------------------------------------------------------------

/** Options of RemoteBus. */
export interface RemoteBusOptions {
  /** host:port of a server where serveBus runs. */
  address: string;
  /** The cluster secret the server wants (sent with every call); unset: none. */
  secret?: string;
  /** The channel's credentials (TLS). @defaultValue plaintext */
  credentials?: grpc.ChannelCredentials;
  /**
   * Deadline of each call, in ms; a blocking readEvents gets its blockMs on top.
   * @defaultValue 10000
   */
  callTimeoutMs?: number;
  /** grpc-js channel options, over the bus's own (message size limits). */
  channelOptions?: grpc.ChannelOptions;
}

/**
 * A Bus served by another process over gRPC (serveBus). Arguments are checked here exactly as a
 * local bus checks them (same code), and again by the server's bus; the server's errors come
 * back as the same classes. Transport failures (server unreachable, wrong secret, deadline)
 * throw {@link RemoteBusError}. `close()` cancels the calls in flight (they reject with
 * BusClosedError) and closes the channel; the served bus is not affected.
 */
export class RemoteBus implements Bus {
  readonly address: string;
  private readonly client: grpc.Client;
  private readonly secret: string | undefined;
  private readonly callTimeoutMs: number;
  private readonly inFlight = new Set<grpc.ClientUnaryCall>();
  private closed = false;

  constructor(opts: RemoteBusOptions) {
    if (typeof opts.address !== 'string' || opts.address === '') {
      throw new InvalidArgumentError('address', 'must be host:port');
    }
    this.address = opts.address;
    this.secret = opts.secret !== undefined && opts.secret !== '' ? opts.secret : undefined;
    this.callTimeoutMs =
      opts.callTimeoutMs === undefined
        ? 10_000
        : checkPositiveInt('callTimeoutMs', opts.callTimeoutMs);
    this.client = new grpc.Client(
      opts.address,
      opts.credentials ?? grpc.credentials.createInsecure(),
      {
        'grpc.max_receive_message_length': BUS_MAX_MESSAGE_BYTES,
        'grpc.max_send_message_length': BUS_MAX_MESSAGE_BYTES,
        'grpc.keepalive_time_ms': 10_000,
        'grpc.keepalive_timeout_ms': 5_000,
        ...opts.channelOptions,
      },
    );
  }

  /** A RemoteBus that has answered one ping (so a wrong address or secret fails here). */
  static async connect(opts: RemoteBusOptions): Promise<RemoteBus> {
    const bus = new RemoteBus(opts);
    try {
      await bus.ping();
    } catch (err) {
      await bus.close();
      throw err;
    }
    return bus;
  }

  private call<M extends RemoteMethod>(method: M, args: Args<M>, extraMs = 0): Promise<Result<M>> {
    if (this.closed) return Promise.reject(new BusClosedError());
    const request = encodeCall(method, args);
    const metadata = new grpc.Metadata();
    if (this.secret !== undefined) metadata.set(BUS_SECRET_METADATA, this.secret);
    const deadline = Date.now() + this.callTimeoutMs + extraMs;
    return new Promise<Result<M>>((resolve, reject) => {
      const call = this.client.makeUnaryRequest<BusCall, BusReply>(
        BusServiceService.call.path,
        BusServiceService.call.requestSerialize,
        BusServiceService.call.responseDeserialize,
        request,
        metadata,
        { deadline },
        (err, reply) => {
          this.inFlight.delete(call);
          if (this.closed) reject(new BusClosedError());
          else if (err) reject(errorFromStatus(err, this.address));
          else if (reply === undefined)
            reject(new RemoteBusError(Status.INTERNAL, this.address, 'no reply'));
          else {
            try {
              resolve(decodeResult(method, reply));
            } catch {
              reject(
                new RemoteBusError(Status.INTERNAL, this.address, `unreadable ${method} reply`),
              );
            }
          }
        },
      );
      this.inFlight.add(call);
    });
  }

  /** Throws BusClosedError after close, like a local bus; the argument checks come after. */
  private open(): void {
    if (this.closed) throw new BusClosedError();
  }

  // --- membership ---------------------------------------------------------------------------

  async registerWorker(info: WorkerInfo, ttlMs: number): Promise<void> {
    this.open();
    encodeWorkerInfo(info);
    checkPositiveInt('ttlMs', ttlMs);
    return this.call('registerWorker', [info, ttlMs]);
  }

  async heartbeat(workerId: string, ttlMs: number): Promise<boolean> {
    this.open();
    checkId('workerId', workerId);
    checkPositiveInt('ttlMs', ttlMs);
    return this.call('heartbeat', [workerId, ttlMs]);
  }

  async listWorkers(): Promise<WorkerInfo[]> {
    this.open();
    return this.call('listWorkers', []);
  }

  async removeWorker(workerId: string): Promise<boolean> {
    this.open();
    checkId('workerId', workerId);
    return this.call('removeWorker', [workerId]);
  }

  // --- jobs -----------------------------------------------------------------------------------

  async createJob(job: NewJob): Promise<JobRecord> {
    this.open();
    encodeNewJob(job);
    return this.call('createJob', [job]);
  }

  async getJob(jobId: string): Promise<JobRecord | null> {
    this.open();
    checkId('jobId', jobId);
    return this.call('getJob', [jobId]);
  }

  async listJobs(options?: ListJobsOptions): Promise<JobPage> {
    this.open();
    checkListJobs(options ?? {});
    return this.call('listJobs', [options]);
  }

  async transitionJob(
    jobId: string,
    allowedFrom: readonly JobState[],
    to: JobState,
    patch?: JobPatch,
  ): Promise<TransitionResult> {
    this.open();
    checkTransitionArgs(jobId, allowedFrom, to);
    encodePatch(patch);
    return this.call('transitionJob', [jobId, allowedFrom, to, patch]);
  }

  async updateJobProgress(jobId: string, progress: unknown): Promise<boolean> {
    this.open();
    checkId('jobId', jobId);
    encodeJson('progress', progress);
    return this.call('updateJobProgress', [jobId, progress]);
  }

  async deleteJob(jobId: string): Promise<boolean> {
    this.open();
    checkId('jobId', jobId);
    return this.call('deleteJob', [jobId]);
  }

  // --- shard assignment -----------------------------------------------------------------------

  async setAssignment(jobId: string, assignment: Assignment): Promise<void> {
    this.open();
    checkId('jobId', jobId);
    checkAssignment(assignment);
    return this.call('setAssignment', [jobId, assignment]);
  }

  async getAssignment(jobId: string): Promise<Assignment | null> {
    this.open();
    checkId('jobId', jobId);
    return this.call('getAssignment', [jobId]);
  }

  async reassignShard(
    jobId: string,
    shardId: number,
    fromWorker: string,
    toWorker: string,
  ): Promise<boolean> {
    this.open();
    checkReassignArgs(jobId, shardId, fromWorker, toWorker);
    return this.call('reassignShard', [jobId, shardId, fromWorker, toWorker]);
  }

  // --- spin snapshots -------------------------------------------------------------------------

  async putSpins(
    jobId: string,
    shardId: number,
    step: number,
    packed: Uint8Array,
  ): Promise<boolean> {
    this.open();
    checkShardArgs(jobId, shardId);
    checkNonNegativeInt('step', step);
    checkBytes('packed', packed);
    return this.call('putSpins', [jobId, shardId, step, packed]);
  }

  async getSpins(jobId: string, shardId: number): Promise<SpinSnapshot | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    return this.call('getSpins', [jobId, shardId]);
  }

  // --- checkpoints ----------------------------------------------------------------------------

  async putCheckpoint(
    jobId: string,
    shardId: number,
    step: number,
    data: Uint8Array,
    generation = 0,
  ): Promise<boolean> {
    this.open();
    checkShardArgs(jobId, shardId);
    checkNonNegativeInt('step', step);
    checkBytes('data', data);
    checkNonNegativeInt('generation', generation);
    return this.call('putCheckpoint', [jobId, shardId, step, data, generation]);
  }

  async getCheckpoint(jobId: string, shardId: number): Promise<Checkpoint | null> {
    this.open();
    checkShardArgs(jobId, shardId);
    return this.call('getCheckpoint', [jobId, shardId]);
  }

  async listCheckpoints(jobId: string): Promise<CheckpointInfo[]> {
    this.open();
    checkId('jobId', jobId);
    return this.call('listCheckpoints', [jobId]);
  }

  // --- events ---------------------------------------------------------------------------------

  async appendEvent(
    jobId: string,
    event: NewJobEvent,
    options?: AppendEventOptions,
  ): Promise<string> {
    this.open();
    checkId('jobId', jobId);
    encodeEvent(event);
    checkMaxLen('maxLen', options?.maxLen);
    return this.call('appendEvent', [jobId, event, options]);
  }

  async readEvents(jobId: string, options?: ReadEventsOptions): Promise<JobEvent[]> {
    this.open();
    checkId('jobId', jobId);
    const { blockMs } = checkReadEvents(options ?? {});
    return this.call('readEvents', [jobId, options], blockMs);
  }

  // --- lifetime -------------------------------------------------------------------------------

  async ping(): Promise<void> {
    this.open();
    return this.call('ping', []);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const call of this.inFlight) call.cancel();
    this.inFlight.clear();
    this.client.close();
  }
}
