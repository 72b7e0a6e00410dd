// What a queued job record must hold before the control loop tries to start it. Every record
// SubmitJob writes has it; one that lacks it came from elsewhere (a caller of the bus with the
// cluster secret, another version) and is failed rather than left at the head of the queue.
import type { StoredJob } from '@spinmesh/cluster';

/** Most shards a record may ask for: the spec validator's own bound on `workers`. */
const MAX_SHARDS = 0xffff;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

const isCount = (v: unknown, min: number): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= min;

const isAmount = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** Why the record cannot be started, naming the field; null when its shape is sound. */
export function recordProblem(job: StoredJob): string | null {
  const spec: unknown = job.spec;
  const sequence: unknown = job.sequence;
  if (!isObject(spec) && !isObject(sequence)) return 'has neither spec nor sequence';
  if (isObject(spec) && !isObject(spec['network'])) return 'spec.network is not an object';
  if (!isCount(job.workers, 1) || job.workers > MAX_SHARDS)
    return `workers is not an integer from 1 to ${MAX_SHARDS}`;
  const layout: unknown = job.layout;
  if (!Array.isArray(layout) || layout.length !== job.workers || !layout.every(isObject))
    return 'layout is not one object per shard';
  if (!isAmount(job.totalSteps)) return 'totalSteps is not a number >= 0';
  if (!isAmount(job.stepsPerEpoch)) return 'stepsPerEpoch is not a number >= 0';
  return null;
}
