// What the workers leave on the state bus for the coordinator: where a shard's checkpoints and
// its final export live (checkpoint slots), how an export is encoded, which events a worker
// appends, and which step a job can be rolled back to. The workers write and the coordinator
// reads with these same functions, so the two sides cannot drift apart.
import type { Bus, CheckpointInfo } from '@spinmesh/bus';
import type { ParameterBlock, ShardExport } from '@spinmesh/model';

/**
 * A job has at most 65535 shards; shard s keeps its two newest periodic checkpoints in slots s
 * and PREVIOUS_SLOT_BASE + s (which of the two is newer alternates), its final export in
 * EXPORT_SLOT_BASE + s, its newest evaluation snapshot (a checkpoint taken at an evaluation step
 * that is not a checkpoint step) in SNAPSHOT_SLOT_BASE + s, and the checkpoint the coordinator
 * asked for to move the job to another layout (WorkerControl.CheckpointAt) in MOVE_SLOT_BASE + s.
 * All below 2^24, clear of the coordinator's own slots.
 */
export const PREVIOUS_SLOT_BASE = 0x1_0000;
export const EXPORT_SLOT_BASE = 0x2_0000;
export const SNAPSHOT_SLOT_BASE = 0x3_0000;
export const MOVE_SLOT_BASE = 0x4_0000;

/** The two periodic checkpoint slots of a shard. */
export function checkpointSlots(shard: number): [number, number] {
  return [shard, PREVIOUS_SLOT_BASE + shard];
}

/**
 * The slot of a shard's requested checkpoint (for a move). Kept apart from the periodic ones:
 * a step only some shards were asked for (or wrote) must not push out the periodic checkpoint
 * that every shard still holds and a recovery would restore.
 */
export function moveSlot(shard: number): number {
  return MOVE_SLOT_BASE + shard;
}

/**
 * Every slot a shard can be restored from: its periodic checkpoints, then its move checkpoint.
 * A move writes its re-cut checkpoints to the move slots, never at a step a periodic slot also
 * holds (the coordinator asks for a step that is not a multiple of checkpoint_every_steps).
 */
export function restoreSlots(shard: number): [number, number, number] {
  return [shard, PREVIOUS_SLOT_BASE + shard, MOVE_SLOT_BASE + shard];
}

/** The shard whose checkpoint (periodic or move) a slot holds, or -1 for any other slot. */
function restoreShard(slot: number): number {
  if (slot < EXPORT_SLOT_BASE) return slot < PREVIOUS_SLOT_BASE ? slot : slot - PREVIOUS_SLOT_BASE;
  if (slot >= MOVE_SLOT_BASE && slot < MOVE_SLOT_BASE + 0x1_0000) return slot - MOVE_SLOT_BASE;
  return -1;
}

/** The slot of a shard's evaluation snapshot. */
export function snapshotSlot(shard: number): number {
  return SNAPSHOT_SLOT_BASE + shard;
}

/**
 * The steps at which a job is evaluated while it trains: every `every` epochs (as in one
 * process), before the last step (whose evaluation comes from the final exports); 0: none.
 */
export function evaluationEverySteps(every: number, epochs: number, stepsPerEpoch: number): number {
  return every >= epochs ? 0 : every * stepsPerEpoch;
}

/**
 * How often a shard writes an evaluation snapshot: at every evaluation step, unless evaluations
 * come more often than checkpoints, when they are taken from the checkpoints that fall on
 * evaluation steps (a snapshot every few steps would slow every shard down to the
 * coordinator's pace); never in a job without checkpoints (checkpointEvery 0), which asked
 * for no stops (it is evaluated at its end only); 0: never.
 */
export function snapshotEverySteps(evaluationEvery: number, checkpointEvery: number): number {
  return checkpointEvery > 0 && evaluationEvery >= checkpointEvery ? evaluationEvery : 0;
}

/**
 * The next step to evaluate a training job at: the first multiple of `evaluationEvery` after
 * step `after` and before `totalSteps` of which every shard has a checkpoint or a snapshot (of
 * the current run, when the job's last rollback is given); 0 when there is none yet. An
 * evaluation step whose checkpoints and snapshots were all replaced before the coordinator got
 * to them is passed over: evaluations land only on evaluation steps, never between.
 */
