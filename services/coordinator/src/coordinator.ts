// The coordinator's control loop: start queued jobs on idle live workers, watch running jobs
// (heartbeats, Status calls, progress), reassign every shard from the last common checkpoint
// when a worker is lost, and assemble, evaluate and store the model when every shard is done.
// Everything it needs to go on lives on the bus, so a restarted coordinator picks up where the
// last one stopped without disturbing the workers.
import type { Logger } from 'pino';
import {
  BusError,
  isTerminalState,
  type Assignment,
  type UnitRange as BusUnitRange,
  type Bus,
  type JobState as BusJobState,
  type WorkerInfo,
} from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import {
  DEFAULT_LIMITS,
  SpecError,
  assemble,
  checkJobLimits,
  checkSequenceLimits,
  validateJobSpec,
  type Limits,
  createHopfield,
  encodeModel,
  evaluateNetwork,
  confinedAccess,
  loadData,
  loadSequences,
  sequenceJobFrames,
  sequenceShardUnits,
  createSequenceModel,
  evaluateSequences,
  encodeSequenceModel,
  DyBM,
  DyBMShard,
  type DyBMSnapshot,
  storeHebbian,
  validateSequenceJob,
  type SequenceEvaluation,
  type DataAccess,
  type Dataset,
  type Evaluation,
} from '@spinmesh/model';
import { WorkerState, type WorkerStatus } from '@spinmesh/proto';
import {
  evaluationEverySteps,
  exportSlot,
  type JobFields,
  type ProgressRecord,
  type StoredJob,
} from '@spinmesh/cluster';
import type { CoordinatorMetrics } from '@spinmesh/telemetry';

import {
  buildAssignment,
  buildSequenceAssignment,
  shardRanges,
  type PlacedShard,
} from './assignment.js';
import { Admission } from './admission.js';
import { MODEL_SLOT, storeModel } from './model-store.js';
import { planJob, type DataLoader, type JobPlan } from './plan.js';
import {
  lastRollback,
  type EvaluationEvent,
  type ProgressEvent,
  type WorkersEvent,
} from './records.js';
import { recordProblem } from './record-shape.js';
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

/** Something wrong with one shard's worker, found by monitor(). */
interface Problem {
  workerId: string;
  reason: string;
  /** The worker is gone or unusable: give its shard to another one. Else it keeps its shard. */
  replace: boolean;
  /** Its address, when it is still registered. */
  address?: string;
}

/** What the coordinator remembers about a job between passes (rebuilt after a restart). */
interface Runtime {
  /** When each worker's Status calls started failing. */
  failingSince: Map<string, number>;
  /** Workers whose Assign failed: replaced at the next recovery. */
  replace: Set<string>;
  lastProgressKey: string;
  lastProgressAt: number;
  lastWaitingKey: string;
  data?: { train: Dataset; test: Dataset };
}

/** Idle live workers, in id order, taken as jobs need them during one pass. */
type Pool = WorkerInfo[];

/** States of a worker that holds a job (and must be stopped when it is not that job's). */
const STOP_STATES = new Set([
  WorkerState.WORKER_STATE_LOADING,
  WorkerState.WORKER_STATE_RUNNING,
  WorkerState.WORKER_STATE_FAILED,
  WorkerState.WORKER_STATE_DONE,
]);

/** The scheduler and failure handler of a cluster. */
export class Coordinator {
  private readonly bus: Bus;
  private readonly opts: CoordinatorOptions;
  private readonly log: Logger;
  private readonly shardState: ShardStateReader;
  private readonly access: DataAccess;
  private readonly load: DataLoader;
  private readonly now: () => number;
  private readonly runtimes = new Map<string, Runtime>();
  private readonly limits: Limits;
  private readonly admission: Admission;
  /** Sequence jobs training on threads of this coordinator. */
  private readonly sequenceRuns = new Map<string, { stop: () => void }>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = true;

  constructor(opts: CoordinatorOptions) {
    this.opts = opts;
    this.bus = opts.bus;
    this.log = opts.log;
    this.shardState = opts.shardState ?? busShardState;
    this.access = opts.dataAccess ?? confinedAccess([], 0);
    this.load = (d, seed, field) => loadData(d, seed, this.access, field);
    this.now = opts.now ?? Date.now;
    this.limits = opts.limits ?? DEFAULT_LIMITS;
    this.admission = new Admission(this.bus, this.limits);
  }

  // --- lifetime -------------------------------------------------------------------------------

