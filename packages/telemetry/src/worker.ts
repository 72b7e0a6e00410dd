// A worker's metrics. The worker hands over cumulative figures of its current shard (counts
// since the shard's run started) whenever it likes (a progress report, a scrape); the counters
// advance by the difference to the figures seen last from the same run, so the metrics cost
// nothing on the sampling loop and a rollback (a new run from a checkpoint) never makes a
// counter go back.
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';

import { WorkerMetricDefs } from './names.js';
import { createRegistry, counter, gauge, histogram, type RegistryOptions } from './registry.js';
import { RpcMetrics } from './rpc.js';

/** The states of WorkerControl.Status, as the state label spells them. */
export const WORKER_STATES = ['idle', 'loading', 'running', 'stopping', 'done', 'failed'] as const;
export type WorkerStateName = (typeof WORKER_STATES)[number];

/** Traffic with one peer shard since the run started. */
export interface PeerSample {
  /** The peer's shard id. */
  peer: number;
  bytesSent: number;
  bytesReceived: number;
  messagesSent: number;
  messagesReceived: number;
  messagesResent: number;
  reconnects: number;
}

/** The update a shard measured last (ShardTrainer.lastUpdateStats). */
export interface UpdateSample {
  updateNorm: number;
  learningRate: number;
  dataCorrelation: number;
  modelCorrelation: number;
}

/** Cumulative figures of a shard's run (one job, shard and assignment generation). */
export interface ShardSample {
  jobId: string;
  shard: number;
  step: number;
  totalSteps: number;
  checkpointStep: number;
  /** When the newest checkpoint was written or restored, in ms since the epoch; null: none. */
  checkpointAtMs: number | null;
  spinUpdates: number;
  sweeps: number;
  weightUpdates: number;
  /** Seconds in the trainer (drawing units, applying updates). */
  computeSeconds: number;
  /** Seconds waiting for peers' spins with nothing else to do. */
  waitSeconds: number;
  /** staleness[d]: peer-state reads d steps behind lockstep. */
  staleness: readonly number[];
  peers: readonly PeerSample[];
  update: UpdateSample | null;
}

type PeerCounter = Exclude<keyof PeerSample, 'peer'>;

export interface WorkerMetricsOptions extends RegistryOptions {
  /** Register on this registry instead of a new one. */
  registry?: Registry;
}

/** The metrics of one worker process. */
export class WorkerMetrics {
  readonly registry: Registry;
  readonly rpc: RpcMetrics;
  private readonly state: Gauge;
  private readonly spinUpdates: Counter;
  private readonly sweeps: Counter;
  private readonly weightUpdates: Counter;
  private readonly computeSeconds: Counter;
  private readonly waitSeconds: Counter;
  private readonly staleness: Histogram;
  private readonly peer: Record<PeerCounter, Counter>;
  private readonly step: Gauge;
  private readonly totalSteps: Gauge;
  private readonly checkpointStep: Gauge;
  private readonly checkpointTime: Gauge;
  private readonly updateNorm: Gauge;
  private readonly correlation: Gauge;
  private readonly learningRate: Gauge;
  /** The run whose figures were seen last, and those figures. */
  private run: object | null = null;
  private last: ShardSample | null = null;
  /** Job and shard of the series there are now. */
  private series: string | null = null;

  constructor(options: WorkerMetricsOptions = {}) {
    const r = options.registry ?? createRegistry(options);
    this.registry = r;
    this.rpc = new RpcMetrics(r);
    const d = WorkerMetricDefs;
    this.state = gauge(r, d.state);
    this.spinUpdates = counter(r, d.spinUpdates);
    this.sweeps = counter(r, d.sweeps);
    this.weightUpdates = counter(r, d.weightUpdates);
    this.computeSeconds = counter(r, d.computeSeconds);
    this.waitSeconds = counter(r, d.waitSeconds);
    this.staleness = histogram(r, d.staleness);
    this.peer = {
      bytesSent: counter(r, d.peerSentBytes),
      bytesReceived: counter(r, d.peerReceivedBytes),
      messagesSent: counter(r, d.peerSentMessages),
      messagesReceived: counter(r, d.peerReceivedMessages),
      messagesResent: counter(r, d.peerResentMessages),
      reconnects: counter(r, d.peerReconnects),
    };
    this.step = gauge(r, d.step);
    this.totalSteps = gauge(r, d.totalSteps);
    this.checkpointStep = gauge(r, d.checkpointStep);
    this.checkpointTime = gauge(r, d.checkpointTime);
    this.updateNorm = gauge(r, d.updateNorm);
    this.correlation = gauge(r, d.correlation);
    this.learningRate = gauge(r, d.learningRate);
    this.setState('idle');
  }

