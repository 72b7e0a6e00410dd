// One generation of one shard on this worker: loads the job's shard as its kind does (kinds/),
// connects to the peers and runs the kind's loop, and does what every kind's shard does: its
// state for Status, frames from peers, progress reports and metrics, failing, and stopping
// (at once, or after a last checkpoint).
import * as grpc from '@grpc/grpc-js';
import { BusError, JobNotFoundError, StaleWriterError, type Bus } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import { FormatError, SpecError, type DataAccess } from '@spinmesh/model';
import type { PeerCounters, ShardAssignment, SpinFrame, StalenessSummary } from '@spinmesh/proto';
import type { ShardSample, WorkerMetrics } from '@spinmesh/telemetry';
import { ShardEvents, kindOfRecord, type StoredJob } from '@spinmesh/cluster';

import { JobLoadError, type JobDataCache } from './job.js';
import { kinds, type ShardHost, type ShardRunner } from './kinds/index.js';
import type { Logger } from './log.js';
import type { PeerServer } from './peers.js';
import { ShardControl } from './shard-control.js';

export type RunState = 'loading' | 'running' | 'stopping' | 'done' | 'failed' | 'stopped';

/** What a run needs from its worker. */
export interface RunDeps {
  workerId: string;
  bus: Bus;
  kernels: Kernels;
  log: Logger;
  peerServer: PeerServer;
  secret: string | null;
  /** Credentials of the links to the peers (TLS). */
  peerCredentials: grpc.ChannelCredentials;
  /** How links reach peers' framed streams (TLS trusting ca, or not); null: gRPC only. */
  peerStream: { tls: { ca?: Buffer } | null } | null;
  /** SPINMESH_DEBUG_SLOWDOWN. */
  slowdown: number;
  /** Longest graceful stop, in ms. */
  drainMs: number;
  /** Least time between two progress reports, in ms. */
  progressMs: number;
  /** The files job data may be read from. */
  dataAccess: DataAccess;
  /** The worker's job data, kept across a job's generations. */
  dataCache: JobDataCache;
  /** Takes the shard's figures with every progress report. */
  metrics?: WorkerMetrics;
}

/** What Stop answers. */
export interface StopResult {
  step: number;
  checkpointStep: number;
}

/** One shard of one job under one assignment generation. */
export class ShardRun {
  readonly jobId: string;
  readonly generation: number;
  readonly shardId: number;
  readonly assignment: ShardAssignment;
  private runState: RunState = 'loading';
  private failure = '';
  /** The kind's shard, once loaded. */
  private runner: ShardRunner | null = null;
  private readonly deps: RunDeps;
  private readonly log: Logger;
  private readonly control = new ShardControl();
  /** Frames that arrived before the shard was loaded. */
  private early: SpinFrame[] = [];
  private drainTimer: NodeJS.Timeout | null = null;
  private lastReport = 0;
  private reporting = false;
  private main: Promise<void> = Promise.resolve();
  private stopResult: Promise<StopResult> | null = null;

  constructor(assignment: ShardAssignment, deps: RunDeps) {
    this.assignment = assignment;
    this.jobId = assignment.jobId;
    this.generation = assignment.generation;
    this.shardId = assignment.shardId;
    this.deps = deps;
    this.log = deps.log.child({
      job: assignment.jobId,
      shard: assignment.shardId,
      generation: assignment.generation,
    });
  }

  get state(): RunState {
    return this.runState;
  }

  get error(): string {
    return this.failure;
  }

  /** Updates applied so far (the last step completed). */
  get step(): number {
    return this.runner?.step ?? 0;
  }

  get totalSteps(): number {
    return this.runner?.totalSteps ?? 0;
  }

  get checkpointStep(): number {
    return this.runner?.checkpointStep ?? 0;
  }

  /**
   * Asks the shard to checkpoint step boundary `step` to its move slot besides its periodic
   * checkpoints, and to hold there up to `holdMs` (WorkerControl.CheckpointAt). False when it is not running, its kind writes no
   * checkpoints, or it is at or past that step.
   */
  checkpointAt(step: number, holdMs: number): boolean {
    if (this.runState !== 'running' || !this.runner?.checkpointAt) return false;
    const ok = this.runner.checkpointAt(step, holdMs);
    this.log.info({ step, accepted: ok, at: this.runner.step }, 'checkpoint for a move requested');
    if (ok) this.control.wake(); // a shard holding at an earlier move step draws on to this one
    return ok;
  }

