// How a job record is laid out as flat fields (a Redis hash, or the memory bus's map): the bus's
// own fields under their names, each caller field as JSON under `f:<name>`.
import { isJobState } from './states.js';
import type { JobRecord, JobState, JsonValue } from './types.js';

/** Hash field of the caller's job field `name`. */
export function jobField(name: string): string {
  return `f:${name}`;
}

/** The stored form of a job: the bus's fields plus the caller's, as JSON by name. */
export interface StoredJob {
  id: string;
  state: JobState;
  seq: number;
  createdAt: number;
  updatedAt: number;
  /** caller field name -> JSON text */
  fields: Map<string, string>;
}

/** Builds the public record; caller fields come in name order, so both buses agree. */
export function toRecord(job: StoredJob): JobRecord {
  const record: Record<string, JsonValue> = {
    id: job.id,
    state: job.state,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
  };
  const names = [...job.fields.keys()].sort();
  for (const name of names) record[name] = JSON.parse(job.fields.get(name)!) as JsonValue;
  return record as JobRecord;
}

/** Reads a job hash given as HGETALL pairs (flat array) or an object. */
export function fromHash(hash: readonly string[] | Record<string, string>): StoredJob {
  const entries: [string, string][] = [];
  if (Array.isArray(hash)) {
    for (let i = 0; i + 1 < hash.length; i += 2) entries.push([hash[i]!, hash[i + 1]!]);
  } else {
    entries.push(...Object.entries(hash));
  }
  const job: StoredJob = {
    id: '',
    state: 'queued',
    seq: 0,
    createdAt: 0,
    updatedAt: 0,
    fields: new Map(),
  };
  for (const [k, v] of entries) {
    if (k.startsWith('f:')) job.fields.set(k.slice(2), v);
    else if (k === 'id') job.id = v;
    else if (k === 'state') {
      if (!isJobState(v)) throw new Error(`corrupt job record: state '${v}'`);
      job.state = v;
    } else if (k === 'seq') job.seq = Number(v);
    else if (k === 'createdAt') job.createdAt = Number(v);
    else if (k === 'updatedAt') job.updatedAt = Number(v);
  }
  return job;
}

/** Compares stream ids `[ms, seq]`. */
export function compareEventIds(
  a: readonly [number, number],
  b: readonly [number, number],
): number {
  return a[0] !== b[0] ? a[0] - b[0] : a[1] - b[1];
}

/** JSON of the event that the bus appends on creation and on each transition. */
export function stateEventJson(at: number, from: JobState | null, to: JobState): string {
  return JSON.stringify({ type: 'state', at, from, to });
}
