// The coordinator's metrics: the cluster (jobs by state, live workers), the jobs it runs
// (progress, assignment generation) and their evaluations. Per-job series are kept for the
// `maxJobs` jobs touched most recently; an older job's series are removed, so the number of
// series stays bounded however many jobs a long-lived coordinator sees.
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { CoordinatorMetricDefs } from './names.js';
import { createRegistry, counter, gauge, histogram, type RegistryOptions } from './registry.js';
import { RpcMetrics } from './rpc.js';

/** The job states of the bus, as the state label spells them. */
export const JOB_STATES = ['queued', 'running', 'completed', 'failed', 'cancelled'] as const;

/** The figures of an evaluation the metrics take (the coordinator's Evaluation has them). */
export interface EvaluationSample {
  epoch: number;
  exactLogLikelihood?: number;
  aisLogLikelihood?: number;
  pseudoLogLikelihood?: number;
  reconstructionError?: number;
}

export interface CoordinatorMetricsOptions extends RegistryOptions {
  /** Register on this registry instead of a new one. */
  registry?: Registry;
  /** Jobs whose series are kept (the ones touched most recently). @defaultValue 20 */
  maxJobs?: number;
}

/** The metrics of one coordinator process. */
export class CoordinatorMetrics {
  readonly registry: Registry;
  readonly rpc: RpcMetrics;
  readonly maxJobs: number;
  private readonly jobs: Gauge;
  private readonly workersAlive: Gauge;
  private readonly submitted: Counter;
  private readonly recoveries: Counter;
  private readonly evaluationSeconds: Histogram;
  private readonly perJob: Gauge[];
  private readonly jobStep: Gauge;
  private readonly jobTotalSteps: Gauge;
  private readonly jobEpoch: Gauge;
  private readonly jobGeneration: Gauge;
  private readonly evalEpoch: Gauge;
  private readonly logLikelihood: Gauge;
  private readonly pseudoLogLikelihood: Gauge;
  private readonly reconstructionError: Gauge;
  /** Job ids with series, least recently touched first (a Map keeps insertion order). */
  private readonly recent = new Map<string, true>();

  constructor(options: CoordinatorMetricsOptions = {}) {
    const r = options.registry ?? createRegistry(options);
    this.registry = r;
    this.maxJobs = options.maxJobs ?? 20;
    if (!(Number.isInteger(this.maxJobs) && this.maxJobs >= 1))
      throw new RangeError(`maxJobs must be an integer >= 1 (got ${this.maxJobs})`);
    this.rpc = new RpcMetrics(r);
    const d = CoordinatorMetricDefs;
    this.jobs = gauge(r, d.jobs);
    this.workersAlive = gauge(r, d.workersAlive);
    this.submitted = counter(r, d.submitted);
    this.recoveries = counter(r, d.recoveries);
    this.evaluationSeconds = histogram(r, d.evaluationSeconds);
    this.jobStep = gauge(r, d.jobStep);
    this.jobTotalSteps = gauge(r, d.jobTotalSteps);
    this.jobEpoch = gauge(r, d.jobEpoch);
    this.jobGeneration = gauge(r, d.jobGeneration);
    this.evalEpoch = gauge(r, d.evalEpoch);
    this.logLikelihood = gauge(r, d.logLikelihood);
    this.pseudoLogLikelihood = gauge(r, d.pseudoLogLikelihood);
    this.reconstructionError = gauge(r, d.reconstructionError);
    this.perJob = [
      this.jobStep,
      this.jobTotalSteps,
      this.jobEpoch,
      this.jobGeneration,
      this.evalEpoch,
      this.logLikelihood,
      this.pseudoLogLikelihood,
      this.reconstructionError,
    ];
    this.submitted.inc(0);
    this.recoveries.inc(0);
  }

  /** Jobs by state: every state gets a value (0 where none). */
  setJobCounts(counts: Readonly<Partial<Record<string, number>>>): void {
    for (const s of JOB_STATES) this.jobs.set({ state: s }, counts[s] ?? 0);
  }

  setWorkersAlive(n: number): void {
    this.workersAlive.set(n);
  }

  jobSubmitted(): void {
    this.submitted.inc();
  }

  jobRecovered(): void {
    this.recoveries.inc();
  }

  /** A running job's progress and its assignment generation. */
  jobProgress(
    jobId: string,
    p: { step: number; totalSteps: number; epoch: number; generation: number },
  ): void {
    const l = this.touch(jobId);
    this.jobStep.set(l, p.step);
    this.jobTotalSteps.set(l, p.totalSteps);
    this.jobEpoch.set(l, p.epoch);
    this.jobGeneration.set(l, p.generation);
  }

  /** An evaluation of a job's model, and how long assembling and evaluating it took. */
  evaluation(jobId: string, e: EvaluationSample, seconds: number): void {
    const l = this.touch(jobId);
    this.evaluationSeconds.observe(seconds);
    this.evalEpoch.set(l, e.epoch);
    const set = (g: Gauge, v: number | undefined, labels: Record<string, string> = l): void => {
      if (v !== undefined && Number.isFinite(v)) g.set(labels, v);
    };
    set(this.logLikelihood, e.exactLogLikelihood, { ...l, method: 'exact' });
    set(this.logLikelihood, e.aisLogLikelihood, { ...l, method: 'ais' });
    set(this.pseudoLogLikelihood, e.pseudoLogLikelihood);
    set(this.reconstructionError, e.reconstructionError);
  }

  /** Marks a job as recent, removing the series of the least recent one beyond maxJobs. */
  private touch(jobId: string): { job_id: string } {
    this.recent.delete(jobId);
    this.recent.set(jobId, true);
    while (this.recent.size > this.maxJobs) {
      const oldest = this.recent.keys().next().value!;
      this.recent.delete(oldest);
      this.forget(oldest);
    }
    return { job_id: jobId };
  }

  private forget(jobId: string): void {
    for (const g of this.perJob) {
      if (g === this.logLikelihood) {
        g.remove({ job_id: jobId, method: 'exact' });
        g.remove({ job_id: jobId, method: 'ais' });
      } else {
        g.remove({ job_id: jobId });
      }
    }
  }
}
