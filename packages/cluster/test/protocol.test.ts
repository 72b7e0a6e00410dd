// The bus protocol workers and the coordinator share: checkpoint slots, the common step,
// evaluation steps, export encoding.
import { describe, expect, it } from 'vitest';
import type { CheckpointInfo } from '@spinmesh/bus';

import {
  EXPORT_SLOT_BASE,
  PREVIOUS_SLOT_BASE,
  SNAPSHOT_SLOT_BASE,
  MOVE_SLOT_BASE,
  moveSlot,
  restoreSlots,
  commonCheckpointSteps,
  checkpointSlots,
  checkpointSteps,
  commonCheckpointStep,
  currentRun,
  decodeShardExport,
  encodeShardExport,
  evaluationEverySteps,
  isShardExport,
  nextEvaluationStep,
  slotFor,
  snapshotEverySteps,
  snapshotSlot,
} from '../src/index.js';

describe('bus protocol', () => {
  const info = (shardId: number, step: number, generation = 1): CheckpointInfo => ({
    shardId,
    step,
    bytes: 1,
    createdAt: 1,
    generation,
  });

  it('keeps the two newest checkpoints of a shard in its two slots', () => {
    expect(checkpointSlots(3)).toEqual([3, PREVIOUS_SLOT_BASE + 3]);
    const list: CheckpointInfo[] = [];
    const write = (shard: number, step: number): number => {
      const slot = slotFor(shard, step, list);
      const i = list.findIndex((c) => c.shardId === slot);
      if (i >= 0) list.splice(i, 1);
      list.push(info(slot, step));
      return slot;
    };
    expect(write(1, 10)).toBe(1);
    expect(write(1, 20)).toBe(PREVIOUS_SLOT_BASE + 1);
    expect(write(1, 30)).toBe(1); // replaces 10
    expect(write(1, 40)).toBe(PREVIOUS_SLOT_BASE + 1); // replaces 20
    // After a rollback to 30, rewriting 40 replaces the old 40, not 30.
    expect(write(1, 40)).toBe(PREVIOUS_SLOT_BASE + 1);
    expect(list.map((c) => c.step).sort()).toEqual([30, 40]);
  });

  it('finds the newest step every shard has a checkpoint of', () => {
    const P = PREVIOUS_SLOT_BASE;
    expect(commonCheckpointStep([], 2)).toBe(0);
    // shard 0 is one interval ahead of shard 1, which died before writing 40
    const list = [info(0, 40), info(P, 30), info(1, 20), info(P + 1, 30)];
    expect(commonCheckpointStep(list, 2)).toBe(30);
    // a shard without any checkpoint: start again from 0
    expect(commonCheckpointStep(list, 3)).toBe(0);
    // exports and other slots do not count
    expect(
      commonCheckpointStep([...list, info(EXPORT_SLOT_BASE, 90), info(2_000_000_000, 90)], 2),
    ).toBe(30);
  });

  it("counts a move's checkpoints, which never push out a periodic one", () => {
    const P = PREVIOUS_SLOT_BASE;
    expect(moveSlot(3)).toBe(MOVE_SLOT_BASE + 3);
    expect(restoreSlots(3)).toEqual([3, P + 3, MOVE_SLOT_BASE + 3]);
    // Both shards hold 20 and 40; asked for 47, only shard 0 wrote it (shard 1 was past it):
    // 40 stays the newest common step, and shard 0's next periodic write does not touch 47.
    const list = [info(0, 40), info(P, 20), info(1, 20), info(P + 1, 40), info(MOVE_SLOT_BASE, 47)];
    expect(commonCheckpointStep(list, 2)).toBe(40);
    expect(slotFor(0, 60, list)).toBe(P);
    // once every shard has it, a move's step is common (the step a move restores)
    const both = [...list, info(MOVE_SLOT_BASE + 1, 47)];
    expect(commonCheckpointSteps(both, 2)).toEqual([47, 40, 20]);
    // a move slot past the shard count, or past the move slots, is no shard's
    expect(commonCheckpointStep([...both, info(MOVE_SLOT_BASE + 0x1_0000, 90)], 2)).toBe(47);
    expect(checkpointSteps(both, 1).map((s) => [...s].sort())).toEqual([[20, 40, 47]]);
  });

  it('after a rollback, leaves out the checkpoints of the abandoned run', () => {
    const P = PREVIOUS_SLOT_BASE;
    // Generation 1 ran until shard 0 had written 40 and shard 1 only 30 (then shard 1 died):
    // generation 2 restored both from 30. Shard 1, faster now, has written 40 of generation 2;
    // shard 0 has not yet, and still holds its 40 of generation 1. Shard 1 dies again.
    const list = [info(0, 40, 1), info(P, 30, 1), info(1, 40, 2), info(P + 1, 30, 1)];
    // Without the rollback, both shards "have" 40: a mix of two runs' states.
    expect(commonCheckpointStep(list, 2)).toBe(40);
    const last = { generation: 2, step: 30 };
    expect(commonCheckpointStep(list, 2, last)).toBe(30);
    expect(checkpointSteps(list, 2, last).map((s) => [...s].sort())).toEqual([[30], [30, 40]]);
    // Once shard 0 has rewritten 40 under generation 2, 40 is common again.
    const rewritten = [info(0, 40, 2), info(P, 30, 1), info(1, 40, 2), info(P + 1, 30, 1)];
    expect(commonCheckpointStep(rewritten, 2, last)).toBe(40);
    // Checkpoints of the restored step and before it stay, whatever wrote them.
    expect(currentRun(info(0, 30, 1), last)).toBe(true);
    expect(currentRun(info(0, 20, 0), last)).toBe(true);
    expect(currentRun(info(0, 50, 3), last)).toBe(true);
    expect(currentRun(info(0, 31, 1), last)).toBe(false);
  });

  it('evaluates at multiples of evaluate.every only, from snapshots or checkpoints', () => {
    const P = PREVIOUS_SLOT_BASE;
    expect(snapshotSlot(2)).toBe(SNAPSHOT_SLOT_BASE + 2);
    // every 25 epochs of 3 steps; none while training when every >= epochs
    expect(evaluationEverySteps(25, 100, 3)).toBe(75);
    expect(evaluationEverySteps(100, 100, 3)).toBe(0);
    // snapshots at every evaluation step, unless evaluations come more often than checkpoints,
    // or the job has none
    expect(snapshotEverySteps(75, 50)).toBe(75);
    expect(snapshotEverySteps(75, 75)).toBe(75);
    expect(snapshotEverySteps(75, 0)).toBe(0);
    expect(snapshotEverySteps(20, 50)).toBe(0);
    expect(snapshotEverySteps(0, 50)).toBe(0);
    // Checkpoints every 100, evaluations every 250 of 1000 steps: shard 0 has its snapshot of
    // 250, shard 1 not yet; the newest common checkpoint (300) is not an evaluation step.
    const list = [
      info(0, 300),
      info(P, 200),
      info(SNAPSHOT_SLOT_BASE, 250),
      info(1, 300),
      info(P + 1, 200),
    ];
    expect(nextEvaluationStep(list, 2, 250, 0, 1000)).toBe(0);
    list.push(info(SNAPSHOT_SLOT_BASE + 1, 250));
    expect(nextEvaluationStep(list, 2, 250, 0, 1000)).toBe(250);
    expect(nextEvaluationStep(list, 2, 250, 250, 1000)).toBe(0);
    // a checkpoint of an evaluation step counts as well; the oldest pending step comes first
    expect(nextEvaluationStep(list, 2, 100, 0, 1000)).toBe(200);
    expect(nextEvaluationStep(list, 2, 100, 200, 1000)).toBe(300);
    // the last step is evaluated from the exports, not here
    expect(nextEvaluationStep(list, 2, 100, 200, 300)).toBe(0);
    // a snapshot left by a run that a rollback to 200 abandoned does not count
    const last = { generation: 2, step: 200 };
    expect(nextEvaluationStep(list, 2, 250, 0, 1000, last)).toBe(0);
  });

  it('encodes a shard export and decodes it exactly', () => {
    const e = {
      shard: 2,
      step: 120,
      blocks: [
        {
          name: 'v.bias',
          rows: [0, 1] as const,
          cols: [3, 8] as const,
          data: Float32Array.from([1, -2.5, 3e-8, -0, 7]),
        },
        {
          name: 'v-h.weights',
          rows: [3, 5] as const,
          cols: [0, 3] as const,
          data: Float32Array.from([0.1, 0.2, 0.3, -0.4, Number.MIN_VALUE, 6]),
        },
      ],
    };
    const bytes = encodeShardExport(e);
    expect(isShardExport(bytes)).toBe(true);
    expect(isShardExport(new TextEncoder().encode('SMSHARD1xxxxxxxx'))).toBe(false);
    const back = decodeShardExport(bytes.slice());
    expect(back.shard).toBe(2);
    expect(back.step).toBe(120);
    expect(back.blocks.map((b) => [b.name, b.rows, b.cols])).toEqual(
      e.blocks.map((b) => [b.name, [...b.rows], [...b.cols]]),
    );
    back.blocks.forEach((b, i) => {
      expect(
        Buffer.compare(Buffer.from(b.data.buffer), Buffer.from(e.blocks[i]!.data.buffer)),
      ).toBe(0);
    });
    expect(() => decodeShardExport(bytes.subarray(0, 40))).toThrow(/truncated/);
  });
});