  /** Starts the control loop (a pass now, then one every pollIntervalMs after the last ended). */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedulePass(0);
  }

  /** Stops the loop and waits for a pass in progress. Jobs and workers are left as they are. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  private schedulePass(delayMs: number): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.pass().finally(() => {
        this.running = null;
        if (!this.stopped) this.schedulePass(this.opts.pollIntervalMs);
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
   * Validates a spec and stores the job, queued. @throws SpecError naming the field; the bus's
   * InvalidArgumentError (a bad id) or JobExistsError
   */
  async submit(input: unknown, jobId?: string): Promise<StoredJob> {
    if (isSequenceInput(input)) return this.submitSequence(input, jobId);
    // The sizes a spec states are checked before any data is read or generated; the rest once
    // the data are loaded.
    checkJobLimits(validateJobSpec(input), this.limits);
    const plan = await planJob(input, this.load);
    const test = await this.testData(plan, plan.data);
    const estimate = checkJobLimits(plan.spec, this.limits, {
      train: plan.rows,
      test: test.rows,
    });
    const id = jobId === undefined || jobId === '' ? newJobId() : jobId;
    const fields: JobFields = {
      name: plan.spec.name,
      spec: plan.spec,
      workers: plan.spec.workers,
      layout: plan.layout,
      rows: plan.rows,
      stepsPerEpoch: plan.stepsPerEpoch,
      totalSteps: plan.totalSteps,
    };
    const record = (await this.admission.admit(estimate.bytes, () =>
      this.bus.createJob({ id, ...fields }),
    )) as StoredJob;
    this.opts.metrics?.jobSubmitted();
    this.runtime(id).data = { train: plan.data, test };
    this.log.info(
      {
        jobId: id,
        name: plan.spec.name,
        workers: plan.spec.workers,
        totalSteps: plan.totalSteps,
        staleness: plan.spec.staleness,
      },
      'job submitted',
    );
    return record;
  }

  /** A sequence job (rule 'stdp'): validated (its data loaded) and queued; no shards. */
  private async submitSequence(input: unknown, jobId?: string): Promise<StoredJob> {
    const spec = validateSequenceJob(input);
    if (spec.workers === 1 && !this.opts.runner)
      throw new SpecError('spec.rule', "'stdp' jobs need a coordinator that runs model threads");
    const id = jobId === undefined || jobId === '' ? newJobId() : jobId;
    const seqs = await loadSequences(spec, this.access);
    const estimate = checkSequenceLimits(
      spec,
      this.limits,
      seqs.reduce((n, q) => n + q.steps, 0),
    );
    const K = spec.workers;
    // One worker: rounds on a thread here. More: every frame of every episode on the workers.
    const frames = sequenceJobFrames(spec, seqs);
    const fields: JobFields = {
      name: spec.name,
      sequence: spec,
      workers: K,
      layout: Array.from({ length: K }, (_, s) => ({
        x: sequenceShardUnits(spec.network.dybm.units, K, s),
      })),
      rows: seqs.length,
      stepsPerEpoch: K === 1 ? 1 : frames / spec.epochs,
      totalSteps: K === 1 ? spec.epochs : frames,
    };
    const record = (await this.admission.admit(estimate.bytes, () =>
      this.bus.createJob({ id, ...fields }),
    )) as StoredJob;
    this.log.info({ jobId: id, name: spec.name, rounds: spec.epochs }, 'sequence job submitted');
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
    this.sequenceRuns.get(jobId)?.stop();
    await this.stopWorkersOf(jobId);
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
    const pool = await this.idleWorkers(live, busy);
    for (const job of running) {
      await this.guard(job, () => this.monitor(job, assignments.get(job.id) ?? null, live, pool));
    }
    // First come, first served: once a job has to wait, the ones behind it wait too (a small
    // job slipping past could keep a large one waiting for ever).
    let ahead: StoredJob | null = null;
    for (const job of queued) {
      const head = ahead;
      let started = false;
      await this.guard(job, async () => {
        started = await this.startOrReject(job, pool, head);
      });
      if (!started) ahead ??= job;
    }
    const active = new Set([...running, ...queued].map((j) => j.id));
    for (const id of this.runtimes.keys()) if (!active.has(id)) this.runtimes.delete(id);
  }

  /**
   * schedule(), except that a record that cannot start (malformed: not written by SubmitJob) is
   * failed with the reason and counts as started: left queued, it would hold every job behind it.
   * Bus errors still propagate, to be retried at the next pass.
   */
  private async startOrReject(
    job: StoredJob,
    pool: Pool,
    ahead: StoredJob | null,
  ): Promise<boolean> {
    const problem = recordProblem(job);
    if (problem !== null) {
      await this.fail(job, `the job record is malformed: ${problem}`);
      return true;
    }
    try {
      return await this.schedule(job, pool, ahead);
    } catch (err) {
      if (err instanceof BusError) throw err;
      this.log.warn({ jobId: job.id, err }, 'job could not be started');
      const why = err instanceof SpecError ? err.message.slice(0, 300) : 'internal error';
      await this.fail(job, `the job could not be started: ${why}`);
      return true;
    }
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

  /**
   * The live workers that hold no shard of a running job and say they are idle. A worker that
   * still runs a job it no longer belongs to (cancelled, requeued, reassigned away) is stopped.
   */
  private async idleWorkers(live: Map<string, WorkerInfo>, busy: Set<string>): Promise<Pool> {
    const free = [...live.values()].filter((w) => !busy.has(w.id));
    const statuses = await Promise.all(
      free.map((w) => this.opts.workers.status(w.address).catch(() => null)),
    );
    const pool: Pool = [];
    free.forEach((w, i) => {
      const st = statuses[i];
      if (!st) return;
      if (
        st.state === WorkerState.WORKER_STATE_IDLE ||
        (st.jobId === '' && st.state !== WorkerState.WORKER_STATE_STOPPING)
      ) {
        pool.push(w);
      } else if (st.jobId !== '' && STOP_STATES.has(st.state)) {
        this.log.info(
          { workerId: w.id, jobId: st.jobId, generation: st.generation },
          'stopping a worker that runs a job it is not assigned to',
        );
        void this.opts.workers.stop(w.address, st.jobId).catch(() => undefined);
      }
    });
    return pool.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * A queued job: start it when enough idle workers are live and no job ahead of it waits, else
   * say what it waits for. @returns whether it started
   */
  private async schedule(job: StoredJob, pool: Pool, ahead: StoredJob | null): Promise<boolean> {
    if (job.spec?.rule === 'hebbian') {
      await this.storeInOneLook(job);
      return true;
    }
    if (job.sequence && job.workers === 1) {
      const tr = await this.bus.transitionJob(job.id, ['queued'], 'running', { reason: null });
      if (tr.ok) this.trainSequence(tr.record as StoredJob);
      return true;
    }
    const K = job.workers ?? 1;
    const rt = this.runtime(job.id);
    if (pool.length < K || ahead !== null) {
      const key = `${K}/${pool.length}/${ahead?.id ?? ''}`;
      if (key !== rt.lastWaitingKey) {
        rt.lastWaitingKey = key;
        const workers = `${K} idle live worker${K === 1 ? '' : 's'} (${pool.length} available)`;
        await this.event(job.id, {
          type: 'workers',
          at: this.now(),
          kind: 'waiting',
          generation: 0,
          needed: K,
          available: pool.length,
          message:
            ahead === null
              ? `waiting for ${workers}`
              : `waiting for ${workers} behind job ${ahead.id}, first in the queue`,
        });
        this.log.info(
          { jobId: job.id, needed: K, available: pool.length, ahead: ahead?.id },
          'job waits for workers',
        );
      }
      return false;
    }
    const tr = await this.bus.transitionJob(job.id, ['queued'], 'running', { reason: null });
    if (!tr.ok) return true;
    rt.lastWaitingKey = '';
    const previous = await this.bus.getAssignment(job.id);
    await this.place(tr.record as StoredJob, previous, new Map(), pool, 'job started');
    return true;
  }

  /** A running job: check every shard's worker, aggregate progress, finish or recover. */
  private async monitor(
    job: StoredJob,
    a: Assignment | null,
    live: Map<string, WorkerInfo>,
    pool: Pool,
  ): Promise<void> {
    if (job.sequence && job.workers === 1) {
      // Running, but not on this coordinator's threads: it restarted. Train again from the start.
      if (!this.sequenceRuns.has(job.id)) this.trainSequence(job);
      return;
    }
    const K = job.workers ?? 1;
    const total = job.totalSteps ?? 0;
    const rt = this.runtime(job.id);
    if (!a) {
      // The coordinator stopped between starting the job and writing its assignment.
      await this.place(job, null, new Map(), pool, 'job had no assignment');
      return;
    }
    const finished = await this.shardState.finished(this.bus, job.id, K, total, lastRollback(job));
    if (finished.size === K) {
      await this.finish(job, a);
      return;
    }
    const now = this.now();
    const steps = new Array<number>(K).fill(0);
    /** Fractions of each polled shard's run spent computing and waiting for peers. */
    const times: { compute: number; wait: number }[] = [];
    const problems = new Map<number, Problem>();
    await Promise.all(
      a.shards.map(async (s) => {
        const w = s.workerId;
        if (finished.has(s.shardId)) {
          steps[s.shardId] = total;
          return;
        }
        const info = live.get(w);
        if (!info) {
          problems.set(s.shardId, {
            workerId: w,
            reason: 'its bus registration expired (no heartbeat)',
            replace: true,
          });
          return;
        }
        if (rt.replace.has(w)) {
          problems.set(s.shardId, {
            workerId: w,
            reason: 'it did not take its assignment',
            replace: true,
            address: info.address,
          });
          return;
        }
        let st: WorkerStatus;
        try {
          st = await this.opts.workers.status(info.address);
          rt.failingSince.delete(w);
        } catch (err) {
          const since = rt.failingSince.get(w) ?? now;
          rt.failingSince.set(w, since);
          if (now - since >= this.opts.heartbeatTimeoutMs) {
            problems.set(s.shardId, {
              workerId: w,
              reason: `it has not answered Status for ${now - since} ms (${(err as Error).message})`,
              replace: true,
              address: info.address,
            });
          }
          steps[s.shardId] = job.progress?.shardSteps?.[s.shardId] ?? 0;
          return;
        }
        if (st.jobId !== job.id || st.generation !== a.generation) {
          problems.set(s.shardId, {
            workerId: w,
            reason:
              st.jobId === ''
                ? `it holds no job (expected generation ${a.generation})`
                : `it holds job ${st.jobId} generation ${st.generation} (expected ${job.id} generation ${a.generation})`,
            replace: false,
          });
          return;
        }
        if (st.state === WorkerState.WORKER_STATE_FAILED) {
          problems.set(s.shardId, {
            workerId: w,
            reason: `it failed: ${st.error}`,
            replace: false,
          });
          return;
        }
        steps[s.shardId] = st.step;
        if (st.runSeconds > 0)
          times.push({
            compute: st.computeSeconds / st.runSeconds,
            wait: st.waitSeconds / st.runSeconds,
          });
      }),
    );
    if (problems.size > 0) {
      await this.recover(job, a, problems, pool);
      return;
    }
    await this.progress(job, steps, a.generation, times);
    await this.evaluateDuringTraining(job);
  }

  /**
   * Evaluates a running job at the next multiple of spec.evaluate.every epochs of which every
   * shard has left its parameters on the bus (an evaluation snapshot, or a checkpoint of that
   * step), as one process evaluates at exactly those epochs (the final evaluation comes from the
   * exports). Best effort: a step whose snapshots were replaced before this pass got to them is
   * passed over, never evaluated at another step.
   */
  private async evaluateDuringTraining(job: StoredJob): Promise<void> {
    if (!job.spec) return; // a sequence job: evaluated once its shards are done
    const spec = job.spec;
    const perEpoch = Math.max(1, job.stepsPerEpoch ?? 1);
    const K = job.workers ?? 1;
    const every = evaluationEverySteps(spec.evaluate.every ?? 1, spec.epochs, perEpoch);
    if (every === 0) return;
    const last = job.progress?.evaluation?.epoch ?? 0;
    const step = await this.shardState.evaluationStep(
      this.bus,
      job.id,
      K,
      { every, after: last * perEpoch, total: job.totalSteps ?? 0 },
      lastRollback(job),
    );
    if (step === 0) return;
    const epoch = step / perEpoch;
    let evaluation: Evaluation;
    const t0 = performance.now();
    try {
      const { train, test } = await this.dataOf(job);
      const exports = await this.shardState.checkpointExports(
        this.bus,
        {
          jobId: job.id,
          spec,
          layout: job.layout!,
          totalSteps: job.totalSteps ?? 0,
          kernels: this.opts.kernels,
          data: train,
        },
        step,
      );
      if (!exports) return;
      const net = assemble(spec.network, this.opts.kernels, exports);
      evaluation = finite(
        evaluateNetwork(net, test, spec.evaluate, {
          seed: spec.seed,
          train,
          epoch,
          dataSpec: spec.data,
        }),
      );
    } catch (err) {
      if (err instanceof BusError) throw err;
      this.log.warn({ jobId: job.id, err, step }, 'evaluation from checkpoints failed');
      return;
    }
    this.opts.metrics?.evaluation(job.id, evaluation, (performance.now() - t0) / 1000);
    const e: EvaluationEvent = { type: 'evaluation', at: this.now(), step, evaluation };
    await this.event(job.id, e);
    const current = (await this.bus.getJob(job.id)) as StoredJob | null;
    if (current?.progress)
      await this.bus.updateJobProgress(job.id, { ...current.progress, evaluation });
    this.log.info({ jobId: job.id, epoch, evaluation }, 'evaluated from checkpoints');
  }

  /**
   * Records and announces progress (at most every progressIntervalMs, and at the end), with the
   * mean of the polled shards' time fractions (the last known ones when none was polled).
   */
  private async progress(
    job: StoredJob,
    shardSteps: number[],
    generation: number,
    times: readonly { compute: number; wait: number }[],
  ): Promise<void> {
    const rt = this.runtime(job.id);
    const total = job.totalSteps ?? 0;
    const step = Math.min(...shardSteps);
    const key = `${generation}:${shardSteps.join(',')}`;
    const now = this.now();
    if (key === rt.lastProgressKey) return;
    if (now - rt.lastProgressAt < this.opts.progressIntervalMs && step < total) return;
    rt.lastProgressKey = key;
    rt.lastProgressAt = now;
    const epoch = Math.floor(step / Math.max(1, job.stepsPerEpoch ?? 1));
    const previous = job.progress;
    const restoredFromStep = previous?.restoredFromStep ?? 0;
    const mean = (k: 'compute' | 'wait', last: number | undefined): number =>
      times.length > 0 ? times.reduce((n, x) => n + x[k], 0) / times.length : (last ?? 0);
    const computeFraction = mean('compute', previous?.computeFraction);
    const waitFraction = mean('wait', previous?.waitFraction);
    const record: ProgressRecord = {
      ...previous,
      step,
      totalSteps: total,
      epoch,
      shardSteps,
      generation,
      restoredFromStep,
      recoveries: previous?.recoveries ?? 0,
      computeFraction,
      waitFraction,
    };
    await this.bus.updateJobProgress(job.id, record);
    this.opts.metrics?.jobProgress(job.id, { step, totalSteps: total, epoch, generation });
    const e: ProgressEvent = {
      type: 'progress',
      at: now,
      step,
      totalSteps: total,
      epoch,
      shardSteps,
      restoredFromStep,
      computeFraction,
      waitFraction,
    };
    await this.event(job.id, e);
  }

  /** Workers of a running job were lost or went astray: reassign every shard. */
  private async recover(
    job: StoredJob,
    a: Assignment,
    problems: Map<number, Problem>,
    pool: Pool,
  ): Promise<void> {
    const log = this.log.child({ jobId: job.id });
    const recoveries = (job.progress?.recoveries ?? 0) + 1;
    const lines: string[] = [];
    for (const [shard, p] of [...problems.entries()].sort(([x], [y]) => x - y)) {
      const message = `shard ${shard}: worker ${p.workerId} ${p.replace ? 'is lost' : 'must start over'}: ${p.reason}`;
      lines.push(message);
      log.warn({ shard, workerId: p.workerId, generation: a.generation }, message);
      await this.event(job.id, {
        type: 'workers',
        at: this.now(),
        kind: 'worker-lost',
        generation: a.generation,
        workerId: p.workerId,
        message,
      });
    }
    const rt = this.runtime(job.id);
    for (const p of problems.values()) {
      rt.failingSince.delete(p.workerId);
      rt.replace.delete(p.workerId);
      // A replaced worker may still be alive behind a broken link: tell it to stop, if it hears.
      if (p.replace && p.address !== undefined) {
        const address = p.address;
        void this.opts.workers
          .stop(address, job.id)
          .catch(() => undefined)
          .finally(() => this.opts.workers.forget(address));
      }
    }
    if (recoveries > this.opts.maxRecoveries) {
      await this.fail(
        job,
        `gave up after ${this.opts.maxRecoveries} reassignments; last failure: ${lines.join('; ')}`,
      );
      return;
    }
    const keep = new Map<number, string>();
    for (const s of a.shards) {
      const p = problems.get(s.shardId);
      if (!p || !p.replace) keep.set(s.shardId, s.workerId);
    }
    this.opts.metrics?.jobRecovered();
    await this.place(job, a, keep, pool, lines.join('; '), recoveries);
  }

  /**
   * Gives every shard a worker (the kept ones keep theirs, the others come from the pool),
   * under a new generation, each restoring the newest step all shards have checkpointed. With
   * too few workers the job goes back to the queue instead.
   */
  private async place(
    job: StoredJob,
    previous: Assignment | null,
    keep: Map<number, string>,
    pool: Pool,
    reason: string,
    recoveries = job.progress?.recoveries ?? 0,
  ): Promise<void> {
    const K = job.workers ?? 1;
    const layout = job.layout!;
    const log = this.log.child({ jobId: job.id });
    const unitsOf = (s: number): BusUnitRange[] =>
      job.sequence
        ? [{ layer: 0, start: layout[s]!['x']![0], end: layout[s]!['x']![1] }]
        : shardRanges(job.spec!.network, layout, s);
    const liveById = new Map((await this.bus.listWorkers()).map((w) => [w.id, w]));
    for (const [shard, w] of keep) if (!liveById.has(w)) keep.delete(shard);
    const need = K - keep.size;
    if (pool.length < need) {
      await this.requeue(job, previous, keep, liveById, need, pool.length, reason);
      return;
    }
    const shards: PlacedShard[] = [];
    for (let s = 0; s < K; s++) {
      const kept = keep.get(s);
      const info = kept !== undefined ? liveById.get(kept)! : pool.shift()!;
      shards.push({ shardId: s, workerId: info.id, address: info.address });
    }
    const generation = (previous?.generation ?? 0) + 1;
    // The job record as it is now: its progress names the last rollback, whose abandoned run's
    // checkpoints must not be mixed with the next ones.
    const current = (await this.bus.getJob(job.id)) as StoredJob | null;
    const restoreFromStep = await this.shardState.restoreStep(
      this.bus,
      job.id,
      K,
      lastRollback(current ?? job),
    );
    await this.bus.setAssignment(job.id, {
      generation,
      shards: shards.map((p) => ({
        shardId: p.shardId,
        workerId: p.workerId,
        units: unitsOf(p.shardId),
      })),
    });
    const progress: ProgressRecord = {
      step: restoreFromStep,
      totalSteps: job.totalSteps ?? 0,
      epoch: Math.floor(restoreFromStep / Math.max(1, job.stepsPerEpoch ?? 1)),
      shardSteps: new Array<number>(K).fill(restoreFromStep),
      ...(job.progress?.evaluation ? { evaluation: job.progress.evaluation } : {}),
      generation,
      restoredFromStep: restoreFromStep,
      recoveries,
    };
    await this.bus.updateJobProgress(job.id, progress);
    this.opts.metrics?.jobProgress(job.id, progress);
    const message =
      `generation ${generation}: ` +
      shards.map((p) => `shard ${p.shardId} on ${p.workerId}`).join(', ') +
      (restoreFromStep > 0 ? `, restoring step ${restoreFromStep}` : ', from the start') +
      ` (${reason})`;
    await this.event(job.id, {
      type: 'workers',
      at: this.now(),
      kind: 'assigned',
      generation,
      shards,
      restoreFromStep,
      message,
    });
    log.info({ generation, restoreFromStep, shards }, 'shards assigned');
    const rt = this.runtime(job.id);
    rt.lastProgressKey = '';
    await Promise.all(
      shards.map(async (p) => {
        try {
          const args = { jobId: job.id, generation, layout, shards, shardId: p.shardId };
          await this.opts.workers.assign(
            p.address,
            job.sequence
              ? buildSequenceAssignment({ ...args, spec: job.sequence })
              : buildAssignment({ ...args, spec: job.spec!, restoreFromStep }),
          );
        } catch (err) {
          rt.replace.add(p.workerId);
          log.warn({ err, workerId: p.workerId, shard: p.shardId }, 'Assign failed');
        }
      }),
    );
  }

  /** Too few workers to go on: stop the rest and put the job back in the queue. */
  private async requeue(
    job: StoredJob,
    previous: Assignment | null,
    keep: Map<number, string>,
    live: Map<string, WorkerInfo>,
    need: number,
    available: number,
    reason: string,
  ): Promise<void> {
    const message =
      `back to the queue: ${need} shard${need === 1 ? '' : 's'} without a worker and ` +
      `${available} idle live worker${available === 1 ? '' : 's'} (${reason})`;
    await this.event(job.id, {
      type: 'workers',
      at: this.now(),
      kind: 'requeued',
      generation: previous?.generation ?? 0,
      needed: need,
      available,
      message,
    });
    const tr = await this.bus.transitionJob(job.id, ['running'], 'queued', { reason: message });
    this.log.warn({ jobId: job.id }, message);
    if (!tr.ok) return;
    for (const w of keep.values()) {
      const info = live.get(w);
      if (info) void this.opts.workers.stop(info.address, job.id).catch(() => undefined);
    }
  }

  /** Every shard has its final export: assemble, evaluate, store the model, complete the job. */
  private async finish(job: StoredJob, a: Assignment): Promise<void> {
    if (job.sequence) {
      await this.finishSequence(job);
      return;
    }
    const log = this.log.child({ jobId: job.id });
    const spec = job.spec!;
    const total = job.totalSteps ?? 0;
    let evaluation: Evaluation;
    let bytes: Uint8Array;
    let seconds: number;
    const t0 = performance.now();
    try {
      const exports = await this.shardState.exports(this.bus, job.id, job.workers ?? 1, total);
      if (!exports) return; // an export went missing under us (a rollback): the next pass sees it
      const net = assemble(spec.network, this.opts.kernels, exports);
      const { train, test } = await this.dataOf(job);
      evaluation = finite(
        evaluateNetwork(net, test, spec.evaluate, {
          seed: spec.seed,
          train,
          epoch: spec.epochs,
          dataSpec: spec.data,
        }),
      );
      seconds = (performance.now() - t0) / 1000;
      bytes = encodeModel(net, {
        training: {
          spec,
          epoch: spec.epochs,
          step: total,
          jobId: job.id,
          workers: job.workers,
          generation: a.generation,
        },
        meta: { jobId: job.id, assembledFrom: `${job.workers} shards` },
      });
    } catch (err) {
      // The bus being away is worth another try; bytes or a spec that cannot make a model are not.
      if (err instanceof BusError) throw err;
      await this.fail(job, `assembling the model failed: ${(err as Error).message}`);
      return;
    }
    await storeModel(this.bus, job.id, total, bytes);
    this.opts.metrics?.evaluation(job.id, evaluation, seconds);
    // The record a finished job keeps says total/total: the last one the polls wrote may be
    // older than the shards' last steps (progress is written at most every progressIntervalMs).
    await this.progress(job, new Array<number>(job.workers ?? 1).fill(total), a.generation, []);
    const e: EvaluationEvent = { type: 'evaluation', at: this.now(), step: total, evaluation };
    await this.event(job.id, e);
    const tr = await this.bus.transitionJob(job.id, ['running'], 'completed', {
      evaluation,
      model: { shard: MODEL_SLOT, step: total, bytes: bytes.length },
    });
    if (tr.ok) log.info({ evaluation, modelBytes: bytes.length }, 'job completed');
    await this.stopWorkersOf(job.id);
  }

  /**
   * A 'hebbian' job: the coordinator stores the patterns itself (one GEMM; no workers, no
   * sampling), evaluates, stores the model and completes the job.
   */
  private async storeInOneLook(job: StoredJob): Promise<void> {
    const tr = await this.bus.transitionJob(job.id, ['queued'], 'running', { reason: null });
    if (!tr.ok) return;
    const spec = job.spec!;
    let evaluation: Evaluation;
    let bytes: Uint8Array;
    let seconds: number;
    const t0 = performance.now();
    try {
      const { train, test } = await this.dataOf(job);
      const net = createHopfield(spec.network.layers[0]!.size, this.opts.kernels);
      storeHebbian(net, train.x, train.rows);
      evaluation = finite(
        evaluateNetwork(net, test, spec.evaluate, {
          seed: spec.seed,
          train,
          epoch: 1,
          dataSpec: spec.data,
        }),
      );
      seconds = (performance.now() - t0) / 1000;
      bytes = encodeModel(net, {
        training: { spec, epoch: 1, step: 1, jobId: job.id, workers: 0 },
        meta: { jobId: job.id, storedBy: 'coordinator (hebbian, one look)' },
      });
    } catch (err) {
      if (err instanceof BusError) throw err;
      await this.fail(job, `storing the patterns failed: ${(err as Error).message}`);
      return;
    }
    await storeModel(this.bus, job.id, 1, bytes);
    this.opts.metrics?.evaluation(job.id, evaluation, seconds);
    this.opts.metrics?.jobProgress(job.id, { step: 1, totalSteps: 1, epoch: 1, generation: 0 });
    await this.bus.updateJobProgress(job.id, {
      step: 1,
      totalSteps: 1,
      epoch: 1,
      shardSteps: [1],
      generation: 0,
      restoredFromStep: 0,
      recoveries: 0,
    } satisfies ProgressRecord);
    await this.event(job.id, { type: 'evaluation', at: this.now(), step: 1, evaluation });
    const done = await this.bus.transitionJob(job.id, ['running'], 'completed', {
      evaluation,
      model: { shard: MODEL_SLOT, step: 1, bytes: bytes.length },
    });
    if (done.ok)
      this.log.info({ jobId: job.id, evaluation, modelBytes: bytes.length }, 'job completed');
  }

  /**
   * Every shard of a sequence job has written its export: one DyBM from their units, evaluated
   * (recall, log-likelihood) and stored as the job's model.
   */
  private async finishSequence(job: StoredJob): Promise<void> {
    const spec = job.sequence!;
    const K = job.workers ?? 1;
    const total = job.totalSteps ?? 0;
    const layout = job.layout!;
    let evaluation: Evaluation;
    let bytes: Uint8Array;
    try {
      const model = createSequenceModel(spec);
      for (let s = 0; s < K; s++) {
        const c = await this.bus.getCheckpoint(job.id, exportSlot(s));
        if (c === null || c.step !== total) return; // not all there yet: the next pass sees it
        const part = DyBM.fromJSON(
          JSON.parse(Buffer.from(c.data).toString('utf8')) as DyBMSnapshot,
        );
        const [from, to] = layout[s]!['x']!;
        new DyBMShard(
          part,
          Array.from({ length: to - from }, (_, k) => from + k),
        ).exportInto(model);
      }
      const seqs = await loadSequences(spec, this.access);
      const e = evaluateSequences(model, seqs, spec.evaluate.cue, spec.epochs);
      evaluation = sequenceEvaluation(e);
      bytes = encodeSequenceModel(model, spec, e);
    } catch (err) {
      if (err instanceof BusError) throw err;
      await this.fail(job, `assembling the sequence model failed: ${(err as Error).message}`);
      return;
    }
    await storeModel(this.bus, job.id, total, bytes);
    await this.progress(job, new Array<number>(K).fill(total), job.progress?.generation ?? 1, []);
    await this.event(job.id, { type: 'evaluation', at: this.now(), step: total, evaluation });
    const tr = await this.bus.transitionJob(job.id, ['running'], 'completed', {
      evaluation,
      model: { shard: MODEL_SLOT, step: total, bytes: bytes.length },
    });
    if (tr.ok) this.log.info({ jobId: job.id, evaluation }, 'job completed');
    await this.stopWorkersOf(job.id);
  }

  /**
   * Trains a running sequence job on a thread (the DyBM is small; its sharded protocol is tested
   * in-process), then stores the model, publishes the evaluation and completes the job.
   */
  private trainSequence(job: StoredJob): void {
    const runner = this.opts.runner!;
    const spec = job.sequence!;
    const run = runner.runDetached({ kind: 'train-sequence', spec });
    this.sequenceRuns.set(job.id, run);
    this.log.info({ jobId: job.id, rounds: spec.epochs }, 'sequence job training on a thread');
    const done = async (): Promise<void> => {
      let out;
      try {
        out = await run.result;
      } catch (err) {
        if (this.stopped) return; // shutting down: the job stays running for the next coordinator
        const j = await this.bus.getJob(job.id);
        if (j?.state === 'running')
          await this.fail(job, `training the sequence job failed: ${(err as Error).message}`);
        return;
      }
      if (out.kind !== 'train-sequence') return;
      const { model, evaluations } = out.result;
      const rounds = evaluations.at(-1)?.epoch ?? spec.epochs;
      for (const e of evaluations) {
        const evaluation = sequenceEvaluation(e);
        await this.event(job.id, { type: 'evaluation', at: this.now(), step: e.epoch, evaluation });
      }
      await storeModel(this.bus, job.id, rounds, model);
      await this.bus.updateJobProgress(job.id, {
        step: rounds,
        totalSteps: spec.epochs,
        epoch: rounds,
        shardSteps: [rounds],
        generation: 0,
        restoredFromStep: 0,
        recoveries: 0,
      } satisfies ProgressRecord);
      const last = evaluations.at(-1);
      const tr = await this.bus.transitionJob(job.id, ['running'], 'completed', {
        ...(last ? { evaluation: sequenceEvaluation(last) } : {}),
        model: { shard: MODEL_SLOT, step: rounds, bytes: model.length },
      });
      if (tr.ok) this.log.info({ jobId: job.id, rounds, evaluation: last }, 'job completed');
    };
    void done()
      .catch((err: unknown) =>
        this.log.warn({ jobId: job.id, err }, 'sequence job bookkeeping failed'),
      )
      .finally(() => this.sequenceRuns.delete(job.id));
  }

  private async fail(job: StoredJob, message: string): Promise<void> {
    const tr = await this.bus.transitionJob(job.id, ['queued', 'running'], 'failed', {
      error: message,
    });
    if (tr.ok) this.log.error({ jobId: job.id }, `job failed: ${message}`);
    await this.stopWorkersOf(job.id);
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

  /** Stops the workers of a job's assignment (best effort: they may be gone). */
  private async stopWorkersOf(jobId: string): Promise<void> {
    const a = await this.bus.getAssignment(jobId);
    if (!a) return;
    const live = new Map((await this.bus.listWorkers()).map((w) => [w.id, w]));
    await Promise.all(
      a.shards.map(async (s) => {
        const info = live.get(s.workerId);
        if (info) await this.opts.workers.stop(info.address, jobId).catch(() => undefined);
      }),
    );
  }

  private async event(
    jobId: string,
    e: ProgressEvent | EvaluationEvent | WorkersEvent,
  ): Promise<void> {
    await this.bus.appendEvent(jobId, e);
  }

  private runtime(jobId: string): Runtime {
    let rt = this.runtimes.get(jobId);
    if (!rt) {
      rt = {
        failingSince: new Map(),
        replace: new Set(),
        lastProgressKey: '',
        lastProgressAt: 0,
        lastWaitingKey: '',
      };
      this.runtimes.set(jobId, rt);
    }
    return rt;
  }

  private async dataOf(job: StoredJob): Promise<{ train: Dataset; test: Dataset }> {
    const rt = this.runtime(job.id);
    if (!rt.data) {
      const spec = job.spec!;
      const train = await this.load(spec.data, spec.seed, 'spec.data');
      rt.data = {
        train,
        test: spec.evaluate.test
          ? await this.load(spec.evaluate.test, spec.seed, 'spec.evaluate.test')
          : train,
      };
    }
    return rt.data;
  }

  private async testData(plan: JobPlan, train: Dataset): Promise<Dataset> {
    const test = plan.spec.evaluate.test;
    return test ? this.load(test, plan.spec.seed, 'spec.evaluate.test') : train;
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

/** The evaluation without figures that are not finite numbers (the bus stores JSON only). */
function finite(e: Evaluation): Evaluation {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e))
    if (typeof v !== 'number' || Number.isFinite(v)) out[k] = v;
  return out as unknown as Evaluation;
}

/** Whether a submitted spec is a sequence job (rule 'stdp'). */
function isSequenceInput(input: unknown): boolean {
  return (
    typeof input === 'object' && input !== null && (input as { rule?: unknown }).rule === 'stdp'
  );
}

/** A sequence job's figures in the job record's evaluation (the Evaluation message's fields). */
function sequenceEvaluation(e: SequenceEvaluation): Evaluation {
  const out: Record<string, number> = { epoch: e.epoch };
  if (e.recallExact !== undefined) out['recallExact'] = e.recallExact;
  if (e.recallFrames !== undefined) out['recallFrames'] = e.recallFrames;
  if (e.rmse !== undefined) out['rmse'] = e.rmse;
  if (e.logLikelihood !== undefined) out['sequenceLogLikelihood'] = e.logLikelihood;
  return out as unknown as Evaluation;
}
