// The events the coordinator appends to a job's stream, and how a job record (its fields are
// @spinmesh/cluster's JobFields) and those events read as JobService messages.
import type { JobEventRecord, JobState as BusJobState, NewJobEvent } from '@spinmesh/bus';
import type { Evaluation as ModelEvaluation } from '@spinmesh/model';
import type { ProgressRecord, Rollback, StoredJob } from '@spinmesh/cluster';
import {
  JobState,
  type Evaluation,
  type Job,
  type JobProgress,
  type WatchJobResponse,
  type WorkerChange,
} from '@spinmesh/proto';

/** Events the coordinator appends to a job's stream, besides the bus's own `state` events. */
export interface ProgressEvent extends NewJobEvent {
  type: 'progress';
  at: number;
  step: number;
  totalSteps: number;
  epoch: number;
  shardSteps: number[];
  restoredFromStep: number;
  computeFraction: number;
  waitFraction: number;
}

export interface EvaluationEvent extends NewJobEvent {
  type: 'evaluation';
  at: number;
  step: number;
  evaluation: ModelEvaluation;
}

export interface WorkersEvent extends NewJobEvent {
  type: 'workers';
  at: number;
  kind: 'assigned' | 'waiting' | 'worker-lost' | 'requeued' | 'rebalanced';
  generation: number;
  shards?: { shardId: number; workerId: string; address: string }[];
  restoreFromStep?: number;
  /** 'rebalanced': units per shard (all layers together) before and after. */
  before?: number[];
  after?: number[];
  /** 'rebalanced': each shard's measured busy seconds per step, which decided it. */
  secondsPerStep?: number[];
  needed?: number;
  available?: number;
  workerId?: string;
  message: string;
}

const STATE: Record<BusJobState, JobState> = {
  queued: JobState.JOB_STATE_QUEUED,
  running: JobState.JOB_STATE_RUNNING,
  completed: JobState.JOB_STATE_COMPLETED,
  failed: JobState.JOB_STATE_FAILED,
  cancelled: JobState.JOB_STATE_CANCELLED,
};

/** A bus job state as the proto enum (UNSPECIFIED for anything else, e.g. null). */
export function toJobState(s: unknown): JobState {
  return typeof s === 'string' && s in STATE
    ? STATE[s as BusJobState]
    : JobState.JOB_STATE_UNSPECIFIED;
}

// A record's fields are read as what the message can carry, whatever the record holds: one
// written by another hand than SubmitJob's must not make GetJob and ListJobs fail to encode.
/** An integer in [0, max], else 0. */
const count = (v: unknown, max = Number.MAX_SAFE_INTEGER): number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= max ? v : 0;
const fraction = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** A model evaluation as the proto message (absent figures stay absent). */
export function toEvaluation(e: ModelEvaluation): Evaluation {
  const out: Evaluation = { epoch: count(e.epoch) };
  const copy = <K extends keyof Evaluation & keyof ModelEvaluation>(k: K): void => {
    const v = e[k];
    if (typeof v === 'number' && Number.isFinite(v)) (out as unknown as Record<K, number>)[k] = v;
  };
  copy('exactLogLikelihood');
  copy('logZ');
  copy('aisLogLikelihood');
  copy('aisLow');
  copy('aisHigh');
  copy('pseudoLogLikelihood');
  copy('reconstructionError');
  copy('probeAccuracy');
  copy('recallAccuracy');
  copy('recallExact');
  copy('recallFrames');
  copy('rmse');
  copy('sequenceLogLikelihood');
  copy('optimum');
  return out;
}

function toProgress(p: ProgressRecord | undefined, totalSteps: number): JobProgress {
  const r: Record<string, unknown> = isObject(p) ? p : {};
  return {
    step: count(r['step']),
    totalSteps: count(r['totalSteps'] ?? totalSteps),
    epoch: count(r['epoch']),
    shardSteps: Array.isArray(r['shardSteps']) ? r['shardSteps'].map((v) => count(v)) : [],
    restoredFromStep: count(r['restoredFromStep']),
    computeFraction: fraction(r['computeFraction']),
    waitFraction: fraction(r['waitFraction']),
  };
}

/** A stored job as the Job message. */
export function toJobMessage(job: StoredJob, generation: number): Job {
  const state = job.state;
  const spec: unknown = job.spec ?? job.sequence;
  const evaluation: unknown = job.evaluation ?? job.progress?.evaluation;
  const name = job.name ?? (isObject(spec) ? spec['name'] : undefined);
  const error = job.error ?? (state === 'queued' || state === 'cancelled' ? job.reason : '');
  return {
    jobId: job.id,
    name: text(name),
    state: toJobState(state),
    specJson: spec === undefined ? '' : JSON.stringify(spec),
    workers: count(job.workers, 0xffff_ffff),
    createdAtMs: count(job.createdAt),
    updatedAtMs: count(job.updatedAt),
    progress: toProgress(job.progress, count(job.totalSteps)),
    ...(isObject(evaluation)
      ? { evaluation: toEvaluation(evaluation as unknown as ModelEvaluation) }
      : {}),
    error: text(error),
    generation: count(generation, 0xffff_ffff),
    modelBytes: count(isObject(job.model) ? job.model.bytes : undefined),
  };
}

/** One event of a job's stream as a WatchJob message; `reason` fills a final state's reason. */
export function toWatchResponse(id: string, e: JobEventRecord, reason = ''): WatchJobResponse {
  const out: WatchJobResponse = {
    eventId: id,
    atMs: Math.max(0, Math.round(e.at)),
    json: JSON.stringify(e),
  };
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  switch (e.type) {
    case 'state':
      out.state = { from: toJobState(e['from']), to: toJobState(e['to']), reason };
      break;
    case 'progress':
      out.progress = {
        step: num(e['step']),
        totalSteps: num(e['totalSteps']),
        epoch: num(e['epoch']),
        shardSteps: Array.isArray(e['shardSteps']) ? e['shardSteps'].map(num) : [],
        restoredFromStep: num(e['restoredFromStep']),
        computeFraction: num(e['computeFraction']),
        waitFraction: num(e['waitFraction']),
      };
      break;
    case 'evaluation': {
      const ev = e['evaluation'];
      if (typeof ev === 'object' && ev !== null && !Array.isArray(ev))
        out.evaluation = toEvaluation(ev as unknown as ModelEvaluation);
      break;
    }
    case 'workers': {
      const shards = Array.isArray(e['shards']) ? e['shards'] : [];
      const w: WorkerChange = {
        kind: typeof e['kind'] === 'string' ? e['kind'] : '',
        generation: num(e['generation']),
        shards: shards.map((s) => {
          const r = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>;
          return {
            shardId: num(r['shardId']),
            workerId: typeof r['workerId'] === 'string' ? r['workerId'] : '',
            address: typeof r['address'] === 'string' ? r['address'] : '',
          };
        }),
        restoreFromStep: num(e['restoreFromStep']),
        needed: num(e['needed']),
        available: num(e['available']),
        workerId: typeof e['workerId'] === 'string' ? e['workerId'] : '',
        message: typeof e['message'] === 'string' ? e['message'] : '',
      };
      out.workers = w;
      break;
    }
    default:
      break; // only `json`
  }
  return out;
}

/**
 * The job's last rollback, from its progress record: the generation now running and the step
 * its shards restored from (none before the first assignment). After it, only the checkpoints
 * of the run that went on from that step count (commonCheckpointStep of @spinmesh/cluster).
 */
export function lastRollback(job: StoredJob): Rollback | undefined {
  const p = job.progress;
  return p ? { generation: p.generation, step: p.restoredFromStep } : undefined;
}
