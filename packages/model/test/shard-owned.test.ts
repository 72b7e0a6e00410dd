// Owned tiles: every weight is held and updated by one shard (the shard of its `from` unit),
// which sends the `to` side partial fields. At staleness 0 the run is Trainer's (statistics
// 'samples') up to float summation order: a field is summed in parts across shards, so it
// differs from the single-process field in the last bits, and the parameters by about that.
// Among runs of the owned design the order is fixed, so delivery order, recovery and the
// scheduler change nothing, bit for bit.
import { describe, expect, it } from 'vitest';
import { PortableKernels } from '@spinmesh/kernels';
import {
  type NetworkSpec,
  type ShardLayout,
  ShardTrainer,
  SpecError,
  type TrainOptions,
  networkSource,
  rbmSpec,
} from '../src/index.js';
import { cluster, compare, reference, stepsOf } from './shard-helpers.js';
import {
  dbm,
  dbmLayouts,
  dbmRules,
  rbmLayouts,
  rbmRules,
  recoveryJob,
  recoveryPcd,
  smallJob,
} from './shard-cases.js';
import { initial } from './nets.js';

const portable = new PortableKernels();
/** Rounding of float32 fields summed in another order, carried through a short run. */
const ROUNDING = 1e-5;

describe('owned tiles at staleness 0 are Trainer up to summation order (portable kernels)', () => {
  const cases: [string, NetworkSpec, TrainOptions, ShardLayout, number][] = [];
  for (const [rule, train] of rbmRules)
    for (const [name, layout] of rbmLayouts)
      cases.push([`RBM 7-5, ${rule}, ${name}`, rbmSpec(7, 5), train, layout, 7]);
  for (const [name, layout] of dbmLayouts.slice(1))
    cases.push([
      `deep BM 6-5-4, sampled positive phase, PCD, ${name}`,
      dbm,
      dbmRules[0]![1],
      layout,
      6,
    ]);
  for (const [name, spec, train, layout, nv] of cases) {
    it(name, () => {
      const j = smallJob(spec, train, nv);
      const init = initial(j.spec, portable, 3, 0.5);
      const ref = reference(j, init);
      // row groups (pipelining) change nothing drawn: the same run whatever their number
      const groups = train.negative === 'pcd' ? [3, 1] : [];
      const owned = cluster(j, init, layout, portable, { tiles: 'owned', rowGroups: 2 });
      owned.run();
      const got = owned.assemble();
      expect(compare(got, ref).maxDiff).toBeLessThan(ROUNDING);
      expect(compare(ref, init).maxDiff).toBeGreaterThan(0.05); // a real run
      // each weight held once, by the shard of its from-unit
      let held = 0;
      owned.trainers.forEach((t, s) => {
        for (const x of t!.weightTiles()) {
          expect(x.owner).toBe(s);
          held += x.data.length;
        }
      });
      expect(held).toBe(
        j.spec.connections.reduce((n, c) => n + size(spec, c.from) * size(spec, c.to), 0),
      );
      // the owned design's own order is fixed: random delays change nothing
      const delayed = cluster(j, init, layout, portable, {
        tiles: 'owned',
        delivery: { kind: 'random', maxDelay: 4, seed: 3 },
      });
      delayed.run();
      expect(compare(delayed.assemble(), got)).toEqual({ maxDiff: 0, identical: true });
      for (const rowGroups of groups) {
        const c = cluster(j, init, layout, portable, { tiles: 'owned', rowGroups });
        c.run();
        expect(compare(c.assemble(), ref).maxDiff).toBeLessThan(ROUNDING);
      }
    });
  }
});

describe('row groups with replicated tiles', () => {
  it('draw the same run as one group, bit for bit (Trainer, portable kernels)', () => {
    const train = rbmRules[1]![1];
    const j = smallJob(rbmSpec(7, 5), train, 7);
    const init = initial(j.spec, portable, 3, 0.5);
    const c = cluster(j, init, rbmLayouts[3]![1], portable, { rowGroups: 3 });
    c.run();
    expect(compare(c.assemble(), reference(j, init))).toEqual({ maxDiff: 0, identical: true });
  });
});

