// In-process sharded runs: each shard owns some units and every synapse into them, and hears the
// other shards' spikes (and, with LTD, their errors and couplings) `lag` steps late. Without LTD a
// synapse needs a spike only when it arrives, d >= d_min steps after it was sent, so every lag
// below d_min gives the single-process result bit for bit and lag d_min does not. LTD reads spikes
// in transit and the couplings of the synapses out of a unit, so with LTD only lag 0 is exact.
import { describe, expect, it } from 'vitest';
import {
  DyBM,
  DyBMLoopback,
  DyBMShard,
  type DyBMSpec,
  SpecError,
  randomDelays,
  scienceSpec,
} from '../src/index.js';
import { lcg } from './nets.js';

const N = 7;
const T = 150;
const r = lcg(21);
const data = Float64Array.from({ length: T * N }, () => (r() < 0.4 ? 1 : 0));
const partitions = [
  [
    [0, 1, 2],
    [3, 4, 5, 6],
  ],
  [
    [0, 3, 6],
    [1, 4],
    [2, 5],
  ],
];

interface Run {
  state: Record<string, Float64Array>;
  sampled: Float64Array;
  likely: Float64Array;
}

function single(base: DyBM): Run {
  const m = base.clone();
  m.train(data, T);
  const state = Object.fromEntries(Object.entries(m.state()).map(([k, a]) => [k, a.data]));
  const sampled = m.clone().generate(40, { mode: 'sample', seed: 5 });
  const likely = m.generate(40);
  return { state, sampled, likely };
}

function sharded(base: DyBM, parts: number[][], lag: number): Run & { messages: number } {
  const lb = new DyBMLoopback(base, parts, { lag });
  lb.train(data, T);
  const m = lb.assemble();
  const state = Object.fromEntries(Object.entries(m.state()).map(([k, a]) => [k, a.data]));
  // generate twice from the same point: once here, once on a second loopback from the same state
  const lb2 = new DyBMLoopback(m, parts, { lag });
  const sampled = lb2.generate(40, { mode: 'sample', seed: 5 });
  const likely = lb.generate(40);
  return { state, sampled, likely, messages: lb.messages };
}

function identical(a: Run, b: Run): boolean {
  for (const [k, v] of Object.entries(a.state))
    if (!v.every((x, e) => Object.is(x, b.state[k]![e]))) return false;
  return (
    a.sampled.every((x, e) => x === b.sampled[e]) && a.likely.every((x, e) => x === b.likely[e])
  );
}

describe('sharded DyBM', () => {
  it('LTP only: every lag below the smallest delay is exact, lag d_min is not', () => {
    const spec: DyBMSpec = {
      units: N,
      delays: randomDelays(N, 3, 6, 5),
      ltpDecays: [0, 0.5, 0.8],
      ltdDecays: [],
    };
    const base = new DyBM(spec, { initStd: 0.2, seed: 3, centring: true, learningRate: 2 });
    const ref = single(base);
    for (const parts of partitions) {
      for (let lag = 0; lag < 3; lag++) {
        const got = sharded(base, parts, lag);
        expect(got.messages).toBeGreaterThan(0);
        expect(identical(ref, got), `${parts.length} shards, lag ${lag}`).toBe(true);
      }
      const late = sharded(base, parts, 3);
      expect(identical(ref, late), `${parts.length} shards, lag 3 = d_min`).toBe(false);
      // not only the traces: the learned weights differ
      expect(late.state['u']!.every((x, e) => x === ref.state['u']![e])).toBe(false);
    }
  });

  it('with LTD (the SCIENCE network): lag 0 is exact, lag 1 is not', () => {
    const base = new DyBM(scienceSpec(), {
      initStd: 0.1,
      seed: 2,
      centring: true,
      learningRate: 5,
    });
    const ref = single(base);
    for (const parts of partitions) {
      expect(identical(ref, sharded(base, parts, 0)), `${parts.length} shards, lag 0`).toBe(true);
      expect(identical(ref, sharded(base, parts, 1)), `${parts.length} shards, lag 1`).toBe(false);
    }
  });

  it('a shard keeps to its protocol', () => {
    const base = new DyBM({ units: 3, delays: 2 });
    expect(() => new DyBMShard(base, [])).toThrow(SpecError);
    expect(() => new DyBMShard(base, [2, 1])).toThrow(/ascending/);
    expect(
      () =>
        new DyBMLoopback(base, [
          [0, 1],
          [1, 2],
        ]),
    ).toThrow(/twice/);
    expect(() => new DyBMLoopback(base, [[0, 1]])).toThrow(/cover/);
    const s = new DyBMShard(base, [0, 2]);
    expect(() => s.observe([1, 0])).toThrow(/has not predicted/);
    s.predict();
    expect(() => s.learn()).toThrow(/has not observed/);
    expect(() => s.observe([1])).toThrow(/owns 2 units/);
    const msg = s.observe([1, 0]);
    expect([msg.t, Array.from(msg.units), Array.from(msg.x)]).toEqual([0, [0, 2], [1, 0]]);
    s.learn();
    const c = s.advance();
    expect(c?.kind).toBe('coupling');
    expect(c?.t).toBe(1);
    expect(s.step).toBe(1);
  });
});
