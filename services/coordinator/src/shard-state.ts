// How the coordinator reads what the workers leave on the bus: their shard checkpoints (to pick
// the step every shard restarts from after a failure) and their final exports (to assemble the
// model). The layout of those bytes and slots is @spinmesh/cluster's, which the workers write
// with; this file reads it with the same functions, so the two cannot drift apart.
import type { Bus, CheckpointInfo } from '@spinmesh/bus';
import type { Kernels } from '@spinmesh/kernels';
import {
  FormatError,
  ShardTrainer,
  checkpointLayout,
  type Dataset,
  type JobSpec,
  type ShardExport,
  type ShardLayout,
} from '@spinmesh/model';
import {
  restoreSlots,
  commonCheckpointStep,
  commonCheckpointSteps,
  currentRun,
  exportSlot,
  nextEvaluationStep,
  readShardExports,
  snapshotSlot,
  type Rollback,
} from '@spinmesh/cluster';

/** What reading a job's checkpoints as parameters needs to know about it. */
export interface CheckpointContext {
  jobId: string;
  spec: JobSpec;
  layout: ShardLayout;
  totalSteps: number;
  kernels: Kernels;
  /** The training data (a shard trainer is built on it to read its checkpoint). */
  data: Dataset;
}

/** Reads the workers' checkpoints and exports of a job. */
export interface ShardStateReader {
  /**
   * The shards whose final export (at `totalSteps`) is on the bus, written (after the job's last
   * rollback) by the run that went on from it: a shard that finished before a peer failed trains
   * again from the restored step, and its earlier export does not count.
   */
  finished(
    bus: Bus,
    jobId: string,
    shards: number,
    totalSteps: number,
    last?: Rollback,
  ): Promise<Set<number>>;
  /** Every shard's final export, or null while one is missing. @throws Error when unreadable */
  exports(
    bus: Bus,
    jobId: string,
    shards: number,
    totalSteps: number,
  ): Promise<ShardExport[] | null>;
  /**
   * The newest step of which every shard has a checkpoint on the bus (the consistency rule of
   * packages/model/SHARDING.md: recovery restores every shard from that one step), counting
   * after the job's last rollback only the checkpoints of the run that went on from it; 0 when
   * there is none, so the job starts again from its initial parameters. Given the layout the
   * shards will run, only a step whose checkpoints were all written under it: a coordinator
   * stopped while it re-cut a step's checkpoints for a rebalance it never recorded leaves that
   * step in another layout (or in two), and the step before it is still whole.
   */
  restoreStep(
    bus: Bus,
    jobId: string,
    shards: number,
    last?: Rollback,
    layout?: ShardLayout,
  ): Promise<number>;
  /**
   * The next step to evaluate a training job at: the first multiple of `every` steps after
   * `after` and before `totalSteps` of which every shard has a checkpoint or an evaluation
   * snapshot on the bus (of the current run); 0 when there is none yet.
   */
  evaluationStep(
    bus: Bus,
    jobId: string,
    shards: number,
    steps: { every: number; after: number; total: number },
    last?: Rollback,
  ): Promise<number>;
  /**
   * Every shard's owned parameters at checkpoint (or evaluation snapshot) step `step`, for
   * evaluating a job while it trains; null when some shard has none of that step (any more).
   * @throws SpecError or FormatError when a checkpoint does not fit the job
   */
  checkpointExports(bus: Bus, ctx: CheckpointContext, step: number): Promise<ShardExport[] | null>;
}

/** The reader for the workers of services/worker. */
export const busShardState: ShardStateReader = {
  async finished(bus, jobId, shards, totalSteps, last) {
    const list = await bus.listCheckpoints(jobId);
    const out = new Set<number>();
    for (let s = 0; s < shards; s++) {
      const slot = exportSlot(s);
      const done = (c: CheckpointInfo): boolean =>
        c.shardId === slot && c.step === totalSteps && (!last || currentRun(c, last));
      if (list.some(done)) out.add(s);
    }
    return out;
  },

  exports(bus, jobId, shards, totalSteps) {
    return readShardExports(bus, jobId, shards, totalSteps);
  },

  async restoreStep(bus, jobId, shards, last, layout) {
    const list = await bus.listCheckpoints(jobId);
    if (!layout) return commonCheckpointStep(list, shards, last);
    for (const step of commonCheckpointSteps(list, shards, last))
      if (await allOfLayout(bus, jobId, list, step, layout, last)) return step;
    return 0;
  },

  async evaluationStep(bus, jobId, shards, steps, last) {
    const list = await bus.listCheckpoints(jobId);
    return nextEvaluationStep(list, shards, steps.every, steps.after, steps.total, last);
  },

  async checkpointExports(bus, ctx, step) {
    const out: ShardExport[] = [];
    for (let s = 0; s < ctx.layout.length; s++) {
      let bytes: Uint8Array | null = null;
      for (const slot of [...restoreSlots(s), snapshotSlot(s)]) {
        const c = await bus.getCheckpoint(ctx.jobId, slot);
        if (c !== null && c.step === step) bytes = c.data;
      }
      if (bytes === null) return null;
      // A shard trainer of the same job reads its own checkpoint format (a restore replaces
      // every parameter it was built with).
      const trainer = new ShardTrainer({
        network: ctx.spec.network,
        train: { statistics: 'samples', ...ctx.spec.train },
        // the layout it was written under: a rebalance may have changed the job's since
        layout: checkpointLayout(bytes),
        shard: s,
        kernels: ctx.kernels,
        data: { x: ctx.data.x, rows: ctx.data.rows },
        steps: ctx.totalSteps,
      });
      trainer.restore(bytes);
      out.push(trainer.exportBlocks());
    }
    return out;
  },
};

/** Whether every shard's checkpoint of `step` (of the current run) was written under `layout`. */
async function allOfLayout(
  bus: Bus,
  jobId: string,
  list: readonly CheckpointInfo[],
  step: number,
  layout: ShardLayout,
  last?: Rollback,
): Promise<boolean> {
  for (let s = 0; s < layout.length; s++) {
    const slot = restoreSlots(s).find((x) =>
      list.some((c) => c.shardId === x && c.step === step && (!last || currentRun(c, last))),
    );
    const c = slot === undefined ? null : await bus.getCheckpoint(jobId, slot);
    if (c === null || c.step !== step) return false;
    try {
      if (!sameLayout(checkpointLayout(c.data), layout)) return false;
    } catch (err) {
      if (err instanceof FormatError) return false;
      throw err;
    }
  }
  return true;
}

/** Whether two layouts give every shard the same units of every layer. */
function sameLayout(a: ShardLayout, b: ShardLayout): boolean {
  return (
    Array.isArray(a) &&
    a.length === b.length &&
    b.every((units, s) => {
      const other = a[s] as Record<string, unknown> | undefined;
      const names = Object.keys(units);
      return (
        other !== undefined &&
        Object.keys(other).length === names.length &&
        names.every((n) => {
          const r = other[n];
          return Array.isArray(r) && r[0] === units[n]![0] && r[1] === units[n]![1];
        })
      );
    })
  );
}