  /** Starts loading and then the loop, in the background. */
  start(): void {
    this.main = this.execute();
  }

  /** A frame of this run's job and generation (PeerServer checked both). */
  onFrame(frame: SpinFrame): void {
    if (this.runner === null) {
      if (this.runState === 'loading') this.early.push(frame);
      return;
    }
    this.runner.take(frame);
    this.control.frameDelivered();
  }

  // --- life cycle -------------------------------------------------------------------------------

  private async execute(): Promise<void> {
    const time = this.control.time;
    try {
      await this.load();
      if (this.control.aborted || this.runner === null) return;
      this.runState = 'running';
      this.log.info(
        { step: this.step, totalSteps: this.totalSteps, peers: this.control.links.size },
        'shard running',
      );
      time.startedAt = performance.now();
      await this.runner.run();
    } catch (err) {
      if (this.control.aborted) return;
      if (err instanceof StaleWriterError) await this.replaced(err);
      else await this.fail(err);
    } finally {
      if (!Number.isNaN(time.startedAt)) time.endedAt = performance.now();
    }
  }

  /**
   * Loads the shard as the job's kind does. The job record on the bus is the one channel of the
   * spec: written once by SubmitJob, validated there, the same for every shard and every
   * generation, and still there after a restart. The assignment says only how this generation
   * runs (which shard, its peers and their units, staleness, checkpoints, the step to restore);
   * the network it repeats is checked against the record's, never used in its place.
   */
  private async load(): Promise<void> {
    const record: StoredJob | null = await this.deps.bus.getJob(this.jobId);
    if (record === null) throw new JobLoadError(`job '${this.jobId}' is not on the bus`);
    const kind = kinds[kindOfRecord(record) ?? 'boltzmann'];
    const runner = await kind.load(record, this.host());
    if (runner === null || this.control.aborted) return;
    this.runner = runner;
    this.lastReport = Date.now();
    // Frames that came while loading (a peer may start first): acknowledged, so keep them.
    const early = this.early;
    this.early = [];
    for (const f of early) {
      try {
        runner.take(f);
        this.control.frameDelivered();
      } catch (err) {
        // Acknowledged already, so the sender cannot be told: drop it, say so.
        this.log.warn({ peer: f.fromShard, err: String(err) }, 'dropped a malformed early frame');
      }
    }
  }

  /** What the kind's shard may use of this run. */
  private host(): ShardHost {
    return {
      assignment: this.assignment,
      deps: this.deps,
      log: this.log,
      control: this.control,
      event: (type, fields) => this.event(type, fields),
      report: (force) => this.report(force),
      markDone: () => {
        this.runState = 'done';
      },
      staleness: () => this.staleness(),
    };
  }

  private async fail(err: unknown): Promise<void> {
    const known =
      err instanceof JobLoadError ||
      err instanceof SpecError ||
      err instanceof FormatError ||
      err instanceof BusError;
    this.failure = known ? (err as Error).message : `internal error: ${String(err)}`;
    this.runState = 'failed';
    this.log.error({ err: known ? this.failure : err }, 'shard failed');
    this.control.wake();
    await this.control.closeLinks(0);
    await this.event(ShardEvents.failed, { error: this.failure }).catch(() => {});
  }

  /**
   * The bus refused a checkpoint or export of this run: the job's assignment has a newer
   * generation, so the coordinator has replaced this run (it took this worker for dead, or a
   * rollback is on its way here). Not a failure of the job, which goes on under the new
   * generation: the run ends, writing nothing more.
   */
  private async replaced(err: StaleWriterError): Promise<void> {
    this.log.warn(
      { step: this.step, current: err.currentGeneration },
      'a newer generation replaced this run (the bus refused its checkpoint): stopping',
    );
    this.control.aborted = true;
    this.runState = 'stopped';
    this.control.wake();
    await this.control.closeLinks(0);
  }

