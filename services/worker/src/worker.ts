// The worker process's service: one gRPC server (PeerService, WorkerControl, grpc.health.v1) on
// one port, membership on the bus with TTL heartbeats, and the shard it was assigned (ShardRun).
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

import * as grpc from '@grpc/grpc-js';
import type { Bus, JsonObject } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import { confinedAccess, type DataAccess } from '@spinmesh/model';
import {
  ServerError,
  ServiceNames,
  ServingStatus,
  WorkerControlService,
  WorkerState,
  PLAINTEXT,
  addHealthService,
  channelCredentials,
  serverCredentials,
  toServiceError,
  type AssignResponse,
  type HealthReporter,
  type ShardAssignment,
  type SpinFrame,
  type StopResponse,
  type TlsConfig,
  type WorkerControlServer,
  type CheckpointAtRequest,
  type CheckpointAtResponse,
  type WorkerStatus,
} from '@spinmesh/proto';
import { withRpcMetrics, type WorkerMetrics } from '@spinmesh/telemetry';
import { isLoopbackListen } from '@spinmesh/cluster';

import type { Logger } from './log.js';
import { PeerServer, SECRET_METADATA } from './peers.js';
import { JobDataCache } from './job.js';
import { ShardRun, type RunState } from './run.js';

const Status = grpc.status;

/** Largest spin frame or control message accepted, in bytes. */
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** What a Stop call leaves of its deadline for its answer to arrive. */
const STOP_DEADLINE_MARGIN_MS = 250;
/** The longest a CheckpointAt may hold a shard at its step (a move takes a second or so). */
const MAX_MOVE_HOLD_MS = 60_000;

export interface WorkerOptions {
  /** The worker's id in the bus's membership. */
  id: string;
  /** host:port to bind (port 0: a free one). */
  listen: string;
  /** host:port peers and the coordinator use; null: derived from the bound address. */
  advertise?: string | null;
  bus: Bus;
  kernels: Kernels;
  log: Logger;
  /**
   * Required from callers of WorkerControl and PeerService, and sent to peers. Without it the
   * worker must listen on loopback (start refuses otherwise).
   */
  clusterSecret?: string | null;
  /** @defaultValue 1000 */
  heartbeatMs?: number;
  /** @defaultValue 1 */
  debugSlowdown?: number;
  /** @defaultValue 8000 */
  drainMs?: number;
  /** @defaultValue 1000 */
  progressMs?: number;
  /** The files job data may be read from. @defaultValue none: only data kinds that need no file */
  dataAccess?: DataAccess;
  /** Cores announced on the bus. @defaultValue kernels.threads, at least 1 */
  cores?: number;
  /** Extra facts for the bus registration. */
  meta?: JsonObject;
  /** TLS of the server and of the links to peers. @defaultValue plaintext */
  tls?: TlsConfig;
  /**
   * Port of the framed peer stream on the listen host (0: a free one); null: gRPC only, both
   * ways (no stream listener, links use Exchange over gRPC). @defaultValue 0
   */
  peerStreamPort?: number | null;
  /** Metrics to feed: RPCs (a server interceptor), the shard's figures, the worker's state. */
  metrics?: WorkerMetrics;
}

const STATES: Record<RunState, WorkerState> = {
  loading: WorkerState.WORKER_STATE_LOADING,
  running: WorkerState.WORKER_STATE_RUNNING,
  stopping: WorkerState.WORKER_STATE_STOPPING,
  done: WorkerState.WORKER_STATE_DONE,
  failed: WorkerState.WORKER_STATE_FAILED,
  stopped: WorkerState.WORKER_STATE_IDLE,
};

const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[^\s:[\]]+):\d{1,5}$/;

