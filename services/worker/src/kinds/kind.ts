// A worker's half of a job kind: how one shard of the kind's jobs is loaded and run. ShardRun
// does what every kind's shard does (state, links, stopping, reports, status); a ShardRunner
// holds the kind's model of the shard and its loop.
import type { ShardAssignment, SpinFrame, StalenessSummary } from '@spinmesh/proto';
import type { ShardSample } from '@spinmesh/telemetry';
import type { StoredJob } from '@spinmesh/cluster';

import type { Logger } from '../log.js';
import type { RunDeps } from '../run.js';
import type { ShardControl } from '../shard-control.js';

/** What a runner may use of its run. */
export interface ShardHost {
  readonly assignment: ShardAssignment;
  readonly deps: RunDeps;
  readonly log: Logger;
  readonly control: ShardControl;
  /** Appends one of this shard's events to the job's stream. */
  event(type: string, fields: Record<string, unknown>): Promise<void>;
  /** A progress report, at most every progressMs (or now, when forced). */
  report(force: boolean): void;
  /** The shard's final export is written: the run is done. */
  markDone(): void;
  /** The staleness of the spins used so far, summed up. */
  staleness(): StalenessSummary;
}

/** The shard's counts for the metrics, since its run started. */
export type ShardCounts = Pick<
  ShardSample,
  'spinUpdates' | 'sweeps' | 'weightUpdates' | 'staleness' | 'update'
>;

/** One shard of a job of some kind, loaded. */
export interface ShardRunner {
  /** Updates applied so far (the last step completed). */
  readonly step: number;
  readonly totalSteps: number;
  /** The newest checkpoint's step (0: none), and when it was written or restored (ms). */
  readonly checkpointStep: number;
  readonly checkpointAtMs: number | null;
  /** Whether it reports progress events and metrics (else its job is watched through Status). */
  readonly reports: boolean;
  /** A peer's frame. @throws ServerError INVALID_ARGUMENT for one the shard cannot take */
  take(frame: SpinFrame): void;
  /** The loop, to the end of the job or until the run is told to end. */
  run(): Promise<void>;
  /** hist[d]: spins used d steps stale, since the run started. */
  stalenessHistogram(): number[];
  /** The counts for the metrics (and a request to measure the next update). */
  counts(): ShardCounts;
  /**
   * Checkpoints step boundary `step`, ahead of the shard, to its move slot besides its periodic
   * checkpoints, then draws no further for up to `holdMs` (or until ended or asked again);
   * false when it is not ahead. Absent: the kind writes no checkpoints.
   */
  checkpointAt?(step: number, holdMs: number): boolean;
  /** The newest model-phase spins of the owned layers, for the bus's snapshot; null: none. */
  spins(): { step: number; bytes: Buffer } | null;
}

/** How a worker loads one shard of a kind's job. */
export interface WorkerKind {
  /**
   * Loads the shard from its job record (validated here, once) and its assignment; null when
   * the run was aborted meanwhile. @throws JobLoadError, SpecError naming what is wrong
   */
  load(record: StoredJob, host: ShardHost): Promise<ShardRunner | null>;
}
