// The learning rule is the gradient of the log-likelihood of the next frame: every entry of
// DyBM.gradient(x) matches a central finite difference of logLikelihood(x); one SGD step moves
// every parameter by learningRate x that gradient; and for binary units p(x[t] | x[<t]) sums to 1
// over all 2^N frames (the energy's normaliser is the product of the units' (1 + e^F)).
import { describe, expect, it } from 'vitest';
import { DyBM, type DyBMOptions, type DyBMSpec } from '../src/index.js';
import { lcg } from './nets.js';

const N = 4;
const multi = Array.from({ length: N * N }, (_, e) => (e % 5 === 0 ? [] : [1 + (e % 3), 4]));

function randomHistory(m: DyBM, r: () => number, steps: number, learn: boolean): void {
  const binary = m.spec.kind === 'binary';
  for (let t = 0; t < steps; t++) {
    const x = Float64Array.from({ length: m.units }, () =>
      binary ? (r() < 0.5 ? 1 : 0) : 2 * r() - 1,
    );
    if (learn) m.learn(x);
    else m.advance(x);
  }
}

function checkGradient(spec: DyBMSpec, opts: DyBMOptions, seed: number): void {
  const r = lcg(seed);
  const m = new DyBM(spec, { initStd: 0.5, seed, ...opts });
  // learning moves the centring offsets away from 0; then a fresh stretch of history
  randomHistory(m, r, 15, true);
  randomHistory(m, r, 7, false);
  const binary = m.spec.kind === 'binary';
  const x = Float64Array.from({ length: N }, () => (binary ? (r() < 0.5 ? 1 : 0) : 2 * r() - 1));
  const g = m.gradient(x);
  // Central differences in float64 with h = 1e-5: truncation ~h^2 |f'''| and rounding
  // ~1e-16 |f| / h, both far below 1e-7 for these O(1) log-likelihoods.
  const h = 1e-5;
  let checked = 0;
  for (const p of m.parameters()) {
    const ga = g[p.name as 'bias' | 'u' | 'v'];
    for (let e = 0; e < p.data.length; e++) {
      const old = p.data[e]!;
      p.data[e] = old + h;
      const up = m.logLikelihood(x);
      p.data[e] = old - h;
      const down = m.logLikelihood(x);
      p.data[e] = old;
      const fd = (up - down) / (2 * h);
      expect(Math.abs(ga[e]! - fd), `${p.name}[${e}]: ${ga[e]} vs ${fd}`).toBeLessThan(
        1e-7 * Math.max(1, Math.abs(fd)),
      );
      checked++;
    }
  }
  expect(checked).toBe(m.parameters().reduce((a, p) => a + p.data.length, 0));
  // One SGD step is learningRate x the gradient.
  const sgd = new DyBM(spec, { ...opts, optimizer: 'sgd', learningRate: 0.05 });
  sgd.restoreState(m.state());
  const before = sgd.parameters().map((p) => p.data.slice());
  sgd.learn(x);
  sgd.parameters().forEach((p, q) => {
    const ga = g[p.name as 'bias' | 'u' | 'v'];
    p.data.forEach((v, e) => expect(v - before[q]![e]!).toBeCloseTo(0.05 * ga[e]!, 12));
  });
}

describe('DyBM gradient', () => {
  const base = { units: N, ltpDecays: [0, 0.4, 0.9], ltdDecays: [0.3, 0.8] };
  const cases: [string, DyBMSpec, DyBMOptions][] = [
    ['binary, one synapse per pair', { ...base, delays: 3 }, {}],
    [
      'binary, several synapses per pair, centring',
      { ...base, delays: multi },
      { centring: true, centringRate: 0.2 },
    ],
    ['binary, LTP only', { ...base, delays: multi, ltdDecays: [] }, {}],
    ['gaussian, one synapse per pair', { ...base, kind: 'gaussian', delays: 2, sigma: 0.7 }, {}],
    [
      'gaussian, several synapses, centring',
      { ...base, kind: 'gaussian', delays: multi },
      { centring: true, centringRate: 0.2 },
    ],
  ];
  cases.forEach(([name, spec, opts], c) =>
    it(`matches finite differences of log p(x[t] | x[<t]): ${name}`, () =>
      checkGradient(spec, opts, 5 + c)),
  );

  it('binary: the next-frame distribution sums to one and exp(-E) is proportional to it', () => {
    const r = lcg(9);
    const m = new DyBM({ ...base, units: 5, delays: 2 }, { initStd: 1, seed: 9 });
    randomHistory(m, r, 10, false);
    let total = 0;
    const ratios: number[] = [];
    for (let code = 0; code < 32; code++) {
      const x = Float64Array.from({ length: 5 }, (_, j) => (code >> j) & 1);
      const ll = m.logLikelihood(x);
      total += Math.exp(ll);
      ratios.push(ll + m.energy(x));
    }
    expect(total).toBeCloseTo(1, 12);
    // log p(x) + E(x) = -log Z, the same for every frame
    for (const v of ratios) expect(v).toBeCloseTo(ratios[0]!, 12);
  });

  it('gaussian: the prediction is the mean of the next value', () => {
    const m = new DyBM(
      { ...base, kind: 'gaussian', delays: 1, sigma: 0.5 },
      { initStd: 1, seed: 2 },
    );
    randomHistory(m, lcg(2), 6, false);
    const mean = m.predict();
    const at = (dx: number): number => m.logLikelihood(mean.map((v) => v + dx));
    expect(at(0)).toBeGreaterThan(at(0.01));
    expect(at(0)).toBeGreaterThan(at(-0.01));
    expect(at(0)).toBeCloseTo(N * -0.5 * Math.log(2 * Math.PI * 0.25), 12);
  });
});
