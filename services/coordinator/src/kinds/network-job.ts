// What the two kinds whose model is a network ('boltzmann', 'hebbian') share: one validator
// (validateJobSpec), the limits checked before and after the data are read, the record's
// fields, the admission estimate, and the model's files.
import type { Kernels } from '@spinmesh/kernels';
import {
  jobSpecFromJson,
  jobSpecToJson,
  stalenessText,
  NO_LIMITS,
  checkJobLimits,
  decodeModel,
  npyFiles,
  validateJobSpec,
  type Dataset,
  type Evaluation,
  type JobSpec,
} from '@spinmesh/model';
import type { JobFields, StoredJob } from '@spinmesh/cluster';

import type { ControlContext } from '../control-context.js';
import type { DataLoader, JobPlan } from '../plan.js';
import type { CoordinatorKind, ModelFile, PlannedJob } from './kind.js';

/** Plans a validated network spec of the kind's rule: its layout, rows and steps. */
export type NetworkPlanner = (
  spec: JobSpec,
  load: DataLoader,
) => Promise<JobPlan & { data: Dataset }>;

/** A kind whose model is a network: its spec is a JobSpec of its rule. */
export interface NetworkKind extends CoordinatorKind {
  /** Plans a spec validateJobSpec accepted, of this kind's rule. */
  readonly planNetwork: NetworkPlanner;
}

/**
 * Validates a network job's spec once and plans it with `planner`. The sizes a spec states are
 * checked before any data is read or generated; the rest once the data are loaded.
 */
export async function planNetworkJob(
  input: unknown,
  ctx: ControlContext,
  planner: NetworkPlanner,
): Promise<PlannedJob> {
  const limits = ctx.settings.limits;
  const validated = validateJobSpec(input);
  checkJobLimits(validated, limits);
  const plan = await planner(validated, ctx.load);
  const testSpec = plan.spec.evaluate.test;
  const test = testSpec
    ? await ctx.load(testSpec, plan.spec.seed, 'spec.evaluate.test')
    : plan.data;
  const estimate = checkJobLimits(plan.spec, limits, { train: plan.rows, test: test.rows });
  const fields: JobFields = {
    name: plan.spec.name,
    spec: jobSpecToJson(plan.spec),
    workers: plan.spec.workers,
    layout: plan.layout,
    rows: plan.rows,
    stepsPerEpoch: plan.stepsPerEpoch,
    totalSteps: plan.totalSteps,
  };
  return {
    fields,
    bytes: estimate.bytes,
    data: { train: plan.data, test },
    logged: {
      name: plan.spec.name,
      workers: plan.spec.workers,
      totalSteps: plan.totalSteps,
      staleness: stalenessText(plan.spec.staleness),
    },
  };
}

/**
 * A stored network job's estimate, from its record: the test data are taken to be as large as
 * the training data (the record keeps only the latter's rows).
 */
export function networkJobBytes(job: StoredJob): number {
  if (!job.spec) return 0;
  return checkJobLimits(jobSpecFromJson(job.spec), NO_LIMITS, {
    train: job.rows ?? 0,
    test: job.rows ?? 0,
  }).bytes;
}

/** A network model as one .smm file, or as .npy arrays. */
export function networkModelFiles(
  job: StoredJob,
  bytes: Uint8Array,
  npy: boolean,
  kernels: Kernels,
): ModelFile[] {
  return npy
    ? npyFiles(decodeModel(bytes, kernels, `model of job '${job.id}'`).network)
    : [{ file: `${job.spec!.name}.smm`, bytes }];
}

/** The evaluation without figures that are not finite numbers (the bus stores JSON only). */
export function finite(e: Evaluation): Evaluation {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e))
    if (typeof v !== 'number' || Number.isFinite(v)) out[k] = v;
  return out as unknown as Evaluation;
}
