// Locality of the DyBM's learning rule. The change of synapse s (pre i -> post j) reads only: its
// own weights, optimiser sums, LTP traces and centring offsets; the queue of its pre unit i (the
// spikes still in transit); the post unit's LTD trace gamma_j and its offset; and the two units'
// values x_i[t], x_j[t] and predictions p_i[t], p_j[t] (their errors; the pre unit's error enters
// the LTD term for a pre spike that follows a post spike). Method, as in locality.test.ts: apply
// the rule from a fixed state to a fixed frame and fixed predictions; then perturb everything
// else (every other synapse, every bias, every other unit's queue, traces, value and prediction),
// apply it again from the same step, and require the change of s to be bit-identical.
// Conversely, perturbing only unit k must leave every synapse that does not touch k unchanged.
import { describe, expect, it } from 'vitest';
import { DyBM, type DyBMSpec } from '../src/index.js';
import type { DyBMArray } from '../src/dybm/dybm.js';
import { lcg } from './nets.js';

type State = Record<string, DyBMArray>;

const N = 5;
// Several synapses for some pairs, none for others, delays 1..4.
const delays = Array.from({ length: N * N }, (_, e) =>
  e % 7 === 3 ? [] : e % 3 === 0 ? [1 + (e % 4), 3] : [1 + ((e * 5) % 4)],
);

/** The change of every parameter and optimiser sum when the rule runs at state st. */
function update(
  spec: DyBMSpec,
  st: State,
  x: Float64Array,
  p: Float64Array,
): Map<string, Float64Array> {
  const m = new DyBM(spec, { centring: true, centringRate: 0.1, optimizer: 'adagrad' });
  m.restoreState(st);
  const before = m.state();
  m.applyUpdate(x, p);
  const after = m.state();
  const out = new Map<string, Float64Array>();
  for (const name of ['bias', 'u', 'v', 'adagrad.u', 'adagrad.v', 'centre.alpha', 'centre.beta'])
    out.set(
      name,
      after[name]!.data.map((v, e) => v - before[name]!.data[e]!),
    );
  return out;
}

