// What planning a submitted spec needs whatever its kind: parsing its text (YAML or JSON),
// loading the data it names, and the plan's shape. Each kind plans its own (kinds/).
import { parse as parseYaml } from 'yaml';
import { checkSpecValue } from './spec-text.js';
import {
  SpecError,
  loadData,
  quote,
  unconfinedAccess,
  type DataSpec,
  type Dataset,
  type JobSpec,
  type ShardLayout,
} from '@spinmesh/model';

/** Loads the data set a spec's `field` names (a service: confined to its data roots). */
export type DataLoader = (d: DataSpec, seed: number, field: string) => Promise<Dataset>;

/** Any path, relative to the current directory: for a caller reading its own user's files. */
export const loadUnconfined: DataLoader = (d, seed, field) =>
  loadData(d, seed, unconfinedAccess(), field);

/** A validated job, ready to be stored and scheduled. */
export interface JobPlan {
  /** The spec with every default the cluster relies on filled in (`train.statistics`). */
  spec: JobSpec;
  /** Shard s owns layout[s]: per layer name, the unit range [start, end). */
  layout: ShardLayout;
  /** Rows of the training data. */
  rows: number;
  /** Updates per epoch: ceil(rows / batchSize). */
  stepsPerEpoch: number;
  /** Updates of the whole job: epochs x stepsPerEpoch. */
  totalSteps: number;
}

/** Parses spec text: YAML or JSON (JSON is YAML). @throws SpecError naming `spec` */
export function parseSpecText(text: string): unknown {
  if (text.trim() === '')
    throw new SpecError('spec', 'is empty (send the job spec as YAML or JSON)');
  let value: unknown;
  try {
    value = parseYaml(text) as unknown;
  } catch (e) {
    throw new SpecError(
      'spec',
      `is not valid YAML or JSON: ${quote((e as Error).message.split('\n')[0], 200)}`,
    );
  }
  checkSpecValue(value, 'spec');
  return value;
}

/** Loads a data set a spec names; a failure that is not a SpecError is one naming `field`. */
export async function loadOrExplain(
  load: DataLoader,
  d: JobSpec['data'],
  seed: number,
  field: string,
): Promise<Dataset> {
  try {
    return await load(d, seed, field);
  } catch (e) {
    if (e instanceof SpecError) throw e;
    throw new SpecError(field, `cannot be loaded: ${(e as Error).message}`);
  }
}