function size(spec: NetworkSpec, layer: string): number {
  return spec.layers.find((l) => l.name === layer)!.size;
}

describe('owned tiles: traffic, recovery and refusals', () => {
  const layout: ShardLayout = [{ v: [0, 5], h: [0, 3] }, { v: [5, 12] }, { h: [3, 8] }];
  const j = recoveryJob(recoveryPcd);

  it('kill a shard, restore every shard from the common checkpoint: the same final model', () => {
    const init = initial(j.spec, portable, 7, 0.3);
    const opts = {
      tiles: 'owned' as const,
      checkpointEvery: 4,
      delivery: { kind: 'random', maxDelay: 5, seed: 9 } as const,
    };
    const undisturbed = cluster(j, init, layout, portable, opts);
    undisturbed.run();
    const want = undisturbed.assemble();
    expect(compare(want, reference(j, init)).maxDiff).toBeLessThan(ROUNDING);
    // what a shard keeps of its peers does not grow with the steps (centring's statistics
    // are dropped once their update is applied): its checkpoints stay the same size
    for (const s of [0, 1, 2]) {
      const sizes = [4, 20].map((T) => undisturbed.checkpoints.get(T)!.get(s)!.length);
      expect(Math.abs(sizes[1]! - sizes[0]!)).toBeLessThan(64);
    }
    const c = cluster(j, init, layout, portable, opts);
    c.run({ until: (x) => x.trainers[2]!.position.applied >= 14 });
    c.kill(2);
    expect(c.run()).toBe('stalled');
    expect(c.recover()).toBe(12);
    c.run();
    expect(compare(c.assemble(), want)).toEqual({ maxDiff: 0, identical: true });
  });

  it('partial fields go to the owners of the units drawn, float32; no weights travel', () => {
    const init = initial(j.spec, portable, 7, 0.3);
    const K2: ShardLayout = [
      { v: [0, 6], h: [0, 4] },
      { v: [6, 12], h: [4, 8] },
    ];
    const t0 = new ShardTrainer({
      network: j.spec,
      train: j.train,
      layout: K2,
      shard: 0,
      kernels: portable,
      data: { x: j.data, rows: j.rows },
      params: networkSource(init),
      tiles: 'owned',
      rowGroups: 2,
    });
    // Step 0 of shard 0 alone, two row groups. The plan interleaves the phases: model visible
    // (stages 0-1, one per group), positive hidden (2-3), model hidden (4-5), then the second
    // sweep. Before it must wait, shard 0 has sent shard 1 the partial fields of its 4 hidden
    // units for both groups of the batch (3 rows each: they read only the data), drawn its
    // visible units of both groups of chains, and sent the model phase's partial fields of
    // each group (5 chains) as soon as that group's visible units were drawn.
    // Each batch of partial fields goes out before the shard computes on: advance() returns
    // for the caller to send them.
    const sent = (): { to: readonly number[]; stage: number; rows: number; bytes: number }[] =>
      t0.outgoing().map((m) => ({
        to: m.to,
        stage: m.stage,
        rows: m.rows,
        bytes: m.values?.byteLength ?? m.packed.length,
      }));
    expect(t0.advance()).toEqual({ state: 'budget' });
    expect(sent()).toEqual([
      { to: [1], stage: 2, rows: 3, bytes: 3 * 4 * 4 },
      { to: [1], stage: 3, rows: 3, bytes: 3 * 4 * 4 },
    ]);
    let r = t0.advance();
    const later = sent();
    while (r.state === 'budget') {
      r = t0.advance();
      later.push(...sent());
    }
    expect(r.state).toBe('waiting');
    expect(later).toEqual([
      { to: [1], stage: 4, rows: 5, bytes: 5 * 4 * 4 },
      { to: [1], stage: 5, rows: 5, bytes: 5 * 4 * 4 },
    ]);
    const c = cluster(j, init, K2, portable, { tiles: 'owned', rowGroups: 1 });
    c.run();
    // per step and shard: PCD-2 draws the hidden layer 3 times (a partial field and the spins
    // each time); the visible layer's final negative states go out once (centring reads them)
    expect(c.trainers[0]!.stats().messagesSent).toBe(stepsOf(j) * 7);
    const hiddenBits = (rows: number): number => Math.ceil((rows * 4) / 8);
    const perStep =
      6 * 4 * 4 + hiddenBits(6) + 2 * (10 * 4 * 4 + hiddenBits(10)) + Math.ceil((10 * 6) / 8);
    expect(c.trainers[0]!.stats().bytesSent).toBe(stepsOf(j) * perStep);
  });

  it("a stage's messages leave before the update: advance() returns them first", () => {
    // A peer's next stage waits for the spins (or partial fields) this shard just drew, and
    // nobody waits for its update until its own next draw: an update applied before the
    // caller could send them would hold the peer back by the update's time every step.
    const init = initial(j.spec, portable, 7, 0.3);
    for (const tiles of ['owned', 'replicated'] as const) {
      const c = cluster(j, init, layout, portable, { tiles });
      let updates = 0;
      for (const t of c.trainers) {
        const inner = t as unknown as {
          applyStep(step: number): void;
          drawer: { outbox: unknown[] };
        };
        const apply = inner.applyStep.bind(t);
        inner.applyStep = (step: number) => {
          // LoopbackCluster sends what a call returned after every advance()
          expect(inner.drawer.outbox, `${tiles}: update of step ${step}`).toEqual([]);
          updates++;
          apply(step);
        };
      }
      c.run();
      expect(updates).toBe(3 * stepsOf(j));
    }
  });

  it('refuses staleness > 0 and a checkpoint of the other design', () => {
    const base = {
      network: j.spec,
      train: j.train,
      layout,
      shard: 0,
      kernels: portable,
      data: { x: j.data, rows: j.rows },
      params: networkSource(initial(j.spec, portable, 7, 0.3)),
    };
    expect(() => new ShardTrainer({ ...base, tiles: 'owned', staleness: 1 })).toThrow(SpecError);
    expect(() => new ShardTrainer({ ...base, tiles: 'bogus' as 'owned' })).toThrow(/tiles/);
    const owned = new ShardTrainer({ ...base, tiles: 'owned' });
    const replicated = new ShardTrainer(base);
    // partial fields: only where the design sends them (shard 1 holds the visible units' rows
    // that reach shard 0's hidden units; stage 1 is the positive hidden one, after the model
    // phase's first), of the receiver's size (6 rows x 3 hidden units), once
    expect(() => replicated.receiveField(1, 0, 1, 1, new Float32Array(18))).toThrow(
      /reads no partial fields/,
    );
    expect(() => owned.receiveField(1, 0, 1, 1, new Float32Array(17))).toThrow(
      /must hold 18 values, got 17/,
    );
    expect(() => owned.receiveField(2, 0, 1, 1, new Float32Array(18))).toThrow(
      /reads no partial fields of layer 1 from shard 2/,
    );
    expect(() => owned.receiveField(1, 0, 0, 1, new Float32Array(18))).toThrow(/at stage 0/);
    expect(owned.receiveField(1, 0, 1, 1, new Float32Array(18))).toBe(true);
    expect(owned.receiveField(1, 0, 1, 1, new Float32Array(18))).toBe(false);
    expect(() => replicated.restore(owned.checkpoint())).toThrow(/checkpoint.tiles/);
    expect(() => owned.restore(replicated.checkpoint())).toThrow(/checkpoint.tiles/);
  });
});
