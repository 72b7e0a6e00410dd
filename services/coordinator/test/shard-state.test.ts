// Which step the coordinator restores a job from (the newest step every shard has checkpointed)
// and which shards it counts as finished, counting after a rollback only what the run that went
// on from it wrote (a shard that had got further before the failure leaves checkpoints, or its
// final export, of the abandoned run behind).
import { describe, expect, it } from 'vitest';
import { MemoryBus } from '@spinmesh/bus';
import { checkpointSlots, exportSlot, type StoredJob } from '@spinmesh/cluster';
import { PortableKernels } from '@spinmesh/kernels';
import { LoopbackCluster, type ShardLayout, evenLayout, rbmSpec, relayout } from '@spinmesh/model';

import { lastRollback } from '../src/records.js';
import { busShardState } from '../src/shard-state.js';

describe('restore step', () => {
  it('leaves out the checkpoints of the run a rollback abandoned', async () => {
    const bus = new MemoryBus();
    try {
      await bus.createJob({ id: 'j' });
      const put = (shard: number, slot: 0 | 1, step: number, generation: number) =>
        bus.putCheckpoint('j', checkpointSlots(shard)[slot], step, new Uint8Array(4), generation);
      // Generation 1: shard 0 wrote 30 and 40, shard 1 only 30 before it died. Generation 2
      // restored both from 30; shard 1 has written 40 again, shard 0 not yet.
      await put(0, 0, 30, 1);
      await put(0, 1, 40, 1);
      await put(1, 0, 30, 1);
      await put(1, 1, 40, 2);
      const job = {
        progress: { generation: 2, restoredFromStep: 30 },
      } as unknown as StoredJob;
      expect(lastRollback(job)).toEqual({ generation: 2, step: 30 });
      expect(await busShardState.restoreStep(bus, 'j', 2, lastRollback(job))).toBe(30);
      // Without the rollback's figures, 40 would pair shard 0's abandoned state with shard 1's.
      expect(await busShardState.restoreStep(bus, 'j', 2)).toBe(40);
      // Once shard 0 has rewritten 40 under generation 2, 40 is the step to restore.
      await put(0, 1, 40, 2);
      expect(await busShardState.restoreStep(bus, 'j', 2, lastRollback(job))).toBe(40);
      // Before the first assignment there is no rollback to respect.
      expect(lastRollback({} as StoredJob)).toBeUndefined();
    } finally {
      await bus.close();
    }
  });

  it('skips a step whose checkpoints a stopped rebalance left in a layout it never recorded', async () => {
    // Real shard checkpoints of steps 2 and 4 of a run in the even layout, and of 4 re-cut.
    const spec = rbmSpec(6, 4);
    const even = evenLayout(spec, 2);
    const moved: ShardLayout = [
      { v: [0, 2], h: [0, 1] },
      { v: [2, 6], h: [1, 4] },
    ];
    const run = new LoopbackCluster({
      network: spec,
      train: { batchSize: 4, negative: 'pcd', chains: 4 },
      layout: even,
      kernels: new PortableKernels(),
      data: { x: new Float32Array(8 * 6).map((_, i) => i % 2), rows: 8 },
      steps: 6,
      checkpointEvery: 2,
    });
    expect(run.run()).toBe('done');
    const old = (step: number, s: number) => run.checkpoints.get(step)!.get(s)!;
    const recut = relayout([old(4, 0), old(4, 1)], moved);
    const bus = new MemoryBus();
    try {
      await bus.createJob({ id: 'j' });
      const put = (shard: number, slot: 0 | 1, step: number, bytes: Uint8Array, gen: number) =>
        bus.putCheckpoint('j', checkpointSlots(shard)[slot], step, bytes, gen);
      await put(0, 1, 2, old(2, 0), 1);
      await put(1, 1, 2, old(2, 1), 1);
      await put(0, 0, 4, old(4, 0), 1);
      await put(1, 0, 4, old(4, 1), 1);
      const last = { generation: 1, step: 0 };
      expect(await busShardState.restoreStep(bus, 'j', 2, last, even)).toBe(4);
      // Stopped after re-cutting shard 0's checkpoint of 4 (under the fence's generation 2),
      // before recording the move: the job's layout is still the even one.
      await put(0, 0, 4, recut[0]!, 2);
      expect(await busShardState.restoreStep(bus, 'j', 2, last)).toBe(4);
      expect(await busShardState.restoreStep(bus, 'j', 2, last, even)).toBe(2);
      // Stopped after re-cutting both: 4 is whole in the new layout only.
      await put(1, 0, 4, recut[1]!, 2);
      expect(await busShardState.restoreStep(bus, 'j', 2, last, even)).toBe(2);
      expect(await busShardState.restoreStep(bus, 'j', 2, last, moved)).toBe(4);
    } finally {
      await bus.close();
    }
  });

  it("counts a shard finished only by its current run's final export", async () => {
    const bus = new MemoryBus();
    try {
      await bus.createJob({ id: 'j' });
      const total = 100;
      // Shard 0 finished under generation 1; shard 1 died before it did, and generation 2
      // restored both from 90: shard 0 trains again, and its first export does not count.
      await bus.putCheckpoint('j', exportSlot(0), total, new Uint8Array(4), 1);
      const last = { generation: 2, step: 90 };
      expect([...(await busShardState.finished(bus, 'j', 2, total, last))]).toEqual([]);
      expect([...(await busShardState.finished(bus, 'j', 2, total))]).toEqual([0]);
      await bus.putCheckpoint('j', exportSlot(1), total, new Uint8Array(4), 2);
      expect([...(await busShardState.finished(bus, 'j', 2, total, last))]).toEqual([1]);
      await bus.putCheckpoint('j', exportSlot(0), total, new Uint8Array(4), 2);
      expect([...(await busShardState.finished(bus, 'j', 2, total, last))]).toEqual([0, 1]);
    } finally {
      await bus.close();
    }
  });
});
