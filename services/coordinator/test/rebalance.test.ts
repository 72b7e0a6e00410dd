// The units per shard a rebalance aims at, from each shard's measured time per step.
import { describe, expect, it } from 'vitest';
import { validateJobSpec } from '@spinmesh/model';
import { perWeightShare } from '../src/kinds/boltzmann-plan.js';
import { replicatedWork, targetUnits } from '../src/rebalance.js';

/** Replicated tiles with all the work in the weights. */
const REPLICATED_WORK = replicatedWork(1);

/** Seconds per step of shards with cost per unit a and fixed cost c at the given units. */
const times = (a: number[], c: number[], units: number[]): number[] =>
  units.map((u, s) => a[s]! * u + c[s]!);

describe('targetUnits', () => {
  it('with one layout measured, gives units in proportion to units per second', () => {
    // shard 0 at half speed: 1/3 of the units, and the pair at 1.5 times its lone speed
    const t = targetUnits([642, 642], times([2e-4, 1e-4], [0, 0], [642, 642]));
    expect(t.units[0]! / (t.units[0]! + t.units[1]!)).toBeCloseTo(1 / 3, 12);
    expect(t.secondsPerStep).toBeCloseTo((1284 * 2e-4) / 3, 12);
  });

  it('with the layout before the last move measured too, fits the fixed costs and equalises', () => {
    const a = [2e-4, 1e-4];
    const c = [0.02, 0.01];
    const before = [642, 642];
    const now = [392, 892];
    const t = targetUnits(now, times(a, c, now), {
      units: before,
      secondsPerStep: times(a, c, before),
    });
    expect(t.units[0]! + t.units[1]!).toBeCloseTo(1284, 9);
    const predicted = times(a, c, t.units);
    expect(predicted[0]).toBeCloseTo(t.secondsPerStep, 12);
    expect(predicted[1]).toBeCloseTo(t.secondsPerStep, 12);
  });

  it('falls back to proportions when the fit makes no sense (noise: a cost per unit <= 0)', () => {
    const now = [392, 892];
    const t = targetUnits(now, [0.03, 0.03], { units: [642, 642], secondsPerStep: [0.02, 0.04] });
    expect(t.units[0]! / t.units[1]!).toBeCloseTo(392 / 892, 12);
  });

  it('with replicated tiles, moves further: both holders of a cross tile compute it', () => {
    // A shard with the share x of every layer computes 2x - x^2 of the step's work. Shard 0 at
    // half speed: 2 (2x - x^2) = 1 - x^2, so x = 2 - sqrt(3), and the pair runs at
    // 1 - x^2 of one worker's time, better than 2/3: the smaller shard duplicates less.
    const full = 0.02; // one worker's seconds per step at full speed
    const t = targetUnits([642, 642], [2 * full * 0.75, full * 0.75], undefined, REPLICATED_WORK);
    const x = t.units[0]! / 1284;
    expect(x).toBeCloseTo(2 - Math.sqrt(3), 9);
    expect(t.units[0]! + t.units[1]!).toBeCloseTo(1284, 9);
    expect(t.secondsPerStep).toBeCloseTo(full * (1 - x * x), 9);
  });

  it('with replicated tiles, counts the fields in proportion and the weights as shared', () => {
    // RBM 784-500, batch 100, 100 chains: per connection, fields over 100 positive hidden rows
    // and 2k x 100 model rows, the correlation over 200 rows.
    const rbm = (negative: string, k: number): number =>
      perWeightShare(
        validateJobSpec({
          name: 'w',
          seed: 1,
          network: { rbm: { visible: 784, hidden: 500 } },
          data: { kind: 'random', rows: 200, dims: 784 },
          train: { batchSize: 100, chains: 100, negative, k, statistics: 'samples' },
          epochs: 1,
          workers: 2,
        }),
      );
    expect(rbm('pcd', 10)).toBeCloseTo(200 / (200 + 100 + 2000), 12);
    expect(rbm('pcd', 1)).toBeCloseTo(200 / (200 + 100 + 200), 12);
    expect(rbm('cd', 1)).toBeCloseTo(0.4, 12);
    // A half-speed shard of a PCD-10 run gets nearly a third of the units (in proportion: 1/3;
    // all work as the weights': 2 - sqrt(3), 0.268).
    const work = replicatedWork(rbm('pcd', 10));
    const full = 0.02;
    const t = targetUnits([642, 642], [2 * full * work(0.5), full * work(0.5)], undefined, work);
    const x = t.units[0]! / 1284;
    expect(x).toBeGreaterThan(0.32);
    expect(x).toBeLessThan(1 / 3);
    expect(2 * work(x)).toBeCloseTo(work(1 - x), 9);
  });

  it('with replicated tiles and two layouts measured, fits the fixed costs on the work', () => {
    const a = [0.04, 0.02];
    const c = [0.004, 0.002];
    const at = (units: number[]): number[] =>
      units.map((u, s) => a[s]! * REPLICATED_WORK(u / 1284) + c[s]!);
    const t = targetUnits(
      [400, 884],
      at([400, 884]),
      { units: [642, 642], secondsPerStep: at([642, 642]) },
      REPLICATED_WORK,
    );
    const predicted = at(t.units);
    expect(predicted[0]).toBeCloseTo(t.secondsPerStep, 9);
    expect(predicted[1]).toBeCloseTo(t.secondsPerStep, 9);
  });

  it('does not trust a fit that would more than halve a shard in one move', () => {
    // The slow shard's second window barely faster than its first after losing 40 % of its
    // units: the fit puts nearly all its time in a fixed cost and would leave it ~110 units.
    const now = [400, 884];
    const t = targetUnits(now, [0.0225, 0.016], {
      units: [642, 642],
      secondsPerStep: [0.024, 0.012],
    });
    const proportional = targetUnits(now, [0.0225, 0.016]);
    expect(t.units[0]).toBeCloseTo(proportional.units[0]!, 9);
    expect(t.units[0]!).toBeGreaterThan(200);
  });
});