export function nextEvaluationStep(
  current: readonly CheckpointInfo[],
  shardCount: number,
  evaluationEvery: number,
  after: number,
  totalSteps: number,
  last?: Rollback,
): number {
  if (evaluationEvery <= 0) return 0;
  const steps = checkpointSteps(current, shardCount, last);
  for (const c of current) {
    const s = c.shardId - SNAPSHOT_SLOT_BASE;
    if (s < 0 || s >= shardCount || c.shardId >= SNAPSHOT_SLOT_BASE + 0x1_0000) continue;
    if (last && !currentRun(c, last)) continue;
    steps[s]!.add(c.step);
  }
  let best = 0;
  for (const t of steps[0] ?? []) {
    if (t <= after || t >= totalSteps || t % evaluationEvery !== 0) continue;
    if ((best === 0 || t < best) && steps.every((x) => x.has(t))) best = t;
  }
  return best;
}

/** The slot of a shard's final export. */
export function exportSlot(shard: number): number {
  return EXPORT_SLOT_BASE + shard;
}

/**
 * The slot to write a checkpoint of `step` to, given the job's current checkpoints: the slot
 * that holds this very step (a rewrite after a rollback replaces it), else the empty one, else
 * the one with the older step. So the two slots always hold the shard's two newest steps.
 */
export function slotFor(shard: number, step: number, current: readonly CheckpointInfo[]): number {
  const [a, b] = checkpointSlots(shard);
  const at = (slot: number): number | undefined => current.find((c) => c.shardId === slot)?.step;
  const sa = at(a);
  const sb = at(b);
  if (sa === step) return a;
  if (sb === step) return b;
  if (sa === undefined) return a;
  if (sb === undefined) return b;
  return sa <= sb ? a : b;
}

/**
 * The job's last rollback: the generation that restored shards from checkpoints of `step`
 * (JobProgress.generation and restoredFromStep; generation 0 or 1 and step 0 before any).
 */
export interface Rollback {
  generation: number;
  step: number;
}

/**
 * Whether a checkpoint belongs to the run that goes on after the job's last rollback: a
 * checkpoint written under an older generation of a later step than the one restored is left
 * from the run that was abandoned (a shard that had got further before the failure), and must
 * not be combined with the new run's checkpoints of the same step.
 */
export function currentRun(c: CheckpointInfo, last: Rollback): boolean {
  return c.generation >= last.generation || c.step <= last.step;
}

/**
 * Per shard 0..shardCount-1, the steps of its checkpoints (from listCheckpoints: periodic and
 * move slots), only those of the current run when the last rollback is given.
 */
export function checkpointSteps(
  current: readonly CheckpointInfo[],
  shardCount: number,
  last?: Rollback,
): Set<number>[] {
  const out = Array.from({ length: shardCount }, () => new Set<number>());
  for (const c of current) {
    const s = restoreShard(c.shardId);
    if (s < 0 || s >= shardCount) continue;
    if (last && !currentRun(c, last)) continue;
    out[s]!.add(c.step);
  }
  return out;
}

/**
 * The newest step every shard has a checkpoint of (of the current run, when the job's last
 * rollback is given): the step to restore a job from after a failure
 * (ShardAssignment.restore_from_step). 0 when there is none (start afresh).
 */
export function commonCheckpointStep(
  current: readonly CheckpointInfo[],
  shardCount: number,
  last?: Rollback,
): number {
  return commonCheckpointSteps(current, shardCount, last)[0] ?? 0;
}

/** Every step that every shard has a checkpoint of (as commonCheckpointStep), newest first. */
export function commonCheckpointSteps(
  current: readonly CheckpointInfo[],
  shardCount: number,
  last?: Rollback,
): number[] {
  const steps = checkpointSteps(current, shardCount, last);
  return [...(steps[0] ?? [])].filter((t) => steps.every((s) => s.has(t))).sort((a, b) => b - a);
}

// --- final exports ------------------------------------------------------------------------------

const EXPORT_MAGIC = 'SMEXPRT1';
const pad8 = (n: number): number => (n + 7) & ~7;

interface BlockHeader {
  name: string;
  rows: [number, number];
  cols: [number, number];
}