/** A worker: serves its gRPC services, stays registered on the bus, trains what it is given. */
export class Worker {
  readonly id: string;
  private readonly opts: WorkerOptions;
  private readonly log: Logger;
  private readonly server: grpc.Server;
  private readonly health: HealthReporter;
  private readonly peers: PeerServer;
  private readonly secret: Buffer | null;
  private readonly peerCredentials: grpc.ChannelCredentials;
  /** How links reach peers' framed streams; null: over gRPC only. */
  private readonly peerStream: { tls: { ca?: Buffer } | null } | null;
  private readonly heartbeatMs: number;
  private readonly startedAt = Date.now();
  private advertised = '';
  private bound = '';
  private run: ShardRun | null = null;
  /** The held job's data, kept across its generations (released with the job). */
  private readonly dataCache = new JobDataCache();
  /** Assign and Stop run one at a time, in arrival order. */
  private control: Promise<unknown> = Promise.resolve();
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private closing: Promise<void> | null = null;

  private constructor(opts: WorkerOptions) {
    this.opts = opts;
    this.peerCredentials = channelCredentials(opts.tls ?? PLAINTEXT);
    const client = opts.tls?.client;
    this.peerStream =
      opts.peerStreamPort === null
        ? null
        : {
            tls: client
              ? client.caFile !== null
                ? { ca: readFileSync(client.caFile) }
                : {}
              : null,
          };
    this.id = opts.id;
    this.log = opts.log;
    this.heartbeatMs = opts.heartbeatMs ?? 1000;
    this.secret = opts.clusterSecret ? digest(opts.clusterSecret) : null;
    this.server = new grpc.Server(
      withRpcMetrics(opts.metrics?.rpc, {
        'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
        'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
      }),
    );
    this.health = addHealthService(this.server, {
      [ServiceNames.peer]: ServingStatus.SERVING,
      [ServiceNames.workerControl]: ServingStatus.SERVING,
    });
    this.peers = PeerServer.attach(this.server, {
      onFrame: (f) => this.route(f),
      ...(opts.clusterSecret ? { secret: opts.clusterSecret } : {}),
    });
    // UNAVAILABLE refusals are the normal race of a peer assigned before this worker: it retries.
    this.peers.on('reject', (r) =>
      r.code === Status.UNAVAILABLE
        ? this.log.debug(r, 'peer stream refused for now')
        : this.log.warn(r, 'peer stream refused'),
    );
    this.peers.on('handlerError', (err) =>
      this.log.error({ err: String(err) }, 'spin frame handler failed'),
    );
    const impl: WorkerControlServer = {
      assign: (call, cb) => this.handle(call, cb, 'Assign', () => this.assign(call.request)),
      stop: (call, cb) =>
        this.handle(call, cb, 'Stop', () =>
          this.stop(call.request.jobId, call.request.checkpoint, call.getDeadline()),
        ),
      status: (call, cb) => this.handle(call, cb, 'Status', async () => this.status()),
      checkpointAt: (call, cb) =>
        this.handle(call, cb, 'CheckpointAt', async () => this.checkpointAt(call.request)),
    };
    this.server.addService(WorkerControlService, impl);
  }