  /** Sets the state gauge: 1 for `state`, 0 for the others. */
  setState(state: WorkerStateName): void {
    for (const s of WORKER_STATES) this.state.set({ state: s }, s === state ? 1 : 0);
  }

  /**
   * Takes the figures of a run (any object standing for one run: the same object each time).
   * Counters advance by what changed since this run's last sample; a new run starts from zero,
   * and a new job or shard replaces the previous one's series.
   */
  observeShard(run: object, s: ShardSample): void {
    const labels = { job_id: s.jobId, shard: String(s.shard) };
    const series = `${s.jobId}/${s.shard}`;
    let prev = this.last;
    if (run !== this.run) {
      if (this.series !== null && this.series !== series) this.clearShard();
      this.run = run;
      prev = null;
    }
    this.last = s;
    if (this.series !== series) {
      this.series = series;
      this.staleness.zero(labels);
    }
    const inc = (c: Counter, now: number, before: number | undefined, l = labels): void => {
      const d = now - (before ?? 0);
      if (d > 0) c.inc(l, d);
      else if (before === undefined) c.inc(l, 0); // the series exists from the start
    };
    inc(this.spinUpdates, s.spinUpdates, prev?.spinUpdates);
    inc(this.sweeps, s.sweeps, prev?.sweeps);
    inc(this.weightUpdates, s.weightUpdates, prev?.weightUpdates);
    inc(this.computeSeconds, s.computeSeconds, prev?.computeSeconds);
    inc(this.waitSeconds, s.waitSeconds, prev?.waitSeconds);
    for (let age = 0; age < s.staleness.length; age++) {
      const n = s.staleness[age]! - (prev?.staleness[age] ?? 0);
      // prom-client takes observations one at a time; a few thousand a second at most.
      for (let i = 0; i < n; i++) this.staleness.observe(labels, age);
    }
    for (const p of s.peers) {
      const before = prev?.peers.find((q) => q.peer === p.peer);
      const l = { ...labels, peer: String(p.peer) };
      for (const k of Object.keys(this.peer) as PeerCounter[])
        inc(this.peer[k], p[k], before?.[k], l);
    }
    this.step.set(labels, s.step);
    this.totalSteps.set(labels, s.totalSteps);
    this.checkpointStep.set(labels, s.checkpointStep);
    if (s.checkpointAtMs !== null) this.checkpointTime.set(labels, s.checkpointAtMs / 1000);
    const u = s.update;
    if (u !== null) {
      const set = (g: Gauge, v: number, l: Record<string, string> = labels): void => {
        if (Number.isFinite(v)) g.set(l, v);
      };
      set(this.updateNorm, u.updateNorm);
      set(this.learningRate, u.learningRate);
      set(this.correlation, u.dataCorrelation, { ...labels, phase: 'data' });
      set(this.correlation, u.modelCorrelation, { ...labels, phase: 'model' });
    }
  }

  /** Removes the series of the current shard (its job is gone). */
  clearShard(): void {
    for (const m of [
      this.spinUpdates,
      this.sweeps,
      this.weightUpdates,
      this.computeSeconds,
      this.waitSeconds,
      this.staleness,
      ...Object.values(this.peer),
      this.step,
      this.totalSteps,
      this.checkpointStep,
      this.checkpointTime,
      this.updateNorm,
      this.correlation,
      this.learningRate,
    ])
      m.reset();
    this.run = null;
    this.last = null;
    this.series = null;
  }
}