function check(kind: 'binary' | 'gaussian', seed: number): void {
  const r = lcg(seed);
  const spec: DyBMSpec = { units: N, kind, delays, ltpDecays: [0.3, 0.8], ltdDecays: [0.5, 0.9] };
  const value = (): number => (kind === 'binary' ? (r() < 0.5 ? 1 : 0) : 2 * r() - 1);
  const prediction = (): number => (kind === 'binary' ? r() : 2 * r() - 1);
  const m = new DyBM(spec, { centring: true, centringRate: 0.1, initStd: 0.5, seed });
  // some learning first, so that traces, sums and offsets are non-trivial
  for (let t = 0; t < 12; t++) m.learn(Float64Array.from({ length: N }, value));
  const st = m.state();
  const syn = m.synapses();
  const S = syn.pre.length;
  const x = Float64Array.from({ length: N }, value);
  const p = Float64Array.from({ length: N }, prediction);
  const ref = update(spec, st, x, p);
  const L = 2;
  const K = 2;
  const R = st['queue']!.shape[1]!;

  for (let s = 0; s < S; s += 3) {
    const i = syn.pre[s]!;
    const j = syn.post[s]!;
    // 1. perturb everything that is not synapse s's, its pre unit's queue or its post unit's trace
    const st2: State = {};
    for (const [name, a] of Object.entries(st)) {
      const data = a.data.slice();
      const own = (e: number): boolean => {
        if (name === 'step') return true;
        if (name === 'queue') return Math.floor(e / R) === i;
        if (name === 'trace.gamma' || name === 'centre.gamma') return Math.floor(e / K) === j;
        if (name.endsWith('bias')) return false;
        const w = name.endsWith('alpha') || name.endsWith('.u') || name === 'u' ? L : K;
        return Math.floor(e / w) === s;
      };
      for (let e = 0; e < data.length; e++) {
        if (own(e)) continue;
        data[e] =
          name === 'queue' && kind === 'binary'
            ? 1 - data[e]!
            : name.startsWith('adagrad') || name === 'trace.gamma' || name === 'trace.alpha'
              ? data[e]! + r()
              : data[e]! + (r() - 0.5);
      }
      st2[name] = { data, shape: a.shape };
    }
    const x2 = x.map((v, u) => (u === i || u === j ? v : value()));
    const p2 = p.map((v, u) => (u === i || u === j ? v : prediction()));
    const got = update(spec, st2, x2, p2);
    for (const name of ['u', 'adagrad.u', 'centre.alpha'])
      for (let l = 0; l < L; l++)
        expect(got.get(name)![s * L + l], `${name}[${s}, ${l}] (${i} -> ${j})`).toBe(
          ref.get(name)![s * L + l],
        );
    for (const name of ['v', 'adagrad.v', 'centre.beta'])
      for (let k = 0; k < K; k++)
        expect(got.get(name)![s * K + k], `${name}[${s}, ${k}] (${i} -> ${j})`).toBe(
          ref.get(name)![s * K + k],
        );

    // 2. perturb only unit i (its value, prediction, queue, trace and bias): every synapse that
    // neither starts nor ends at i is unchanged
    const st3: State = {};
    for (const [name, a] of Object.entries(st)) {
      const data = a.data.slice();
      if (name === 'queue')
        for (let e = i * R; e < (i + 1) * R; e++)
          data[e] = kind === 'binary' ? 1 - data[e]! : data[e]! + 1;
      if (name === 'trace.gamma' || name === 'centre.gamma')
        for (let k = 0; k < K; k++) data[i * K + k] = data[i * K + k]! + r();
      if (name === 'bias') data[i] = data[i]! + 1;
      st3[name] = { data, shape: a.shape };
    }
    const x3 = x.map((v, u) => (u === i ? (kind === 'binary' ? 1 - v : v + 1) : v));
    const p3 = p.map((v, u) => (u === i ? (kind === 'binary' ? r() : v - 1) : v));
    const got3 = update(spec, st3, x3, p3);
    let compared = 0;
    for (let q = 0; q < S; q++) {
      if (syn.pre[q] === i || syn.post[q] === i) continue;
      compared++;
      for (let l = 0; l < L; l++)
        expect(got3.get('u')![q * L + l], `u[${q}] reads unit ${i}`).toBe(ref.get('u')![q * L + l]);
      for (let k = 0; k < K; k++)
        expect(got3.get('v')![q * K + k], `v[${q}] reads unit ${i}`).toBe(ref.get('v')![q * K + k]);
    }
    expect(compared).toBeGreaterThan(0);
  }
}

describe('locality of the DyBM rule', () => {
  it('binary units: a synapse reads only its own state, its pre queue and its two units', () =>
    check('binary', 11));
  it('gaussian units: the same', () => check('gaussian', 12));

  it('the perturbations are strong enough to change a synapse that is not protected', () => {
    // The same experiment with the post unit's prediction perturbed must change the update.
    const spec: DyBMSpec = { units: N, delays, ltpDecays: [0.3, 0.8], ltdDecays: [0.5, 0.9] };
    const m = new DyBM(spec, { centring: true, centringRate: 0.1, initStd: 0.5, seed: 3 });
    const r = lcg(3);
    for (let t = 0; t < 12; t++)
      m.learn(Float64Array.from({ length: N }, () => (r() < 0.5 ? 1 : 0)));
    const st = m.state();
    const x = Float64Array.from({ length: N }, () => (r() < 0.5 ? 1 : 0));
    const p = Float64Array.from({ length: N }, () => r());
    const a = update(spec, st, x, p);
    const j = m.synapses().post[0]!;
    const b = update(
      spec,
      st,
      x,
      p.map((v, u) => (u === j ? v * 0.5 : v)),
    );
    expect(b.get('u')![0]).not.toBe(a.get('u')![0]);
  });
});
