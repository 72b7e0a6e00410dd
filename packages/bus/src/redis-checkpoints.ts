// A shard's checkpoint in Redis: chunks under a fresh version, then a script that swaps the
// shard's pointer to them, so a reader sees a whole checkpoint or the one before.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { CheckpointReadError, JobNotFoundError, StaleWriterError } from './errors.js';
import type { Keys } from './keys.js';
import { asBuffer, exec, runScript, unlinkAll } from './redis-commands.js';
import { ScriptCode } from './scripts.js';
import type { Checkpoint, CheckpointInfo } from './types.js';

/** Attempts of a checkpoint read that a concurrent replacement spoils before giving up. */
const CHECKPOINT_READ_ATTEMPTS = 10;

/** Where checkpoints go: the connection, the key builder and the chunk size. */
export interface CheckpointStore {
  redis: Redis;
  keys: Keys;
  chunkBytes: number;
}

/** Where a shard's current checkpoint lies (JSON in the job's checkpoints hash). */
interface CheckpointPointer {
  version: string;
  step: number;
  chunks: number;
  bytes: number;
  at: number;
  /** The writer's generation (absent in pointers written before it was kept: 0). */
  gen?: number;
}

/** Writes `data` as the shard's checkpoint at `step` (arguments already checked). */
export async function writeCheckpoint(
  store: CheckpointStore,
  jobId: string,
  shardId: number,
  step: number,
  data: Uint8Array,
  generation: number,
): Promise<boolean> {
  const size = store.chunkBytes;
  const version = randomBytes(8).toString('hex');
  const chunks = Math.ceil(data.length / size);
  const chunkKeys = Array.from({ length: chunks }, (_, i) =>
    store.keys.checkpointChunk(jobId, shardId, version, i),
  );
  if (chunks > 0) {
    const bytes = asBuffer(data);
    const pipeline = store.redis.pipeline();
    chunkKeys.forEach((key, i) => pipeline.set(key, bytes.subarray(i * size, (i + 1) * size)));
    await exec(pipeline);
  }
  const pointer: CheckpointPointer = {
    version,
    step,
    chunks,
    bytes: data.length,
    at: Date.now(),
    gen: generation,
  };
  const [code, previous] = (await runScript(
    store.redis,
    'commitCheckpoint',
    [store.keys.job(jobId), store.keys.checkpoints(jobId), store.keys.assignment(jobId)],
    [shardId, step, JSON.stringify(pointer), generation],
  )) as [number, (string | number)?];
  if (code !== ScriptCode.Ok) {
    await unlinkAll(store.redis, chunkKeys);
    if (code === ScriptCode.JobNotFound) throw new JobNotFoundError(jobId);
    if (code === ScriptCode.StaleGeneration)
      throw new StaleWriterError(jobId, shardId, generation, Number(previous));
    return false;
  }
  if (typeof previous === 'string' && previous !== '') {
    const old = JSON.parse(previous) as CheckpointPointer;
    await unlinkAll(
      store.redis,
      Array.from({ length: old.chunks }, (_, i) =>
        store.keys.checkpointChunk(jobId, shardId, old.version, i),
      ),
    );
  }
  return true;
}

/** The shard's current checkpoint, or null (arguments already checked). */
export async function readCheckpoint(
  store: CheckpointStore,
  jobId: string,
  shardId: number,
): Promise<Checkpoint | null> {
  // Chunks of a version never change once written, and go only after the pointer has moved
  // on: if every chunk of the version we read is there, the bytes are that version's, whole.
  for (let attempt = 0; attempt < CHECKPOINT_READ_ATTEMPTS; attempt++) {
    const json = await store.redis.hget(store.keys.checkpoints(jobId), `p:${shardId}`);
    if (json === null) return null;
    const p = JSON.parse(json) as CheckpointPointer;
    const data = new Uint8Array(p.bytes);
    if (p.chunks === 0) return { step: p.step, data };
    const parts = await store.redis.mgetBuffer(
      Array.from({ length: p.chunks }, (_, i) =>
        store.keys.checkpointChunk(jobId, shardId, p.version, i),
      ),
    );
    if (parts.some((part) => part === null)) continue; // replaced meanwhile: read the new one
    let offset = 0;
    for (const part of parts as Buffer[]) {
      if (offset + part.length > p.bytes) break;
      data.set(part, offset);
      offset += part.length;
    }
    if (offset !== p.bytes || parts.reduce((n, b) => n + b!.length, 0) !== p.bytes) {
      throw new Error(
        `corrupt checkpoint of job '${jobId}' shard ${shardId}: chunks hold a different size than ${p.bytes} bytes`,
      );
    }
    return { step: p.step, data };
  }
  throw new CheckpointReadError(jobId, shardId, CHECKPOINT_READ_ATTEMPTS);
}

/** The checkpoints of a job, from its checkpoints hash, by shard. */
export function checkpointInfos(hash: Record<string, string>): CheckpointInfo[] {
  const out: CheckpointInfo[] = [];
  for (const [field, json] of Object.entries(hash)) {
    if (!field.startsWith('p:')) continue;
    const p = JSON.parse(json) as CheckpointPointer;
    out.push({
      shardId: Number(field.slice(2)),
      step: p.step,
      bytes: p.bytes,
      createdAt: p.at,
      generation: p.gen ?? 0,
    });
  }
  return out.sort((a, b) => a.shardId - b.shardId);
}
