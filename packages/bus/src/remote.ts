// The bus over gRPC (spinmesh.v1.BusService, proto/spinmesh/v1/bus.proto): serveBus puts any Bus
// on a grpc.Server, and RemoteBus is a Bus whose every method is one call to such a server. The
// embedded local cluster's coordinator keeps a MemoryBus in its process and serves it this way
// to its worker processes.
import * as grpc from '@grpc/grpc-js';
import { BusCall, BusReply, BusServiceService } from '@spinmesh/proto';
import type { Bus } from './bus.js';
import { BusClosedError, InvalidArgumentError } from './errors.js';
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
import { errorFromStatus, RemoteBusError } from './remote-errors.js';
import {
  BUS_MAX_MESSAGE_BYTES,
  BUS_SECRET_METADATA,
  decodeResult,
  encodeCall,
  type Args,
  type RemoteMethod,
  type Result,
} from './remote-wire.js';

const Status = grpc.status;

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
