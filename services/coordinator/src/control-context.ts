// What the control loop's parts (scheduling, monitoring, recovery, placement) and the job kinds
// share: the coordinator's options resolved, what it remembers of each job between passes, and
// the few writes every part makes (events, progress, failing a job, stopping its workers).
import type { Logger } from 'pino';
import type { Bus, WorkerInfo } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import {
  loadData,
  type DataAccess,
  type Dataset,
  type Limits,
  type ShardLayout,
} from '@spinmesh/model';
import type { ProgressRecord, StoredJob } from '@spinmesh/cluster';
import type { CoordinatorMetrics } from '@spinmesh/telemetry';

import type { DataLoader } from './plan.js';
import type { EvaluationEvent, ProgressEvent, WorkersEvent } from './records.js';
import type { ShardStateReader } from './shard-state.js';
import type { WorkerClients } from './worker-client.js';
import type { ModelRunner } from './model-runner.js';

/** When the coordinator rebalances a job (ControlSettings.rebalance). */
export interface RebalanceSettings {
  /** Rebalances one job may have; 0 turns rebalancing off. @defaultValue 3 */
  maxRebalances: number;
  /**
   * How much longer the slowest shard's time per step must be than the fastest's (0.2: 20 %)
   * before the job is rebalanced. @defaultValue 0.2
   */
  threshold: number;
  /**
   * Least time, in seconds, a rebalance must be predicted to save over the rest of the job:
   * moving costs a restart of every shard from the checkpoint (data reloaded, peers reconnected,
   * the steps past it redone), which short jobs and small differences do not repay.
   * @defaultValue 10
   */
  minSavingSeconds: number;
  /**
   * Steps a shard's pace is measured over, after as many steps of warming up (twice as many
   * after a move): new processes, connections and a restored trainer run slower, and unevenly,
   * for their first steps. A window also spans at least one of the coordinator's passes.
   * @defaultValue 20
   */
  windowSteps: number;
  /** SPINMESH_DEBUG_STOP_IN_MOVE (tests of recovery): 0, or shards re-cut before a SIGKILL. */
  debugStopInMove?: number;
}

export const REBALANCE_DEFAULTS: RebalanceSettings = {
  maxRebalances: 3,
  threshold: 0.2,
  minSavingSeconds: 10,
  windowSteps: 20,
};

/**
 * What one shard's Status says about its speed since its run started: steps done and the time
 * it was not waiting for its peers' spins (computing, and whatever else slows its worker down).
 */
export interface ShardPace {
  steps: number;
  busySeconds: number;
}

/** A rebalance decided on, waiting for every shard's checkpoint of `step` in its move slot. */
export interface PendingRebalance {
  step: number;
  /** When every shard was asked for the checkpoint (ControlContext.now()). */
  requestedAt: number;
  layout: ShardLayout;
  /** Units per shard before and after (all layers together). */
  before: number[];
  after: number[];
  /** The figures it was decided on: each shard's busy seconds per step. */
  secondsPerStep: number[];
}

/** What the coordinator remembers about a job between passes (rebuilt after a restart). */
export interface Runtime {
  /** When each worker's Status calls started failing. */
  failingSince: Map<string, number>;
  /** Workers whose Assign failed: replaced at the next recovery. */
  replace: Set<string>;
  lastProgressKey: string;
  lastProgressAt: number;
  lastWaitingKey: string;
  /** A rebalance decided on under an assignment generation (rebalance.ts). */
  rebalance?: { generation: number; plan: PendingRebalance };
  /** Each shard's pace a few steps into the generation, which rebalance.ts measures from. */
  paceBase?: { generation: number; paces: ShardPace[] };
  /** When the last rebalance reassigned the job, and under which generation. */
  movedAt?: { generation: number; at: number; timed?: boolean };
  /** What the last rebalance cost, in seconds: until every shard ran a few steps again. */
  moveSeconds?: number;
  /** Units and seconds per step of each shard when the last rebalance was decided on. */
  lastPaces?: { units: number[]; secondsPerStep: number[] };
  /**
   * Steps ahead of the shards a move's checkpoint is asked for, per second of the job's pace
   * (grows when a shard was already past the step asked for).
   */
  moveMarginSeconds?: number;
  /** Moves given up because a shard's checkpoint of the step never came. */
  movesMissed?: number;
  /** The job cannot be rebalanced (or moving it failed once): not tried again. */
  rebalanceOff?: boolean;
  data?: { train: Dataset; test: Dataset };
}

