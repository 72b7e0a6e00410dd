// The one place where Redis key names are made. Every key lies under `${prefix}:`; every key of a
// job lies under `${prefix}:job:${jobId}:`, so deleting a job is one SCAN of that pattern.
//
//   {p}:workers                          set: ids of registered workers (pruned lazily)
//   {p}:worker:{workerId}                string: WorkerInfo JSON, with a TTL (PX) = liveness
//   {p}:jobs                             zset: job ids scored by creation sequence
//   {p}:jobs:seq                         string: the creation sequence counter
//   {p}:job:{id}:record                  hash: the job record
//   {p}:job:{id}:events                  stream: the job's events, one field `e` of JSON
//   {p}:job:{id}:assignment              hash: generation, and per shard its worker and units
//   {p}:job:{id}:spins:{shard}           hash: step, data (latest spin snapshot)
//   {p}:job:{id}:checkpoints             hash: shard -> JSON pointer to its current checkpoint
//   {p}:job:{id}:ckpt:{shard}:{ver}:{i}  string: chunk i of checkpoint version ver
import { InvalidArgumentError } from './errors.js';

/** Ids of jobs and workers: safe in keys and in SCAN patterns (no `:`, no glob characters). */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Key prefixes: like ids, at most 64 characters, no `:` (the bus adds it). */
export const PREFIX_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** The key builder of one bus prefix. */
export class Keys {
  constructor(readonly prefix: string) {
    if (!PREFIX_PATTERN.test(prefix)) {
      throw new InvalidArgumentError(
        'prefix',
        `must be 1-64 characters of [A-Za-z0-9._-] starting with a letter or digit (got '${prefix}')`,
      );
    }
  }

  /** SCAN pattern of every key of this prefix. */
  all(): string {
    return `${this.prefix}:*`;
  }

  workers(): string {
    return `${this.prefix}:workers`;
  }

  worker(workerId: string): string {
    return `${this.prefix}:worker:${workerId}`;
  }

  jobs(): string {
    return `${this.prefix}:jobs`;
  }

  jobSeq(): string {
    return `${this.prefix}:jobs:seq`;
  }

  /** SCAN pattern of every key that belongs to one job. */
  jobAll(jobId: string): string {
    return `${this.prefix}:job:${jobId}:*`;
  }

  job(jobId: string): string {
    return `${this.prefix}:job:${jobId}:record`;
  }

  events(jobId: string): string {
    return `${this.prefix}:job:${jobId}:events`;
  }

  assignment(jobId: string): string {
    return `${this.prefix}:job:${jobId}:assignment`;
  }

  spins(jobId: string, shardId: number): string {
    return `${this.prefix}:job:${jobId}:spins:${shardId}`;
  }

  checkpoints(jobId: string): string {
    return `${this.prefix}:job:${jobId}:checkpoints`;
  }

  checkpointChunk(jobId: string, shardId: number, version: string, index: number): string {
    return `${this.prefix}:job:${jobId}:ckpt:${shardId}:${version}:${index}`;
  }
}