  /**
   * Binds the server, registers on the bus and starts heartbeating. @throws Error when `listen`
   * reaches beyond loopback and there is no cluster secret: WorkerControl and PeerService would
   * answer anyone who can reach the port.
   */
  static async start(opts: WorkerOptions): Promise<Worker> {
    if (!opts.clusterSecret && !isLoopbackListen(opts.listen))
      throw new Error(
        `a worker that listens beyond loopback (${opts.listen}) needs a cluster secret`,
      );
    const w = new Worker(opts);
    const port = await new Promise<number>((resolve, reject) =>
      w.server.bindAsync(opts.listen, serverCredentials(opts.tls ?? PLAINTEXT), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    w.bound = opts.listen.replace(/:\d+$/, `:${port}`);
    w.advertised = opts.advertise ?? advertiseOf(w.bound);
    let streamPort = 0;
    try {
      if (opts.peerStreamPort !== null) {
        const server = opts.tls?.server;
        streamPort = await w.peers.listenStream({
          host: opts.listen.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1'),
          port: opts.peerStreamPort ?? 0,
          maxFrameBytes: MAX_MESSAGE_BYTES,
          ...(server
            ? { tls: { cert: readFileSync(server.certFile), key: readFileSync(server.keyFile) } }
            : {}),
        });
      }
      await w.register();
    } catch (err) {
      w.peers.forceClose();
      w.server.forceShutdown();
      throw err;
    }
    w.scheduleHeartbeat();
    w.log.info({ address: w.advertised, listen: w.bound, peerStreamPort: streamPort }, 'listening');
    return w;
  }

  /** host:port registered on the bus (what peers and the coordinator dial). */
  get address(): string {
    return this.advertised;
  }

  /** host:port the server is bound to. */
  get listenAddress(): string {
    return this.bound;
  }

  // --- membership -------------------------------------------------------------------------------

  private ttlMs(): number {
    return this.heartbeatMs * 3;
  }

  private async register(): Promise<void> {
    const k = this.opts.kernels;
    await this.opts.bus.registerWorker(
      {
        id: this.id,
        address: this.advertised,
        cores: this.opts.cores ?? Math.max(1, k.threads),
        startedAt: this.startedAt,
        meta: {
          service: 'worker',
          version: '0.1.0',
          host: hostname(),
          pid: process.pid,
          kernels: k.describe(),
          ...this.opts.meta,
        },
      },
      this.ttlMs(),
    );
  }

  private scheduleHeartbeat(): void {
    this.heartbeatTimer = setTimeout(() => {
      void this.beat().finally(() => {
        if (this.closing === null) this.scheduleHeartbeat();
      });
    }, this.heartbeatMs);
  }

  private async beat(): Promise<void> {
    try {
      if (!(await this.opts.bus.heartbeat(this.id, this.ttlMs()))) {
        this.log.warn('membership expired: registering again');
        await this.register();
      }
    } catch (err) {
      this.log.warn({ err: String(err) }, 'heartbeat failed');
    }
  }

  // --- WorkerControl ----------------------------------------------------------------------------

  private handle<Res>(
    call: grpc.ServerUnaryCall<unknown, Res>,
    cb: grpc.sendUnaryData<Res>,
    what: string,
    fn: () => Promise<Res>,
  ): void {
    if (this.secret !== null) {
      const given = call.metadata.get(SECRET_METADATA)[0];
      if (typeof given !== 'string' || !timingSafeEqual(digest(given), this.secret)) {
        cb({ code: Status.UNAUTHENTICATED, details: `${what}: missing or wrong cluster secret` });
        return;
      }
    }
    Promise.resolve()
      .then(fn)
      .then(
        (res) => cb(null, res),
        (err: unknown) => {
          if (!(err instanceof ServerError)) this.log.error({ err: String(err) }, `${what} failed`);
          cb(toServiceError(err, what));
        },
      );
  }

  /** Runs Assign and Stop one after another. */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.control.then(fn, fn);
    this.control = next.catch(() => {});
    return next;
  }

  private assign(a: ShardAssignment): Promise<AssignResponse> {
    checkAssignment(a);
    return this.serial(async () => {
      if (this.closing !== null)
        throw new ServerError(Status.UNAVAILABLE, `worker ${this.id} is shutting down`);
      let cur = this.run;
      // A run that ended by itself (the bus refused its writes: a newer generation replaced it)
      // holds nothing: another job may have the worker without a Stop.
      if (cur !== null && cur.state === 'stopped' && cur.jobId !== a.jobId) {
        this.release(cur);
        cur = null;
      }
      if (cur !== null) {
        if (cur.jobId !== a.jobId)
          throw new ServerError(
            Status.FAILED_PRECONDITION,
            `worker ${this.id} holds job '${cur.jobId}' (${cur.state}): stop it first`,
          );
        if (a.generation < cur.generation)
          throw new ServerError(
            Status.FAILED_PRECONDITION,
            `assignment.generation ${a.generation} is older than the generation ${cur.generation} ` +
              `this worker holds for job '${a.jobId}'`,
          );
        if (a.generation === cur.generation) {
          if (JSON.stringify(a) === JSON.stringify(cur.assignment)) return this.accepted(a);
          throw new ServerError(
            Status.FAILED_PRECONDITION,
            `generation ${a.generation} of job '${a.jobId}' is already in force on this worker ` +
              `with another assignment (shard ${cur.shardId}); a change needs a newer generation`,
          );
        }
        this.log.info(
          { job: a.jobId, from: cur.generation, to: a.generation, restore: a.restoreFromStep },
          'new assignment generation: rolling back',
        );
        await cur.abort();
        this.observe(cur);
      }
      this.peers.setAssignment(a.jobId, a.generation);
      const run = new ShardRun(a, {
        workerId: this.id,
        bus: this.opts.bus,
        kernels: this.opts.kernels,
        log: this.log,
        peerServer: this.peers,
        secret: this.opts.clusterSecret ?? null,
        peerCredentials: this.peerCredentials,
        peerStream: this.peerStream,
        slowdown: this.opts.debugSlowdown ?? 1,
        drainMs: this.opts.drainMs ?? 8000,
        progressMs: this.opts.progressMs ?? 1000,
        dataAccess: this.opts.dataAccess ?? confinedAccess([], 0),
        dataCache: this.dataCache,
        metrics: this.opts.metrics,
      });
      this.run = run;
      run.start();
      this.log.info(
        {
          job: a.jobId,
          shard: a.shardId,
          generation: a.generation,
          restoreFromStep: a.restoreFromStep,
          peers: a.peers.map((p) => `${p.shardId}@${p.address}`),
        },
        'assigned',
      );
      return this.accepted(a);
    });
  }

  private accepted(a: ShardAssignment): AssignResponse {
    return { workerId: this.id, jobId: a.jobId, generation: a.generation };
  }

  private stop(jobId: string, checkpoint: boolean, deadline: grpc.Deadline): Promise<StopResponse> {
    return this.serial(async () => {
      const cur = this.run;
      if (cur === null || cur.jobId !== jobId) return { step: cur?.step ?? 0, checkpointStep: 0 };
      const at = deadline instanceof Date ? deadline.getTime() : deadline;
      const left = Number.isFinite(at) ? at - Date.now() - STOP_DEADLINE_MARGIN_MS : Infinity;
      const drain = Math.max(0, Math.min(this.opts.drainMs ?? 8000, left));
      const res = await cur.stop(checkpoint, drain);
      this.release(cur);
      return res;
    });
  }

  /** WorkerControl.CheckpointAt: a checkpoint for a move, on the run of that very generation. */
  private checkpointAt(r: CheckpointAtRequest): CheckpointAtResponse {
    const cur = this.run;
    if (cur === null || cur.jobId !== r.jobId || cur.generation !== r.generation)
      throw new ServerError(
        Status.FAILED_PRECONDITION,
        cur === null
          ? 'CheckpointAt: this worker runs no shard'
          : 'CheckpointAt: this worker runs another job or generation',
      );
    return {
      accepted: cur.checkpointAt(r.step, Math.min(r.holdMs, MAX_MOVE_HOLD_MS)),
      step: cur.step,
    };
  }

  private release(run: ShardRun): void {
    if (this.run !== run) return;
    this.observe(run);
    this.run = null;
    this.peers.clearAssignment();
    this.dataCache.clear();
  }

  /** What the worker is doing now (WorkerControl.Status). */
  status(): WorkerStatus {
    const r = this.run;
    const base: WorkerStatus = {
      workerId: this.id,
      state: WorkerState.WORKER_STATE_IDLE,
      jobId: '',
      generation: 0,
      shardId: 0,
      step: 0,
      checkpointStep: 0,
      bytesSent: 0,
      bytesReceived: 0,
      framesSent: 0,
      framesReceived: 0,
      error: '',
      totalSteps: 0,
      peers: [],
      computeSeconds: 0,
      waitSeconds: 0,
      runSeconds: 0,
    };
    if (r === null) return base;
    const c = r.counters();
    return {
      ...base,
      state: STATES[r.state],
      jobId: r.jobId,
      generation: r.generation,
      shardId: r.shardId,
      step: r.step,
      checkpointStep: r.checkpointStep,
      staleness: c.staleness,
      bytesSent: c.bytesSent,
      bytesReceived: c.bytesReceived,
      framesSent: c.framesSent,
      framesReceived: c.framesReceived,
      error: r.error,
      totalSteps: r.totalSteps,
      peers: c.peers,
      ...r.timing(),
    };
  }

  /** Brings the metrics up to date (before a scrape): the shard's figures, the worker's state. */
  refreshMetrics(): void {
    const m = this.opts.metrics;
    if (!m) return;
    const r = this.run;
    if (r !== null) this.observe(r);
    m.setState(r === null || r.state === 'stopped' ? 'idle' : r.state);
  }

  private observe(run: ShardRun): void {
    this.opts.metrics?.observeShard(run, run.metricsSample());
  }

  /** Routes a peer's frame to the run of its job and generation. */
  private route(frame: SpinFrame): void {
    const r = this.run;
    if (r === null || r.jobId !== frame.jobId || r.generation !== frame.generation)
      throw new ServerError(Status.UNAVAILABLE, 'spin frame: no shard of that generation here yet');
    r.onFrame(frame);
  }

  // --- shutdown ---------------------------------------------------------------------------------

  /**
   * The SIGTERM path: stops the shard with a checkpoint (finishing its checkpoint interval within
   * drainMs), closes its links and the server, and leaves the membership. Idempotent.
   */
  shutdown(): Promise<void> {
    this.closing ??= this.doShutdown();
    return this.closing;
  }

  private async doShutdown(): Promise<void> {
    if (this.heartbeatTimer !== null) clearTimeout(this.heartbeatTimer);
    this.log.info('shutting down');
    await this.serial(async () => {
      const cur = this.run;
      if (cur !== null) {
        await cur.stop(true);
        this.release(cur);
      }
    });
    this.health.shutdown();
    await this.peers.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, 2000);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    try {
      await this.opts.bus.removeWorker(this.id);
    } catch (err) {
      this.log.warn({ err: String(err) }, 'could not leave the membership');
    }
    this.log.info('stopped');
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The bound address with the machine's host name in place of a wildcard host. */
function advertiseOf(bound: string): string {
  const m = /^(.*):(\d+)$/.exec(bound)!;
  const host = m[1]!;
  const wild = host === '0.0.0.0' || host === '::' || host === '[::]' || host === '';
  return `${wild ? hostname() : host}:${m[2]}`;
}

/** Checks an Assign request. @throws ServerError(INVALID_ARGUMENT) naming the field */
export function checkAssignment(a: ShardAssignment): void {
  const bad = (field: string, msg: string): never => {
    throw new ServerError(Status.INVALID_ARGUMENT, `assignment.${field} ${msg}`);
  };
  if (!JOB_ID.test(a.jobId))
    bad('job_id', `must be 1-128 characters of [A-Za-z0-9._-] (got '${a.jobId}')`);
  if (!(a.generation >= 1)) bad('generation', 'must be >= 1');
  if (!(a.shardCount >= 1)) bad('shard_count', 'must be >= 1');
  if (!(a.shardId < a.shardCount))
    bad('shard_id', `must be < shard_count ${a.shardCount} (got ${a.shardId})`);
  const layers = a.network?.layers.length ?? Infinity;
  const checkUnits = (field: string, units: ShardAssignment['units']): void => {
    units.forEach((u, i) => {
      if (!(u.layer < layers)) bad(`${field}[${i}].layer`, `must be a layer index (< ${layers})`);
      if (!(u.start < u.end)) bad(`${field}[${i}].end`, `must be > start (${u.start})`);
      if (units.some((v, j) => j < i && v.layer === u.layer))
        bad(`${field}[${i}].layer`, `repeats layer ${u.layer} (one range per layer)`);
    });
  };
  if (a.units.length === 0) bad('units', 'must list the units of the shard');
  checkUnits('units', a.units);
  const seen = new Set<number>();
  a.peers.forEach((p, i) => {
    const f = `peers[${i}]`;
    if (!(p.shardId < a.shardCount)) bad(`${f}.shard_id`, `must be < shard_count ${a.shardCount}`);
    if (p.shardId === a.shardId) bad(`${f}.shard_id`, 'is this shard itself');
    if (seen.has(p.shardId)) bad(`${f}.shard_id`, `repeats shard ${p.shardId}`);
    seen.add(p.shardId);
    if (!HOST_PORT.test(p.address)) bad(`${f}.address`, `must be host:port (got '${p.address}')`);
    checkUnits(`${f}.units`, p.units);
  });
}