  /** Appends one of this shard's events to the job's stream. */
  private async event(type: string, fields: Record<string, unknown>): Promise<void> {
    await this.deps.bus.appendEvent(this.jobId, {
      type,
      at: Date.now(),
      worker: this.deps.workerId,
      shard: this.shardId,
      generation: this.generation,
      ...fields,
    });
  }

  /** Progress event and spin snapshot, at most every progressMs (or now, when forced). */
  private report(force: boolean): void {
    const now = Date.now();
    if (this.reporting || (!force && now - this.lastReport < this.deps.progressMs)) return;
    const runner = this.runner;
    if (runner === null || !runner.reports) return;
    this.lastReport = now;
    this.deps.metrics?.observeShard(this, this.metricsSample());
    this.reporting = true;
    const step = runner.step;
    const s = this.counters();
    const spins = runner.spins();
    const work = async (): Promise<void> => {
      await this.event(ShardEvents.progress, {
        step,
        totalSteps: this.totalSteps,
        checkpointStep: this.checkpointStep,
        staleness: {
          count: s.staleness.count,
          sumSteps: s.staleness.sumSteps,
          maxSteps: s.staleness.maxSteps,
        },
        bytesSent: s.bytesSent,
        bytesReceived: s.bytesReceived,
        framesSent: s.framesSent,
        framesReceived: s.framesReceived,
      });
      if (spins !== null)
        await this.deps.bus.putSpins(this.jobId, this.shardId, spins.step, spins.bytes);
    };
    void work()
      .catch((err: unknown) => {
        if (err instanceof JobNotFoundError && !this.control.aborted) {
          this.log.warn('job deleted from the bus: stopping the shard');
          this.control.aborted = true;
          this.failure = 'the job was deleted';
          this.runState = 'failed';
          this.control.wake();
          void this.control.closeLinks(0);
        } else if (!this.control.aborted) {
          this.log.warn({ err: String(err) }, 'progress report failed');
        }
      })
      .finally(() => {
        this.reporting = false;
      });
  }

  // --- stopping ---------------------------------------------------------------------------------

  /**
   * Ends the run at once (a newer generation replaces it, or the worker stops it without a
   * checkpoint): no checkpoint, links closed, frames in flight dropped.
   */
  async abort(): Promise<void> {
    if (this.control.aborted) {
      await this.main;
      return;
    }
    this.control.aborted = true;
    this.clearDrain();
    this.control.wake();
    await this.control.closeLinks(0);
    await this.main;
    if (this.runState !== 'failed') this.runState = 'stopped';
  }

  /**
   * Stops the run. With `checkpoint`, it goes on to the next checkpoint step (the next multiple
   * of checkpoint_every_steps, so that every shard has that step; the next step boundary when
   * there are no periodic checkpoints), writes it and delivers its last spins to its peers,
   * within `drainMs` (past it, it stops where it is, keeping its last checkpoint). Right after a
   * checkpoint it stops at once. Without, it stops at once.
   */
  stop(checkpoint: boolean, drainMs = this.deps.drainMs): Promise<StopResult> {
    this.stopResult ??= this.doStop(checkpoint, drainMs);
    return this.stopResult;
  }

  private async doStop(checkpoint: boolean, drainMs: number): Promise<StopResult> {
    const wasDone = this.runState === 'done';
    const live = this.runState === 'running' || wasDone;
    if (!checkpoint || !live) {
      await this.abort();
      return this.stopped(checkpoint);
    }
    const until = Date.now() + drainMs;
    this.runState = 'stopping';
    this.control.stopping = { checkpoint: true };
    this.drainTimer = setTimeout(() => {
      this.log.warn({ drainMs }, 'stop: drain time is up, stopping where the shard is');
      this.control.aborted = true;
      this.control.wake();
      void this.control.closeLinks(0);
    }, drainMs);
    this.control.wake();
    await this.main;
    // Deliver what the peers still need of our spins, in the time left.
    await this.control.closeLinks(Math.max(0, until - Date.now()));
    this.clearDrain();
    this.control.aborted = true;
    // (The loop may have failed meanwhile.)
    if ((this.runState as RunState) !== 'failed') this.runState = 'stopped';
    return this.stopped(checkpoint);
  }

