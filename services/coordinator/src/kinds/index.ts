// The coordinator's job kinds. A new kind: its module here, one line in `kinds`, and its shared
// half in @spinmesh/cluster's JOB_KINDS.
import { validateJobSpec, type Dataset, type JobRule } from '@spinmesh/model';
import { kindOfRecord, kindOfSpec, type KindName, type StoredJob } from '@spinmesh/cluster';

import { boltzmann } from './boltzmann.js';
import { hebbian } from './hebbian.js';
import type { CoordinatorKind } from './kind.js';
import type { NetworkKind } from './network-job.js';
import { stdp } from './stdp.js';
import { loadUnconfined, type DataLoader, type JobPlan } from '../plan.js';

export const kinds: Readonly<Record<KindName, CoordinatorKind>> = { boltzmann, hebbian, stdp };

/** The kind of a submitted spec (by its rule). */
export function kindOfInput(input: unknown): CoordinatorKind {
  return kinds[kindOfSpec(input)];
}

/**
 * The kind of a stored job. A record with neither spec nor sequence (refused before it starts,
 * see record-shape.ts) is read as the default kind's.
 */
export function kindOf(job: StoredJob): CoordinatorKind {
  return kinds[kindOfRecord(job) ?? 'boltzmann'];
}

/** The kinds whose spec is a JobSpec, by its rule. */
const networkKinds: Readonly<Record<JobRule, NetworkKind>> = { boltzmann, hebbian };

/**
 * Validates a network spec (rule 'boltzmann' or 'hebbian') for the cluster and plans it as its
 * kind does, its data loaded (unconfined by default: for a caller reading its own user's files).
 * @throws SpecError naming the field
 */
export async function planJob(
  input: unknown,
  load: DataLoader = loadUnconfined,
): Promise<JobPlan & { data: Dataset }> {
  const spec = validateJobSpec(input);
  return networkKinds[spec.rule].planNetwork(spec, load);
}

export type {
  CoordinatorKind,
  LocalTraining,
  ModelFile,
  PlannedJob,
  ShardedTraining,
} from './kind.js';
