// Rebalancing: the checkpoints of a lockstep run at step T, re-cut for another layout (other
// unit counts, other shard counts), continue the run to the same model bit for bit; what cannot
// be moved exactly is refused.
import { describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import {
  type ShardLayout,
  SpecError,
  type TrainOptions,
  balancedLayout,
  evenLayout,
  rbmSpec,
  relayout,
  validateLayout,
  shapeNetwork,
} from '../src/index.js';
import { cluster, compare, reference } from './shard-helpers.js';
import { recoveryJob, recoveryPcd } from './shard-cases.js';
import { initial } from './nets.js';
import { type CodecArray, decodeContainer, encodeContainer } from '../src/shard/codec.js';

/** A checkpoint with some arrays changed (as a damaged or foreign one would be). */
function edit(bytes: Uint8Array, change: (arrays: Map<string, CodecArray>) => void): Uint8Array {
  const { header, arrays } = decodeContainer(bytes);
  change(arrays);
  const { arrays: _list, ...rest } = header;
  return encodeContainer(rest, [...arrays.entries()]);
}

const portable = new PortableKernels();

const pcd = recoveryPcd;
const cd: TrainOptions = { negative: 'cd', k: 1, centring: true, centringRate: 0.1, momentum: 0.9 };

const threeToOne: ShardLayout = [
  { v: [0, 9], h: [0, 6] },
  { v: [9, 12], h: [6, 8] },
];
const three: ShardLayout = [{ v: [0, 2], h: [0, 5] }, { v: [2, 7] }, { v: [7, 12], h: [5, 8] }];

describe('relayout', () => {
  for (const [name, train] of [
    ['PCD-2, centring, momentum, decay', pcd],
    ['CD-1, centring, momentum', cd],
  ] as [string, TrainOptions][]) {
    for (const [to, layout] of [
      ['2 shards 3:1', threeToOne],
      ['3 shards', three],
    ] as [string, ShardLayout][]) {
      it(`${name}: K=2 even, moved at step 12 to ${to}, ends at the undisturbed model`, () => {
        const j = recoveryJob(train);
        const init = initial(j.spec, portable, 7, 0.3);
        const opts = {
          staleness: 0,
          checkpointEvery: 4,
          delivery: { kind: 'random', maxDelay: 5, seed: 9 } as const,
        };
        const undisturbed = cluster(j, init, evenLayout(j.spec, 2), portable, opts);
        undisturbed.run();
        const want = undisturbed.assemble();
        expect(compare(want, reference(j, init))).toEqual({ maxDiff: 0, identical: true });

        const at12 = undisturbed.checkpoints.get(12)!;
        const moved = relayout([at12.get(0)!, at12.get(1)!], layout);
        expect(moved).toHaveLength(layout.length);
        // the new shards start from init only to be overwritten by the moved state
        const c = cluster(j, initial(j.spec, portable, 99, 0.3), layout, portable, opts);
        c.trainers.forEach((t, s) => t!.restore(moved[s]!));
        expect(c.trainers.map((t) => t!.position)).toEqual(
          layout.map(() => ({ step: 12, stage: 0, applied: 12 })),
        );
        expect(c.run()).toBe('done');
        expect(compare(c.assemble(), want)).toEqual({ maxDiff: 0, identical: true });
        // the run's progress goes on from the old shards' counts
        expect(c.stats().shards.map((x) => x!.updatesApplied)).toEqual(layout.map(() => 24));
      });
    }
  }

  it('moves a run of owned tiles with row groups: the same run up to summation order', () => {
    // The layout decides how a field is summed from partial fields, so another layout is the
    // same run only up to float rounding; the design and the row groups move with it.
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const opts = { tiles: 'owned' as const, rowGroups: 2, checkpointEvery: 4 };
    const undisturbed = cluster(j, init, evenLayout(j.spec, 2), portable, opts);
    undisturbed.run();
    const at12 = undisturbed.checkpoints.get(12)!;
    const moved = relayout([at12.get(0)!, at12.get(1)!], threeToOne);
    const c = cluster(j, init, threeToOne, portable, opts);
    c.trainers.forEach((t, s) => t!.restore(moved[s]!));
    expect(c.run()).toBe('done');
    expect(compare(c.assemble(), undisturbed.assemble()).maxDiff).toBeLessThan(1e-5);
    // a trainer of the other design refuses the moved checkpoint
    const replicated = cluster(j, init, threeToOne, portable, { checkpointEvery: 4 });
    expect(() => replicated.trainers[0]!.restore(moved[0]!)).toThrow(/checkpoint.tiles/);
  });

  it('moves the same checkpoints again (3 shards back to 2) without a change', () => {
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const opts = { staleness: 0, checkpointEvery: 8 };
    const undisturbed = cluster(j, init, three, portable, opts);
    undisturbed.run();
    const at8 = undisturbed.checkpoints.get(8)!;
    const there = relayout(
      [0, 1, 2].map((s) => at8.get(s)!),
      threeToOne,
    );
    const back = relayout(there, three);
    const c = cluster(j, init, three, portable, opts);
    c.trainers.forEach((t, s) => t!.restore(back[s]!));
    c.run();
    expect(compare(c.assemble(), undisturbed.assemble())).toEqual({ maxDiff: 0, identical: true });
  });

  it('refuses what it cannot move exactly, and checkpoints that are not one run at one step', () => {
    const j = recoveryJob(pcd);
    const init = initial(j.spec, portable, 7, 0.3);
    const even = evenLayout(j.spec, 2);
    // asynchronous persistent chains: pairings of peer states that belong to the layout
    const async = cluster(j, init, even, portable, { staleness: 1, checkpointEvery: 4 });
    async.run({ until: (x) => x.checkpoints.get(8)?.size === 2 });
    const a8 = async.checkpoints.get(8)!;
    expect(() => relayout([a8.get(0)!, a8.get(1)!], threeToOne)).toThrow(
      /asynchronous persistent chains/,
    );

    const lock = cluster(j, init, even, portable, { staleness: 0, checkpointEvery: 4 });
    lock.run();
    const [c4, c8] = [lock.checkpoints.get(4)!, lock.checkpoints.get(8)!];
    expect(() => relayout([c4.get(0)!, c8.get(1)!], threeToOne)).toThrow(/another run.*or step/);
    expect(() => relayout([c4.get(0)!], threeToOne)).toThrow(/one checkpoint per shard/);
    expect(() => relayout([c4.get(0)!, c4.get(0)!], threeToOne)).toThrow(/each shard once/);
    expect(() => relayout([c4.get(0)!, c4.get(1)!], [{ v: [0, 12] }])).toThrow(SpecError);
    // spins received and not yet read: a message of step 2 left in shard 0's inbox
    const withInbox = edit(c4.get(0)!, (arrays) => {
      arrays.set('inbox.index', Float64Array.from([1, 2 * 3 + 1, 2]));
      arrays.set('inbox.bytes', new Uint8Array(2));
    });
    expect(() => relayout([withInbox, c4.get(1)!], threeToOne)).toThrow(/not yet read/);
    // replicas of a weight tile that differ (shard 0's row slab against shard 1's columns)
    const skewed = edit(c4.get(0)!, (arrays) => {
      const w = arrays.get('weights.0.0') as Float32Array;
      w[5] = w[5]! + 1;
    });
    expect(() => relayout([skewed, c4.get(1)!], threeToOne)).toThrow(/replica of weights\.0/);
  });

  it('balancedLayout gives units in proportion to speed, at least one of each layer', () => {
    const spec = rbmSpec(784, 500);
    const net = shapeNetwork(spec);
    expect(balancedLayout(spec, [1, 1])).toEqual(evenLayout(spec, 2));
    expect(balancedLayout(spec, [2, 1])).toEqual([
      { v: [0, 523], h: [0, 333] },
      { v: [523, 784], h: [333, 500] },
    ]);
    const skewed = balancedLayout(spec, [1000, 1, 1]);
    expect(validateLayout(net, skewed)).toEqual(skewed);
    expect(skewed[1]).toEqual({ v: [782, 783], h: [498, 499] });
    expect(() => balancedLayout(spec, [1, 0])).toThrow(/speeds\[1\]/);
    expect(() => balancedLayout(spec, [])).toThrow(/speeds/);
  });
});
