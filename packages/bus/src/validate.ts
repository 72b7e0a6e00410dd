// Argument checks shared by both bus implementations, so that they accept and refuse exactly the
// same inputs. Each failure is an InvalidArgumentError naming the field.
import { InvalidArgumentError } from './errors.js';
import { ID_PATTERN } from './keys.js';
import { checkTransition, isJobState } from './states.js';
import type {
  Assignment,
  JobPatch,
  JobState,
  JsonValue,
  NewJob,
  NewJobEvent,
  WorkerInfo,
} from './types.js';

/** Fields of a job record that belong to the bus. */
export const RESERVED_JOB_FIELDS: readonly string[] = ['id', 'state', 'createdAt', 'updatedAt'];

export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;
export const DEFAULT_EVENT_COUNT = 100;
export const MAX_EVENT_COUNT = 10_000;

const EVENT_ID = /^(\d{1,16})-(\d{1,16})$/;

export function checkId(field: string, value: unknown): string {
  if (typeof value !== 'string' || !ID_PATTERN.test(value)) {
    throw new InvalidArgumentError(
      field,
      `must be 1-128 characters of [A-Za-z0-9._-] starting with a letter or digit (got ${show(value)})`,
    );
  }
  return value;
}

export function checkNonNegativeInt(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidArgumentError(field, `must be a non-negative integer (got ${show(value)})`);
  }
  return value;
}

export function checkPositiveInt(
  field: string,
  value: unknown,
  max = Number.MAX_SAFE_INTEGER,
): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw new InvalidArgumentError(
      field,
      `must be an integer from 1 to ${max} (got ${show(value)})`,
    );
  }
  return value;
}

export function checkState(field: string, value: unknown): JobState {
  if (!isJobState(value)) {
    throw new InvalidArgumentError(
      field,
      `must be one of queued, running, completed, failed, cancelled (got ${show(value)})`,
    );
  }
  return value;
}

export function checkBytes(field: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new InvalidArgumentError(field, 'must be a Uint8Array');
  }
  return value;
}

/** Checks that `value` is plain JSON (finite numbers, no undefined, no class instances). */
export function checkJson(field: string, value: unknown): JsonValue {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      if (!Number.isFinite(value)) {
        throw new InvalidArgumentError(field, `must be a finite number (got ${value})`);
      }
      return value;
    case 'object': {
      if (value === null) return null;
      if (Array.isArray(value)) {
        value.forEach((v, i) => checkJson(`${field}[${i}]`, v));
        return value as JsonValue[];
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) {
        throw new InvalidArgumentError(field, 'must be a plain JSON object');
      }
      for (const [k, v] of Object.entries(value)) checkJson(`${field}.${k}`, v);
      return value as JsonValue;
    }
    default:
      throw new InvalidArgumentError(field, `must be a JSON value (got ${typeof value})`);
  }
}

/** Checks and serialises one JSON value. */
export function encodeJson(field: string, value: unknown): string {
  return JSON.stringify(checkJson(field, value));
}

function checkPlainObject(field: string, value: unknown): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(field, 'must be an object');
  }
  return value as Record<string, unknown>;
}

/** Checks a worker's announcement and returns its JSON. */
export function encodeWorkerInfo(info: WorkerInfo): string {
  checkPlainObject('info', info);
  checkId('info.id', info.id);
  if (
    typeof info.address !== 'string' ||
    !/^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):\d{1,5}$/.test(info.address)
  ) {
    throw new InvalidArgumentError('info.address', `must be host:port (got ${show(info.address)})`);
  }
  checkPositiveInt('info.cores', info.cores);
  if (typeof info.startedAt !== 'number' || !Number.isFinite(info.startedAt)) {
    throw new InvalidArgumentError('info.startedAt', 'must be a time in ms since the epoch');
  }
  checkPlainObject('info.meta', info.meta);
  checkJson('info.meta', info.meta);
  const { id, address, cores, startedAt, meta } = info;
  return JSON.stringify({ id, address, cores, startedAt, meta });
}

