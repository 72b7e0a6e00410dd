// Checkpoints and recovery: every shard checkpoints at the same step multiples; after a shard
// dies, every shard rolls back to the latest step all have checkpointed, and the run goes on.
// With staleness 0 the result equals an undisturbed run bit for bit.
import { describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import {
  FormatError,
  type LoopbackCluster,
  type ShardLayout,
  ShardTrainer,
  SpecError,
  type TrainOptions,
  networkSource,
} from '../src/index.js';
import { cluster, compare, reference, stepsOf } from './shard-helpers.js';
import { recoveryJob, recoveryPcd } from './shard-cases.js';
import { initial } from './nets.js';

const portable = new PortableKernels();

const layout: ShardLayout = [{ v: [0, 5], h: [0, 3] }, { v: [5, 12] }, { h: [3, 8] }];

const pcd: TrainOptions = { ...recoveryPcd, schedule: { type: 'inverse', tau: 10 } };

function tiles(c: LoopbackCluster): Map<string, Float32Array[]> {
  const m = new Map<string, Float32Array[]>();
  for (const t of c.trainers) {
    for (const x of t!.weightTiles()) {
      const key = `${x.name}[${x.rows}][${x.cols}]`;
      m.set(key, [...(m.get(key) ?? []), x.data]);
    }
  }
  return m;
}

describe('checkpoints and recovery', () => {
  for (const [name, train] of [
    ['PCD-2, centring, momentum, decay', pcd],
    ['CD-1, momentum', { negative: 'cd', momentum: 0.9 }],
  ] as [string, TrainOptions][]) {
    it(`${name}: kill a shard, restore every shard from the common checkpoint, same final model`, () => {
      const j = recoveryJob(train);
      const init = initial(j.spec, portable, 7, 0.3);
      const opts = {
        staleness: 0,
        checkpointEvery: 4,
        delivery: { kind: 'random', maxDelay: 5, seed: 9 } as const,
      };
      const undisturbed = cluster(j, init, layout, portable, opts);
      undisturbed.run();
      const want = undisturbed.assemble();
      expect(compare(want, reference(j, init))).toEqual({ maxDiff: 0, identical: true });
      expect([...undisturbed.checkpoints.keys()].sort((a, b) => a - b)).toEqual([4, 8, 12, 16, 20]);

      const c = cluster(j, init, layout, portable, opts);
      // run until shard 2 is past the checkpoint of step 12, then it dies
      c.run({ until: (x) => x.trainers[2]!.position.applied >= 14 });
      c.kill(2);
      expect(c.run()).toBe('stalled'); // the others cannot finish without it
      expect(c.trainers[0]!.done).toBe(false);
      const T = c.recover();
      expect(T).toBe(12);
      c.run();
      expect(compare(c.assemble(), want)).toEqual({ maxDiff: 0, identical: true });
    });
  }

  it('snapshot steps stop every shard as checkpoint steps do, and change nothing', () => {
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const c = cluster(j, init, layout, portable, {
      staleness: 0,
      checkpointEvery: 8,
      snapshotEvery: 6,
      delivery: { kind: 'random', maxDelay: 5, seed: 9 },
    });
    c.run();
    expect([...c.checkpoints.keys()].sort((a, b) => a - b)).toEqual([6, 8, 12, 16, 18]);
    expect(compare(c.assemble(), reference(j, init))).toEqual({ maxDiff: 0, identical: true });
  });

  it('a requested checkpoint stops every shard at that step once, and a restore from it is exact', () => {
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const opts = {
      staleness: 0,
      checkpointEvery: 8,
      delivery: { kind: 'random', maxDelay: 5, seed: 9 },
    } as const;
    const c = cluster(j, init, layout, portable, opts);
    c.run({ until: (x) => x.trainers.every((t) => t!.position.step >= 2) });
    const ahead = Math.max(...c.trainers.map((t) => t!.position.step));
    // refused: a step the shard is drawing or has passed, or beyond the run
    const tr0 = c.trainers[0]!;
    expect(tr0.requestCheckpoint(tr0.position.step)).toBe(false);
    expect(tr0.requestCheckpoint(1)).toBe(false);
    expect(tr0.requestCheckpoint(tr0.totalSteps)).toBe(false);
    expect(tr0.requestCheckpoint(2.5)).toBe(false);
    // a later request replaces an earlier one
    for (const t of c.trainers) expect(t!.requestCheckpoint(ahead + 5)).toBe(true);
    for (const t of c.trainers) expect(t!.requestCheckpoint(ahead + 3)).toBe(true);
    c.run();
    const steps = [...c.checkpoints.keys()].sort((a, b) => a - b);
    expect(steps).toEqual([8, 16, ahead + 3].sort((a, b) => a - b));
    const want = c.assemble();
    expect(compare(want, reference(j, init))).toEqual({ maxDiff: 0, identical: true });
    // every shard restored from the requested step ends at the same model
    const d = cluster(j, init, layout, portable, opts);
    d.trainers.forEach((t, s) => t!.restore(c.checkpoints.get(ahead + 3)!.get(s)!));
    d.run();
    expect(compare(d.assemble(), want)).toEqual({ maxDiff: 0, identical: true });
  });

  it('with staleness 2 a recovered run stays consistent (replicas equal, model symmetric)', () => {
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const c = cluster(j, init, layout, portable, {
      staleness: 2,
      checkpointEvery: 5,
      delivery: { kind: 'random', maxDelay: 7, seed: 2 },
      slow: [{ shard: 0, every: 2 }],
    });
    c.run({ until: (x) => x.trainers[1]!.position.applied >= 17 });
    c.kill(0);
    expect(c.recover()).toBe(15);
    c.run();
    for (const [key, copies] of tiles(c)) {
      for (const x of copies.slice(1)) expect(Array.from(x), key).toEqual(Array.from(copies[0]!));
    }
    expect(c.trainers.every((t) => t!.position.applied === stepsOf(j))).toBe(true);
    c.assemble();
  });

  it('a checkpoint restores into a new trainer exactly; bad checkpoints are refused', () => {
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const c = cluster(j, init, layout, portable, { staleness: 1, checkpointEvery: 3 });
    c.run({ until: (x) => x.checkpoints.get(6)?.size === 3 });
    const bytes = c.checkpoints.get(6)!.get(1)!;
    const make = (shard: number, lay: ShardLayout = layout): ShardTrainer =>
      new ShardTrainer({
        network: j.spec,
        train: j.train,
        layout: lay,
        shard,
        kernels: portable,
        data: { x: j.data, rows: j.rows },
        steps: stepsOf(j),
        params: networkSource(init),
        staleness: 1,
      });
    const tr = make(1);
    tr.restore(bytes);
    expect(tr.position).toEqual({ step: 6, stage: 0, applied: 6 });
    expect(tr.quiescent).toBe(true);
    expect(tr.checkpoint()).toEqual(bytes);
    // not at a step boundary
    const busy = make(1);
    busy.advance({ stages: 1 });
    expect(() => busy.checkpoint()).toThrow(SpecError);
    // another shard's or another layout's checkpoint
    expect(() => make(2).restore(bytes)).toThrow(/checkpoint\.shard/);
    expect(() =>
      make(1, [{ v: [0, 6], h: [0, 3] }, { v: [6, 12] }, { h: [3, 8] }]).restore(bytes),
    ).toThrow(/checkpoint\.layout/);
    // damaged bytes
    expect(() => make(1).restore(bytes.subarray(0, 100))).toThrow(FormatError);
    expect(() => make(1).restore(new Uint8Array(64))).toThrow(FormatError);
  });
});