/**
 * Encodes a shard's final export (ShardTrainer.exportBlocks()): the magic `SMEXPRT1`, a
 * little-endian uint32 length, a JSON header {format: 1, shard, step, blocks: [{name, rows,
 * cols}]}, then each block's float32 values (little-endian), each 8-byte aligned.
 */
export function encodeShardExport(e: ShardExport): Uint8Array {
  const blocks: BlockHeader[] = e.blocks.map((b) => ({
    name: b.name,
    rows: [b.rows[0], b.rows[1]],
    cols: [b.cols[0], b.cols[1]],
  }));
  const json = new TextEncoder().encode(
    JSON.stringify({ format: 1, shard: e.shard, step: e.step, blocks }),
  );
  let size = pad8(12 + json.length);
  for (const b of e.blocks) size += pad8(b.data.byteLength);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out.set(new TextEncoder().encode(EXPORT_MAGIC), 0);
  view.setUint32(8, json.length, true);
  out.set(json, 12);
  let off = pad8(12 + json.length);
  for (const b of e.blocks) {
    for (let i = 0; i < b.data.length; i++) view.setFloat32(off + 4 * i, b.data[i]!, true);
    off += pad8(b.data.byteLength);
  }
  return out;
}

/** Whether bytes start like an encoded export (and not like a checkpoint). */
export function isShardExport(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && new TextDecoder().decode(bytes.subarray(0, 8)) === EXPORT_MAGIC;
}

/** Decodes what encodeShardExport wrote. @throws Error naming what is wrong */
export function decodeShardExport(bytes: Uint8Array): ShardExport {
  if (!isShardExport(bytes)) throw new Error('shard export: bad magic (not a shard export)');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const len = view.getUint32(8, true);
  if (12 + len > bytes.length) throw new Error('shard export: truncated header');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + len))) as {
    format?: unknown;
    shard?: unknown;
    step?: unknown;
    blocks?: unknown;
  };
  if (header.format !== 1) throw new Error('shard export: unknown format');
  if (!Number.isInteger(header.shard) || !Number.isInteger(header.step))
    throw new Error('shard export: no shard or step');
  if (!Array.isArray(header.blocks)) throw new Error('shard export: no block list');
  let off = pad8(12 + len);
  const blocks: ParameterBlock[] = (header.blocks as BlockHeader[]).map((b) => {
    const n = (b.rows[1] - b.rows[0]) * (b.cols[1] - b.cols[0]);
    if (!(n > 0) || off + 4 * n > bytes.length)
      throw new Error(`shard export: block ${String(b.name)} is truncated`);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = view.getFloat32(off + 4 * i, true);
    off += pad8(4 * n);
    return { name: b.name, rows: b.rows, cols: b.cols, data };
  });
  return { shard: header.shard as number, step: header.step as number, blocks };
}

/**
 * Every shard's final export of a job, or null while some shard has not written one at
 * `step` (the job's total steps). Pass them to @spinmesh/model's assemble().
 */
export async function readShardExports(
  bus: Bus,
  jobId: string,
  shardCount: number,
  step: number,
): Promise<ShardExport[] | null> {
  const out: ShardExport[] = [];
  for (let s = 0; s < shardCount; s++) {
    const c = await bus.getCheckpoint(jobId, exportSlot(s));
    if (c === null || c.step !== step) return null;
    out.push(decodeShardExport(c.data));
  }
  return out;
}

// --- events -----------------------------------------------------------------------------------

/**
 * The `type` of the events a worker appends to its job's stream. Every one carries `worker`,
 * `shard` and `generation`; see README.md for the other fields.
 */
export const ShardEvents = {
  /** Now and then while running: step, totalSteps, checkpointStep, staleness, traffic. */
  progress: 'shard.progress',
  /** A checkpoint was written: step, slot, bytes. */
  checkpoint: 'shard.checkpoint',
  /** Every step done and the final export written: step, slot, bytes. */
  done: 'shard.done',
  /** The shard failed on this worker: error. */
  failed: 'shard.failed',
  /** Stopped (Stop or SIGTERM): step, checkpointStep. */
  stopped: 'shard.stopped',
} as const;
