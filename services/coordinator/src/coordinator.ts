// The coordinator's control loop: start queued jobs on idle live workers (scheduling.ts), watch
// running jobs (monitoring.ts: heartbeats, Status calls, progress), reassign every shard from the
// last common checkpoint when a worker is lost (recovery.ts, placement.ts), and finish each job
// as its kind does (kinds/). Everything it needs to go on lives on the bus, so a restarted coordinator picks up where the
// last one stopped without disturbing the workers.
import type { Logger } from 'pino';
import {
  isTerminalState,
  type Assignment,
  type Bus,
  type JobState as BusJobState,
} from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import { DEFAULT_LIMITS, confinedAccess, type Limits, type DataAccess } from '@spinmesh/model';
import type { StoredJob } from '@spinmesh/cluster';
import type { CoordinatorMetrics } from '@spinmesh/telemetry';

import { Admission } from './admission.js';
import { ControlContext, REBALANCE_DEFAULTS, type RebalanceSettings } from './control-context.js';
import { kindOf, kindOfInput } from './kinds/index.js';
import { monitor } from './monitoring.js';
import { idleWorkers, startOrReject } from './scheduling.js';
import { busShardState, type ShardStateReader } from './shard-state.js';
import type { WorkerClients } from './worker-client.js';
import type { ModelRunner } from './model-runner.js';

export interface CoordinatorOptions {
  bus: Bus;
  workers: WorkerClients;
  /** Kernels for assembling and evaluating finished models. */
  kernels: Kernels;
  log: Logger;
  /** A worker whose Status calls fail for this long is lost. */
  heartbeatTimeoutMs: number;
  /** Time between two passes of the control loop. */
  pollIntervalMs: number;
  /** Least time between two progress events of a job. */
  progressIntervalMs: number;
  /** Reassignments after failures a job may need before it is failed. */
  maxRecoveries: number;
  /** When jobs are rebalanced (rebalance.ts). @defaultValue REBALANCE_DEFAULTS */
  rebalance?: Partial<RebalanceSettings>;
  /** How the workers keep their checkpoints and final exports on the bus. */
  shardState?: ShardStateReader;
  /**
   * The files job data may be read from. @defaultValue confined to no directory at all (only
   * the data kinds that need no file)
   */
  dataAccess?: DataAccess;
  /** Runs sequence jobs (rule 'stdp') on threads; without it they are refused at submission. */
  runner?: ModelRunner;
  now?: () => number;
  /** Metrics to feed: submissions, progress, recoveries, evaluations (jobs, workers: on demand). */
  metrics?: CoordinatorMetrics;
  /** What one job may cost and what the queue may hold. @defaultValue DEFAULT_LIMITS */
  limits?: Limits;
}

/** A request the job's state does not allow (cancelling a finished job). */
export class JobStateError extends Error {
  override readonly name = 'JobStateError';
  constructor(
    readonly jobId: string,
    readonly state: BusJobState,
    message: string,
  ) {
    super(message);
  }
}

/** The scheduler and failure handler of a cluster. */
export class Coordinator {
  private readonly bus: Bus;
  private readonly opts: CoordinatorOptions;
  private readonly log: Logger;
  private readonly ctx: ControlContext;
  private readonly admission: Admission;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(opts: CoordinatorOptions) {
    this.opts = opts;
    this.bus = opts.bus;
    this.log = opts.log;
    const limits = opts.limits ?? DEFAULT_LIMITS;
    this.ctx = new ControlContext({
      bus: opts.bus,
      workers: opts.workers,
      kernels: opts.kernels,
      log: opts.log,
      heartbeatTimeoutMs: opts.heartbeatTimeoutMs,
      progressIntervalMs: opts.progressIntervalMs,
      maxRecoveries: opts.maxRecoveries,
      rebalance: { ...REBALANCE_DEFAULTS, ...opts.rebalance },
      shardState: opts.shardState ?? busShardState,
      access: opts.dataAccess ?? confinedAccess([], 0),
      runner: opts.runner,
      now: opts.now ?? Date.now,
      metrics: opts.metrics,
      limits,
    });
    this.admission = new Admission(this.bus, limits, (job) => kindOf(job).estimatedBytes(job));
  }

  // --- lifetime -------------------------------------------------------------------------------

  /** Starts the control loop (a pass now, then one every pollIntervalMs after the last ended). */
  start(): void {
    if (!this.ctx.stopped) return;
    this.ctx.stopped = false;
    this.schedulePass(0);
  }

