// The job kinds both services know, and what each kind's model answers: the shared half of a
// job kind. Each service keeps its own half (the coordinator plans, places and finishes a kind's
// jobs; a worker runs a kind's shard) in a registry keyed by the same names, so that a new kind
// is one line here, a module in each service and one registry line there.
import type { StoredJob } from './job-record.js';

/** The job kinds, by the spec's `rule`: 'boltzmann' (the default), 'hebbian', 'stdp'. */
export const KIND_NAMES = ['boltzmann', 'hebbian', 'stdp'] as const;
export type KindName = (typeof KIND_NAMES)[number];

/** The ModelService operations that read a model (GetModel serves every kind). */
export type ModelOperation = 'sample' | 'complete' | 'evaluate' | 'generate';

/** What both services agree on about one kind. */
export interface JobKindContract {
  readonly name: KindName;
  /** Which model operations its model answers; the others are refused naming these. */
  readonly serves: readonly ModelOperation[];
  /** What its model is, in words (for a request its model cannot answer). */
  readonly model: string;
}

/** The shared half of every kind. */
export const JOB_KINDS: Readonly<Record<KindName, JobKindContract>> = {
  boltzmann: {
    name: 'boltzmann',
    serves: ['sample', 'complete', 'evaluate'],
    model: 'Boltzmann model',
  },
  hebbian: {
    name: 'hebbian',
    serves: ['sample', 'complete', 'evaluate'],
    model: 'Hopfield network',
  },
  stdp: { name: 'stdp', serves: ['generate'], model: 'sequence model' },
};

/**
 * The kind a submitted spec asks for, by its `rule` (absent: 'boltzmann'). A rule no kind has
 * is left to the boltzmann validator, whose error names the field.
 */
export function kindOfSpec(input: unknown): KindName {
  const rule =
    typeof input === 'object' && input !== null ? (input as { rule?: unknown }).rule : undefined;
  return typeof rule === 'string' && (KIND_NAMES as readonly string[]).includes(rule)
    ? (rule as KindName)
    : 'boltzmann';
}

/**
 * The kind of a stored job: a sequence job keeps its spec in `sequence`, the others in `spec`.
 * null when the record has neither (not written by SubmitJob).
 */
export function kindOfRecord(job: StoredJob): KindName | null {
  if (job.sequence !== undefined) return 'stdp';
  if (job.spec === undefined) return null;
  return kindOfSpec(job.spec);
}
