// What every ModelService operation starts with: the completed job, its model file and its
// kind (which says which operations the model answers), and the bounds on a request's work and
// answer.
import * as grpc from '@grpc/grpc-js';
import type { Bus } from '@spinmesh/bus';
import { jobSpecFromJson, type JobSpec, type Limits } from '@spinmesh/model';
import { ServerError } from '@spinmesh/proto';
import { kindOfRecord, type ModelOperation, type StoredJob } from '@spinmesh/cluster';

import { LIMIT_ENV_VARS } from './config.js';
import { requireId } from './handlers.js';
import { kinds, type CoordinatorKind } from './kinds/index.js';
import { readModel } from './model-store.js';

const Status = grpc.status;

/** A completed job's model. */
export interface JobModel {
  job: StoredJob;
  kind: CoordinatorKind;
  step: number;
  bytes: Uint8Array;
}

const OPERATION_NAMES: Record<ModelOperation, string> = {
  sample: 'Sample',
  complete: 'Complete',
  evaluate: 'Evaluate',
  generate: 'Generate',
};

export function invalid(field: string, message: string): ServerError {
  return new ServerError(Status.INVALID_ARGUMENT, `${field} ${message}`);
}

export function tooLarge(what: string, detail: string): ServerError {
  return new ServerError(Status.RESOURCE_EXHAUSTED, `${what}: ${detail}`);
}

export function inRange(v: number, field: string, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max)
    throw invalid(field, `must be an integer in [${min}, ${max}] (got ${v})`);
  return v;
}

/** The job, which must be COMPLETED, and its model file (any kind). */
export async function modelOf(bus: Bus, jobId: string): Promise<JobModel> {
  const job = (await bus.getJob(requireId(jobId))) as StoredJob | null;
  if (!job) throw new ServerError(Status.NOT_FOUND, `job '${jobId}' not found`);
  const name = kindOfRecord(job);
  if (job.state !== 'completed' || name === null)
    throw new ServerError(
      Status.FAILED_PRECONDITION,
      `job '${jobId}' is ${job.state}: it has a model once it is completed`,
    );
  const model = await readModel(bus, jobId);
  if (!model)
    throw new ServerError(
      Status.FAILED_PRECONDITION,
      `job '${jobId}' is completed but its model is no longer stored`,
    );
  return { job, kind: kinds[name], ...model };
}

/**
 * The job's model, when its kind answers `op`; else FAILED_PRECONDITION naming the operations
 * that it answers.
 */
export async function modelServing(bus: Bus, jobId: string, op: ModelOperation): Promise<JobModel> {
  const m = await modelOf(bus, jobId);
  const c = m.kind.contract;
  if (!c.serves.includes(op)) {
    const ops = c.serves.map((o) => OPERATION_NAMES[o]);
    throw new ServerError(
      Status.FAILED_PRECONDITION,
      `job '${m.job.id}' holds a ${c.model} (rule '${c.name}'), not a ${servingModel(op)}: ` +
        `use ${ops.slice(0, -1).join(', ')}${ops.length > 1 ? ' or ' : ''}${ops.at(-1)} (or GetModel)`,
    );
  }
  return m;
}

/** What a model must be to answer `op`: the first kind's that answers it. */
function servingModel(op: ModelOperation): string {
  return (
    Object.values(kinds).find((k) => k.contract.serves.includes(op))?.contract.model ?? 'model'
  );
}

/** A network model's spec (the kinds that serve Sample, Complete and Evaluate have one). */
export function networkSpec(m: JobModel): JobSpec {
  if (!m.job.spec)
    throw new ServerError(Status.FAILED_PRECONDITION, `job '${m.job.id}' has no network spec`);
  return jobSpecFromJson(m.job.spec);
}

/** Bounds on one request: the answer's size, the work, the memory. */
export class RequestBounds {
  constructor(
    private readonly maxMessageBytes: number,
    private readonly maxUnitUpdates: number,
    private readonly limits: Pick<Limits, 'maxStateBytes' | 'maxDataBytes'>,
  ) {}

  /** An answer of `floats` float32 values must fit one message. */
  answer(what: string, floats: number, hint: string): void {
    if (floats * 4 > this.maxMessageBytes)
      throw tooLarge(
        what,
        `the answer would hold ${floats} floats (${floats * 4} bytes), more than the ${this.maxMessageBytes} bytes a message may carry (SPINMESH_MAX_MESSAGE_BYTES); ${hint}`,
      );
  }

  work(what: string, updates: number, hint: string): void {
    if (updates > this.maxUnitUpdates)
      throw tooLarge(
        what,
        `it asks for ${updates.toExponential(2)} unit updates, more than the ${this.maxUnitUpdates.toExponential(2)} one request may (SPINMESH_MAX_UNIT_UPDATES); ${hint}`,
      );
  }

  /** `values` float32 values of chain state or data within the limit `limit`. */
  bytes(what: string, limit: 'maxStateBytes' | 'maxDataBytes', values: number, hint: string): void {
    if (values * 4 > this.limits[limit])
      throw tooLarge(
        what,
        `it needs ${values * 4} bytes of ${limit === 'maxStateBytes' ? 'chain state' : 'data'}, more than the limit ${limit} = ${this.limits[limit]} (${LIMIT_ENV_VARS[limit]}); ${hint}`,
      );
  }
}