  /** Stops the loop and waits for a pass in progress. Jobs and workers are left as they are. */
  async stop(): Promise<void> {
    this.ctx.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedulePass(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.pass().finally(() => {
        this.running = null;
        if (!this.ctx.stopped) this.schedulePass(this.ctx.nextPassDelay(this.opts.pollIntervalMs));
      });
    }, delayMs);
  }

  /** One pass of the loop; errors are logged, never thrown (the next pass tries again). */
  async pass(): Promise<void> {
    try {
      await this.tick();
    } catch (err) {
      this.log.warn({ err }, 'control loop pass failed; retrying');
    }
  }

  // --- the public API's operations ------------------------------------------------------------

  /**
   * Validates a spec (once, by its kind) and stores the job, queued. @throws SpecError naming
   * the field; LimitError; the bus's InvalidArgumentError (a bad id) or JobExistsError
   */
  async submit(input: unknown, jobId?: string): Promise<StoredJob> {
    const planned = await kindOfInput(input).plan(input, this.ctx);
    const id = jobId === undefined || jobId === '' ? newJobId() : jobId;
    const record = (await this.admission.admit(planned.bytes, () =>
      this.bus.createJob({ id, ...planned.fields }),
    )) as StoredJob;
    this.opts.metrics?.jobSubmitted();
    if (planned.data) this.ctx.runtime(id).data = planned.data;
    this.log.info({ jobId: id, ...planned.logged }, 'job submitted');
    return record;
  }

  /** Cancels a queued or running job and stops its workers. @throws JobStateError when final */
  async cancel(jobId: string): Promise<StoredJob> {
    const tr = await this.bus.transitionJob(jobId, ['queued', 'running'], 'cancelled', {
      reason: 'cancelled by a CancelJob call',
    });
    if (!tr.ok)
      throw new JobStateError(
        jobId,
        tr.record.state,
        `job '${jobId}' is ${tr.record.state} already and cannot be cancelled`,
      );
    this.log.info({ jobId }, 'job cancelled');
    this.ctx.localRuns.get(jobId)?.stop();
    await this.ctx.stopWorkersOf(jobId);
    return tr.record as StoredJob;
  }

  // --- the control loop -----------------------------------------------------------------------

  /** One pass: monitor running jobs (recovering them as needed), then start queued ones. */
  async tick(): Promise<void> {
    const live = new Map((await this.bus.listWorkers()).map((w) => [w.id, w]));
    const running = await this.jobsIn('running');
    const queued = await this.jobsIn('queued');
    const assignments = new Map<string, Assignment | null>();
    const busy = new Set<string>();
    for (const job of running) {
      const a = await this.bus.getAssignment(job.id);
      assignments.set(job.id, a);
      for (const s of a?.shards ?? []) busy.add(s.workerId);
    }
    const pool = await idleWorkers(this.ctx, live, busy);
    for (const job of running) {
      await this.guard(job, () =>
        monitor(this.ctx, job, assignments.get(job.id) ?? null, live, pool),
      );
    }
    // First come, first served: once a job has to wait, the ones behind it wait too (a small
    // job slipping past could keep a large one waiting for ever).
    let ahead: StoredJob | null = null;
    for (const job of queued) {
      const head = ahead;
      let started = false;
      await this.guard(job, async () => {
        started = await startOrReject(this.ctx, job, pool, head);
      });
      if (!started) ahead ??= job;
    }
    this.ctx.forgetAllBut(new Set([...running, ...queued].map((j) => j.id)));
  }

  private async guard(job: StoredJob, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.log.warn({ jobId: job.id, err }, 'job pass failed; retrying');
    }
  }

  private async jobsIn(state: BusJobState): Promise<StoredJob[]> {
    const out: StoredJob[] = [];
    let pageToken: string | undefined;
    for (;;) {
      const page = await this.bus.listJobs({
        state,
        pageSize: 1000,
        ...(pageToken ? { pageToken } : {}),
      });
      out.push(...(page.jobs as StoredJob[]));
      if (page.nextPageToken === null) return out;
      pageToken = page.nextPageToken;
    }
  }

  /** Counts jobs by state and live workers into the metrics (before a scrape). */
  async refreshMetrics(): Promise<void> {
    const m = this.opts.metrics;
    if (!m) return;
    const counts: Record<string, number> = {};
    let pageToken: string | null = null;
    do {
      const page = await this.bus.listJobs({ pageSize: 1000, ...(pageToken ? { pageToken } : {}) });
      for (const j of page.jobs) counts[j.state] = (counts[j.state] ?? 0) + 1;
      pageToken = page.nextPageToken;
    } while (pageToken !== null);
    m.setJobCounts(counts);
    m.setWorkersAlive((await this.bus.listWorkers()).length);
  }

  /** Whether a job is final (for watchers). */
  static isFinal(state: BusJobState): boolean {
    return isTerminalState(state);
  }
}

/** A new job id: time-ordered and unique enough (`job-<ms base36>-<random>`). */
export function newJobId(): string {
  const rand = Math.floor(Math.random() * 36 ** 6)
    .toString(36)
    .padStart(6, '0');
  return `job-${Date.now().toString(36)}-${rand}`;
}
