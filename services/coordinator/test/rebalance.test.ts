// The units per shard a rebalance aims at, from each shard's measured time per step.
import { describe, expect, it } from 'vitest';
import { targetUnits } from '../src/rebalance.js';

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
});
