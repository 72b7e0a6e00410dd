// Where a completed job's model lives: its model file (.smm, packages/model/MODEL_FORMAT.md) is
// stored on the bus like a checkpoint, in a slot of the job's checkpoints that no shard uses.
// So it goes with the job (deleteJob removes it) and is chunked on Redis like any checkpoint.
import type { Bus } from '@spinmesh/bus';

/**
 * The checkpoint slot of the model file: far above any shard id (a job has at most 65535
 * shards, and the workers' own slots stay below 2^24).
 */
export const MODEL_SLOT = 2_000_000_000;

/** Stores a job's model file. @returns false if a model of a later step is stored already */
export async function storeModel(
  bus: Bus,
  jobId: string,
  step: number,
  bytes: Uint8Array,
): Promise<boolean> {
  return bus.putCheckpoint(jobId, MODEL_SLOT, step, bytes);
}

/** The job's model file and the step it was trained to, or null before it completes. */
export async function readModel(
  bus: Bus,
  jobId: string,
): Promise<{ step: number; bytes: Uint8Array } | null> {
  const c = await bus.getCheckpoint(jobId, MODEL_SLOT);
  return c ? { step: c.step, bytes: c.data } : null;
}