/** Checks a new job and returns its fields as [name, JSON] pairs (null fields left out). */
export function encodeNewJob(job: NewJob): { id: string; fields: [string, string][] } {
  checkPlainObject('job', job);
  const id = checkId('job.id', job.id);
  const fields: [string, string][] = [];
  for (const [name, value] of Object.entries(job)) {
    if (name === 'id') continue;
    if (RESERVED_JOB_FIELDS.includes(name)) {
      throw new InvalidArgumentError(`job.${name}`, 'is set by the bus and cannot be given');
    }
    if (name.length === 0) throw new InvalidArgumentError('job', 'has a field with an empty name');
    if (value === null) continue;
    fields.push([name, encodeJson(`job.${name}`, value)]);
  }
  return { id, fields };
}

/** Checks a merge patch and splits it into fields to set ([name, JSON]) and fields to remove. */
export function encodePatch(patch: JobPatch | undefined): {
  set: [string, string][];
  del: string[];
} {
  const set: [string, string][] = [];
  const del: string[] = [];
  if (patch === undefined) return { set, del };
  checkPlainObject('patch', patch);
  for (const [name, value] of Object.entries(patch)) {
    if (RESERVED_JOB_FIELDS.includes(name)) {
      throw new InvalidArgumentError(`patch.${name}`, 'is set by the bus and cannot be patched');
    }
    if (name.length === 0)
      throw new InvalidArgumentError('patch', 'has a field with an empty name');
    if (value === null) del.push(name);
    else set.push([name, encodeJson(`patch.${name}`, value)]);
  }
  return { set, del };
}

/** Checks an assignment: integer generation, unique shard ids, valid worker ids and ranges. */
export function checkAssignment(assignment: Assignment): void {
  checkPlainObject('assignment', assignment);
  checkNonNegativeInt('assignment.generation', assignment.generation);
  if (!Array.isArray(assignment.shards)) {
    throw new InvalidArgumentError('assignment.shards', 'must be an array');
  }
  const seen = new Set<number>();
  assignment.shards.forEach((shard, i) => {
    const f = `assignment.shards[${i}]`;
    checkPlainObject(f, shard);
    checkNonNegativeInt(`${f}.shardId`, shard.shardId);
    if (seen.has(shard.shardId)) {
      throw new InvalidArgumentError(`${f}.shardId`, `repeats shard ${shard.shardId}`);
    }
    seen.add(shard.shardId);
    checkId(`${f}.workerId`, shard.workerId);
    if (!Array.isArray(shard.units))
      throw new InvalidArgumentError(`${f}.units`, 'must be an array');
    shard.units.forEach((u, j) => {
      const g = `${f}.units[${j}]`;
      checkPlainObject(g, u);
      checkNonNegativeInt(`${g}.layer`, u.layer);
      checkNonNegativeInt(`${g}.start`, u.start);
      checkNonNegativeInt(`${g}.end`, u.end);
      if (u.end <= u.start) {
        throw new InvalidArgumentError(`${g}.end`, `must be > start (${u.start}), got ${u.end}`);
      }
    });
  });
}

/** The JSON of a shard's units, as stored (only the three fields, in a fixed order). */
export function encodeUnits(shard: Assignment['shards'][number]): string {
  return JSON.stringify(shard.units.map(({ layer, start, end }) => ({ layer, start, end })));
}

/** Checks an event and returns its JSON. */
export function encodeEvent(event: NewJobEvent): string {
  checkPlainObject('event', event);
  if (typeof event.type !== 'string' || event.type.length === 0) {
    throw new InvalidArgumentError('event.type', 'must be a non-empty string');
  }
  if (typeof event.at !== 'number' || !Number.isFinite(event.at)) {
    throw new InvalidArgumentError('event.at', 'must be a time in ms since the epoch');
  }
  return encodeJson('event', event);
}