/** Idle live workers, in id order, taken as jobs need them during one pass. */
export type Pool = WorkerInfo[];

/** The coordinator's settings the parts read. */
export interface ControlSettings {
  bus: Bus;
  workers: WorkerClients;
  kernels: Kernels;
  log: Logger;
  heartbeatTimeoutMs: number;
  progressIntervalMs: number;
  maxRecoveries: number;
  rebalance: RebalanceSettings;
  shardState: ShardStateReader;
  access: DataAccess;
  runner: ModelRunner | undefined;
  now: () => number;
  metrics: CoordinatorMetrics | undefined;
  limits: Limits;
}

/** Shared state and writes of one coordinator. */
export class ControlContext {
  readonly bus: Bus;
  readonly log: Logger;
  readonly load: DataLoader;
  readonly now: () => number;
  private readonly runtimes = new Map<string, Runtime>();
  /** Jobs training on threads of this coordinator (not on workers), with how to stop each. */
  readonly localRuns = new Map<string, { stop: () => void }>();
  /** Set once the coordinator stops: a local run that ends then leaves its job as it is. */
  stopped = true;
  /** The soonest the next pass is wanted, in ms after this one (null: the poll interval). */
  private nextPassMs: number | null = null;

  constructor(readonly settings: ControlSettings) {
    this.bus = settings.bus;
    this.log = settings.log;
    this.now = settings.now;
    this.load = (d, seed, field) => loadData(d, seed, settings.access, field);
  }

  /**
   * Asks for the next pass within `ms` of this one, sooner than the poll interval: a move
   * waiting for its checkpoints, while the job it moves draws steps that will be redone.
   */
  passWithin(ms: number): void {
    this.nextPassMs = Math.min(this.nextPassMs ?? ms, ms);
  }

  /** The delay before the next pass (and forgets what passWithin asked for). */
  nextPassDelay(pollIntervalMs: number): number {
    const d = Math.min(pollIntervalMs, this.nextPassMs ?? pollIntervalMs);
    this.nextPassMs = null;
    return Math.max(0, d);
  }

  runtime(jobId: string): Runtime {
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

  /** Forgets the jobs that are neither queued nor running any more. */
  forgetAllBut(active: Set<string>): void {
    for (const id of this.runtimes.keys()) if (!active.has(id)) this.runtimes.delete(id);
  }

  async event(jobId: string, e: ProgressEvent | EvaluationEvent | WorkersEvent): Promise<void> {
    await this.bus.appendEvent(jobId, e);
  }

  async fail(job: StoredJob, message: string): Promise<void> {
    const tr = await this.bus.transitionJob(job.id, ['queued', 'running'], 'failed', {
      error: message,
    });
    if (tr.ok) this.log.error({ jobId: job.id }, `job failed: ${message}`);
    await this.stopWorkersOf(job.id);
  }

  /** Stops the workers of a job's assignment (best effort: they may be gone). */
  async stopWorkersOf(jobId: string): Promise<void> {
    const a = await this.bus.getAssignment(jobId);
    if (!a) return;
    const live = new Map((await this.bus.listWorkers()).map((w) => [w.id, w]));
    await Promise.all(
      a.shards.map(async (s) => {
        const info = live.get(s.workerId);
        if (info) await this.settings.workers.stop(info.address, jobId).catch(() => undefined);
      }),
    );
  }

  /** A job's training and test data, loaded once per coordinator (kept from its submission). */
  async dataOf(job: StoredJob): Promise<{ train: Dataset; test: Dataset }> {
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

  /**
   * Records and announces progress (at most every progressIntervalMs, and at the end), with the
   * mean of the polled shards' time fractions (the last known ones when none was polled).
   */
  async progress(
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
    if (now - rt.lastProgressAt < this.settings.progressIntervalMs && step < total) return;
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
    this.settings.metrics?.jobProgress(job.id, { step, totalSteps: total, epoch, generation });
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
}
