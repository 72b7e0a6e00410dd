// Save and restore: state() / restoreState(), clone() and the JSON snapshot continue a run bit
// for bit; spec and option errors name the field at fault.
import { describe, expect, it } from 'vitest';
import { DyBM, type DyBMSnapshot, SpecError, randomDelays } from '../src/index.js';
import { lcg } from './nets.js';

const spec = {
  units: 4,
  delays: randomDelays(4, 1, 5, 7),
  ltpDecays: [0.2, 0.7],
  ltdDecays: [0.5],
};
const opts = { initStd: 0.3, seed: 4, centring: true };

function frames(seed: number, steps: number): Float64Array {
  const r = lcg(seed);
  return Float64Array.from({ length: steps * 4 }, () => (r() < 0.4 ? 1 : 0));
}

function sameState(a: DyBM, b: DyBM): void {
  const sa = a.state();
  const sb = b.state();
  expect(Object.keys(sb)).toEqual(Object.keys(sa));
  for (const [name, arr] of Object.entries(sa)) {
    expect(sb[name]!.shape, name).toEqual(arr.shape);
    arr.data.forEach((v, e) => expect(Object.is(sb[name]!.data[e], v), `${name}[${e}]`).toBe(true));
  }
}

describe('DyBM state', () => {
  it('continues bit for bit after state()/restoreState(), clone() and a JSON round trip', () => {
    const a = new DyBM(spec, opts);
    a.train(frames(1, 30), 30);
    const saved = a.state();
    const b = new DyBM(spec, { ...opts, initStd: 1 }); // other initial weights, overwritten
    b.restoreState(saved);
    const c = a.clone();
    const d = DyBM.fromJSON(JSON.parse(JSON.stringify(a)) as DyBMSnapshot);
    for (const m of [a, b, c, d]) m.train(frames(2, 25), 25);
    for (const m of [b, c, d]) sameState(a, m);
    const g = a.generate(20, { mode: 'sample' });
    for (const m of [b, c, d])
      expect(Array.from(m.generate(20, { mode: 'sample' }))).toEqual(Array.from(g));
  });

  it('a restored state is a copy: later changes do not leak back', () => {
    const a = new DyBM(spec, opts);
    const s = a.state();
    a.train(frames(3, 10), 10);
    expect(s['u']!.data.every((v) => a.state()['u']!.data.includes(v))).toBe(false);
  });

  it('recall forgets the past; generation is reproducible by seed', () => {
    const a = new DyBM(spec, opts);
    a.train(frames(5, 40), 40);
    const cue = frames(6, 5);
    const r1 = a.recall(cue, 5, 10);
    a.read(frames(7, 9), 9);
    expect(Array.from(a.recall(cue, 5, 10))).toEqual(Array.from(r1));
    a.reset();
    const s1 = a.generate(30, { mode: 'sample', seed: 11 });
    a.reset();
    const s2 = a.generate(30, { mode: 'sample', seed: 11 });
    a.reset();
    const s3 = a.generate(30, { mode: 'sample', seed: 12 });
    expect(Array.from(s2)).toEqual(Array.from(s1));
    expect(Array.from(s3)).not.toEqual(Array.from(s1));
  });

  it('rejects bad specs, options, frames and states with the field at fault', () => {
    const bad: [() => unknown, RegExp][] = [
      [() => new DyBM({ ...spec, units: 0 }), /spec\.units/],
      [() => new DyBM({ ...spec, delays: 0 }), /spec\.delays must hold integers/],
      [() => new DyBM({ ...spec, delays: [1, 2, 3] }), /spec\.delays has 3 entries/],
      [() => new DyBM({ ...spec, ltpDecays: [1] }), /spec\.ltpDecays\[0\]/],
      [() => new DyBM({ ...spec, kind: 'poisson' as 'binary' }), /spec\.kind/],
      [() => new DyBM(spec, { learningRate: -1 }), /options\.learningRate/],
      [() => new DyBM(spec, { centringRate: 0 }), /options\.centringRate/],
      [() => new DyBM(spec).learn([1, 0, 2, 0]), /x\[2\] is 2/],
      [() => new DyBM(spec).learn([1, 0]), /x has 2 values/],
      [() => new DyBM(spec).restoreState({}), /state\.bias is missing/],
      [() => new DyBM(spec).generate(-1), /steps/],
      [() => new DyBM(spec).kernel(0, 4, 0, 1), /post/],
    ];
    for (const [f, re] of bad) {
      expect(f).toThrow(SpecError);
      expect(f).toThrow(re);
    }
  });

  it('kernel(): LTP from the arrival on, LTD before it, nothing at dt = 0', () => {
    const m = new DyBM({ units: 2, delays: [[], [3], [], []], ltpDecays: [0.5], ltdDecays: [0.5] });
    m.parameters()[1]!.data[0] = 2; // u
    m.parameters()[2]!.data[0] = 1; // v
    const k = Array.from(m.kernel(0, 1, -2, 5));
    // dt:     -2     -1    0    1    2   3  4    5
    expect(k).toEqual([-0.0625, -0.125, 0, -0.5, -1, 2, 1, 0.5]);
  });
});