/** Parses a stream id `<ms>-<seq>`. */
export function parseEventId(field: string, id: unknown): [number, number] {
  const m = typeof id === 'string' ? EVENT_ID.exec(id) : null;
  const ms = m ? Number(m[1]) : NaN;
  const seq = m ? Number(m[2]) : NaN;
  if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(seq)) {
    throw new InvalidArgumentError(
      field,
      `must be an event id like '1700000000000-0' (got ${show(id)})`,
    );
  }
  return [ms, seq];
}

/** Checks `listJobs` options; returns the page size and the creation sequence to start after. */
export function checkListJobs(opts: { state?: JobState; pageSize?: number; pageToken?: string }): {
  state: JobState | undefined;
  pageSize: number;
  afterSeq: number;
} {
  const state = opts.state === undefined ? undefined : checkState('state', opts.state);
  const pageSize =
    opts.pageSize === undefined
      ? DEFAULT_PAGE_SIZE
      : checkPositiveInt('pageSize', opts.pageSize, MAX_PAGE_SIZE);
  let afterSeq = 0;
  if (opts.pageToken !== undefined && opts.pageToken !== '') {
    const m = /^j(\d{1,15})$/.exec(opts.pageToken);
    if (!m) throw new InvalidArgumentError('pageToken', 'is not a token that listJobs returned');
    afterSeq = Number(m[1]);
  }
  return { state, pageSize, afterSeq };
}

/** The page token that continues after the job with creation sequence `seq`. */
export function pageToken(seq: number): string {
  return `j${seq}`;
}

/** Checks `readEvents` options. */
export function checkReadEvents(opts: { after?: string; count?: number; blockMs?: number }): {
  after: [number, number];
  afterId: string;
  count: number;
  blockMs: number;
} {
  const after: [number, number] =
    opts.after === undefined ? [0, 0] : parseEventId('after', opts.after);
  const count =
    opts.count === undefined
      ? DEFAULT_EVENT_COUNT
      : checkPositiveInt('count', opts.count, MAX_EVENT_COUNT);
  const blockMs = opts.blockMs === undefined ? 0 : checkNonNegativeInt('blockMs', opts.blockMs);
  return { after, afterId: `${after[0]}-${after[1]}`, count, blockMs };
}

/** Checks the `maxLen` of an append; 0 when absent (no trimming of its own). */
export function checkMaxLen(field: string, value: number | undefined): number {
  return value === undefined ? 0 : checkPositiveInt(field, value);
}

/** Checks the arguments of `transitionJob`; returns the allowed source states. */
export function checkTransitionArgs(
  jobId: string,
  allowedFrom: readonly JobState[],
  to: JobState,
): JobState[] {
  checkId('jobId', jobId);
  if (!Array.isArray(allowedFrom) || allowedFrom.length === 0) {
    throw new InvalidArgumentError('allowedFrom', 'must list at least one state');
  }
  const from = allowedFrom.map((s, i) => checkState(`allowedFrom[${i}]`, s));
  checkState('to', to);
  checkTransition(jobId, from, to);
  return from;
}

/** Checks the arguments of `reassignShard`. */
export function checkReassignArgs(
  jobId: string,
  shardId: number,
  fromWorker: string,
  toWorker: string,
): void {
  checkShardArgs(jobId, shardId);
  checkId('fromWorker', fromWorker);
  checkId('toWorker', toWorker);
  if (fromWorker === toWorker) {
    throw new InvalidArgumentError('toWorker', `must differ from fromWorker ('${fromWorker}')`);
  }
}

/** Checks a job id and a shard id. */
export function checkShardArgs(jobId: string, shardId: number): void {
  checkId('jobId', jobId);
  checkNonNegativeInt('shardId', shardId);
}

function show(v: unknown): string {
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '...' : v}'`;
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) {
    return String(v);
  }
  return typeof v;
}