  private async stopped(checkpoint: boolean): Promise<StopResult> {
    const res = { step: this.step, checkpointStep: checkpoint ? this.checkpointStep : 0 };
    this.log.info(res, 'shard stopped');
    await this.event(ShardEvents.stopped, res).catch(() => {});
    return res;
  }

  private clearDrain(): void {
    if (this.drainTimer !== null) clearTimeout(this.drainTimer);
    this.drainTimer = null;
  }

  // --- status -----------------------------------------------------------------------------------

  /**
   * Where the shard's time went since its loop started (0 before): in the trainer, waiting for
   * peers' spins with nothing else to do, and in all, to the loop's end (WorkerStatus).
   */
  timing(): { computeSeconds: number; waitSeconds: number; runSeconds: number } {
    const t = this.control.time;
    const end = Number.isNaN(t.endedAt) ? performance.now() : t.endedAt;
    return {
      computeSeconds: t.computeMs / 1000,
      waitSeconds: t.waitMs / 1000,
      runSeconds: Number.isNaN(t.startedAt) ? 0 : (end - t.startedAt) / 1000,
    };
  }

  /** Traffic and staleness since the assignment. */
  counters(): {
    staleness: StalenessSummary;
    bytesSent: number;
    bytesReceived: number;
    framesSent: number;
    framesReceived: number;
    peers: PeerCounters[];
  } {
    const received = this.deps.peerServer.senderStats();
    const peers: PeerCounters[] = this.assignment.peers.map((p) => {
      const l = this.control.links.get(p.shardId);
      const r = received.get(p.shardId);
      return {
        shardId: p.shardId,
        address: p.address,
        connected: l?.state === 'open',
        bytesSent: l?.stats.bytesSent ?? 0,
        framesSent: l?.stats.framesSent ?? 0,
        framesResent: l?.stats.framesResent ?? 0,
        reconnects: l?.stats.reconnects ?? 0,
        bytesReceived: r?.bytesReceived ?? 0,
        framesReceived: r?.framesReceived ?? 0,
      };
    });
    const sum = (k: keyof PeerCounters): number => peers.reduce((n, p) => n + (p[k] as number), 0);
    return {
      staleness: this.staleness(),
      bytesSent: sum('bytesSent'),
      bytesReceived: sum('bytesReceived'),
      framesSent: sum('framesSent'),
      framesReceived: sum('framesReceived'),
      peers,
    };
  }

  /**
   * The shard's figures since the assignment, for the metrics (counts since this run started,
   * whatever the checkpoint it restored), and a request to the shard to measure its next
   * update, which the next sample reports.
   */
  metricsSample(): ShardSample {
    const counts = this.runner?.counts() ?? {
      spinUpdates: 0,
      sweeps: 0,
      weightUpdates: 0,
      staleness: [],
      update: null,
    };
    const { computeSeconds, waitSeconds } = this.timing();
    return {
      jobId: this.jobId,
      shard: this.shardId,
      step: this.step,
      totalSteps: this.totalSteps,
      checkpointStep: this.checkpointStep,
      checkpointAtMs: this.runner?.checkpointAtMs ?? null,
      ...counts,
      computeSeconds,
      waitSeconds,
      peers: this.counters().peers.map((p) => ({
        peer: p.shardId,
        bytesSent: p.bytesSent,
        bytesReceived: p.bytesReceived,
        messagesSent: p.framesSent,
        messagesReceived: p.framesReceived,
        messagesResent: p.framesResent,
        reconnects: p.reconnects,
      })),
    };
  }

  private staleness(): StalenessSummary {
    const out: StalenessSummary = { count: 0, sumSteps: 0, maxSteps: 0, buckets: [] };
    if (this.runner === null) return out;
    const hist = this.runner.stalenessHistogram();
    hist.forEach((n, d) => {
      out.count += n;
      out.sumSteps += n * d;
      if (n > 0) out.maxSteps = d;
    });
    let cum = 0;
    let next = 0;
    for (let le = 0; ; le = le === 0 ? 1 : le * 2) {
      for (; next <= le && next < hist.length; next++) cum += hist[next]!;
      out.buckets.push({ leSteps: le, count: cum });
      if (le >= out.maxSteps) break;
    }
    return out;
  }
}
