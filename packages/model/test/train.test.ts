// The Boltzmann learning rule against exact quantities of small networks (enumeration).
import { describe, expect, it } from 'vitest';
import {
  type Kernels,
  NativeKernels,
  PortableKernels,
  nativeAvailable,
  UnitType,
} from '@spinmesh/kernels';
import {
  Network,
  type NetworkSpec,
  SpecError,
  type State,
  Trainer,
  type TrainOptions,
  learningRateAt,
  rbmSpec,
} from '../src/index.js';
import { initial as randomNet, lcg } from './nets.js';

const portable = new PortableKernels();
const native: Kernels | null = nativeAvailable().ok ? new NativeKernels({ threads: 1 }) : null;

/** Bars and stripes 3x3: the 14 distinct patterns. */
function bas3(): Float32Array {
  const rows: number[][] = [];
  const key = new Set<string>();
  for (let m = 0; m < 8; m++) {
    for (const stripes of [false, true]) {
      const p: number[] = [];
      for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) p.push((m >> (stripes ? i : j)) & 1);
      if (!key.has(p.join())) {
        key.add(p.join());
        rows.push(p);
      }
    }
  }
  expect(rows.length).toBe(14);
  return Float32Array.from(rows.flat());
}

/** All 2^N states of a {0,1}/{-1,1} network with their energies. */
function enumerate(net: Network): { state: State; S: number; energy: Float64Array } {
  const N = net.numUnits;
  const S = 1 << N;
  const state: State = net.layers.map((l) => new Float32Array(S * l.size));
  for (let s = 0; s < S; s++) {
    for (const l of net.layers) {
      for (let j = 0; j < l.size; j++) {
        const bit = (s >>> (l.offset + j)) & 1;
        state[l.index]![s * l.size + j] = l.type === UnitType.Ising ? (bit ? 1 : -1) : bit;
      }
    }
  }
  return { state, S, energy: net.energy(state, S) };
}

function lse(xs: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < xs.length; i++) m = Math.max(m, xs[i]!);
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += Math.exp(xs[i]! - m);
  return m + Math.log(s);
}

/** Exact mean log-likelihood of binary data rows on the first (visible) layer. */
function logLikelihood(net: Network, data: Float32Array, rows: number): number {
  const { state, S, energy } = enumerate(net);
  const v = net.layers[0]!;
  const byV = new Map<number, number[]>();
  for (let s = 0; s < S; s++) {
    const key = s & ((1 << v.size) - 1);
    (byV.get(key) ?? byV.set(key, []).get(key)!).push(-energy[s]!);
  }
  void state;
  const logZ = lse(Array.from(energy, (e) => -e));
  let ll = 0;
  for (let r = 0; r < rows; r++) {
    let key = 0;
    for (let j = 0; j < v.size; j++) if (data[r * v.size + j]! > 0) key |= 1 << j;
    ll += lse(byV.get(key)!) - logZ;
  }
  return ll / rows;
}

/** Exact log-likelihood gradient for every parameter (by name), data on the first layer. */
function exactGradient(net: Network, data: Float32Array, rows: number): Map<string, Float64Array> {
  const { state, S, energy } = enumerate(net);
  const v = net.layers[0]!;
  const mask = (1 << v.size) - 1;
  const emin = energy.reduce((a, b) => Math.min(a, b), Infinity);
  const pm = Array.from(energy, (e) => Math.exp(-(e - emin)));
  const z = pm.reduce((a, b) => a + b, 0);
  // data weights: p(s | v_d) / rows summed over data rows with matching visible part
  const pd = new Float64Array(S);
  const zv = new Map<number, number>();
  for (let s = 0; s < S; s++) zv.set(s & mask, (zv.get(s & mask) ?? 0) + pm[s]!);
  for (let r = 0; r < rows; r++) {
    let key = 0;
    for (let j = 0; j < v.size; j++) if (data[r * v.size + j]! > 0) key |= 1 << j;
    for (let s = 0; s < S; s++) if ((s & mask) === key) pd[s]! += pm[s]! / zv.get(key)! / rows;
  }
  const w = Array.from({ length: S }, (_, s) => pd[s]! - pm[s]! / z);
  const out = new Map<string, Float64Array>();
  const x = (l: number, s: number, j: number): number => state[l]![s * net.layers[l]!.size + j]!;
  for (const p of net.parameters()) {
    const g = new Float64Array(p.data.length);
    const [lname, kind] = p.name.split('.') as [string, string];
    if (kind === 'bias') {
      const l = net.layerIndex(lname);
      for (let s = 0; s < S; s++) for (let j = 0; j < g.length; j++) g[j]! += w[s]! * x(l, s, j);
    } else if (kind === 'lateral') {
      const l = net.layerIndex(lname);
      const n = net.layers[l]!.size;
      for (let s = 0; s < S; s++)
        for (let i = 0; i < n; i++)
          for (let j = 0; j < n; j++) if (i !== j) g[i * n + j]! += w[s]! * x(l, s, i) * x(l, s, j);
    } else {
      const [fn, tn] = lname.split('-') as [string, string];
      const f = net.layerIndex(fn);
      const t = net.layerIndex(tn);
      const nt = net.layers[t]!.size;
      for (let s = 0; s < S; s++)
        for (let i = 0; i < net.layers[f]!.size; i++)
          for (let j = 0; j < nt; j++) g[i * nt + j]! += w[s]! * x(f, s, i) * x(t, s, j);
    }
    out.set(p.name, g);
  }
  return out;
}

function snapshot(net: Network): Map<string, Float32Array> {
  return new Map(net.parameters().map((p) => [p.name, p.data.slice()]));
}

function randomBinary(rows: number, n: number, seed: number, p = 0.5): Float32Array {
  const r = lcg(seed);
  return Float32Array.from({ length: rows * n }, () => (r() < p ? 1 : 0));
}

describe('Trainer: exact gradient', () => {
  for (const [name, k] of [
    ['portable', portable],
    ['native', native],
  ] as const) {
    const run = k ? it : it.skip;
    run(
      `update = exact log-likelihood gradient (RBMs, semi-restricted and fully visible BM, ${name})`,
      () => {
        const specs: NetworkSpec[] = [
          rbmSpec(4, 3),
          {
            ...rbmSpec(4, 3, 'ising'),
            layers: [
              { name: 'v', size: 4, units: 'ising' },
              { name: 'h', size: 3, units: 'ising' },
            ],
          },
          { layers: [{ name: 'v', size: 5, lateral: true }], connections: [] },
          {
            layers: [
              { name: 'v', size: 4, lateral: true },
              { name: 'h', size: 3 },
            ],
            connections: [{ from: 'v', to: 'h' }],
          },
        ];
        for (const spec of specs) {
          const net = randomNet(spec, k!, 3, 0.8);
          const rows = 6;
          const ising = net.layers[0]!.type === UnitType.Ising;
          const nv = net.layers[0]!.size;
          const data = randomBinary(rows, nv, 9).map((x) => (ising && x === 0 ? -1 : x));
          const C = 20000;
          const tr = new Trainer(net, {
            batchSize: rows,
            learningRate: 1,
            negative: 'pcd',
            chains: C,
            seed: 5,
          });
          // equilibrate the persistent chains (its own stream, far-away steps)
          tr.sampler.run(tr.chains!.state, C, 60, { step: 1_000_000, stream: 7 });
          const g = exactGradient(net, data, rows);
          const before = snapshot(net);
          tr.trainBatch(data, rows);
          // Every negative statistic is an average over C independent chains of a value in [0, 1]
          // (products of {0,1} states and probabilities), so its SE is at most 0.5 / sqrt(C);
          // with Ising units the values lie in [-1, 1] and the bound is 1 / sqrt(C).
          const tol = (5 * (ising ? 1 : 0.5)) / Math.sqrt(C);
          let norm = 0;
          for (const p of net.parameters()) {
            const exactG = g.get(p.name)!;
            const b = before.get(p.name)!;
            for (let i = 0; i < p.data.length; i++) {
              expect(Math.abs(p.data[i]! - b[i]! - exactG[i]!)).toBeLessThan(tol);
              norm += exactG[i]! ** 2;
            }
          }
          expect(Math.sqrt(norm)).toBeGreaterThan(10 * tol);
        }
      },
    );
  }

  it('deep BM (general path): sampled positive phase + PCD update = exact gradient', () => {
    const spec: NetworkSpec = {
      layers: [
        { name: 'v', size: 3 },
        { name: 'h1', size: 3 },
        { name: 'h2', size: 2 },
      ],
      connections: [
        { from: 'v', to: 'h1' },
        { from: 'h1', to: 'h2' },
      ],
    };
    const net = randomNet(spec, portable, 12, 0.8);
    const patterns = randomBinary(4, 3, 5);
    // the batch repeats 4 patterns 3000 times: the positive phase (30 clamped sweeps, last
    // group Rao-Blackwellised) then averages 3000 independent chains per pattern
    const reps = 3000;
    const rows = 4 * reps;
    const batch = new Float32Array(rows * 3);
    for (let r = 0; r < rows; r++)
      batch.set(patterns.subarray((r % 4) * 3, (r % 4) * 3 + 3), r * 3);
    const C = 20000;
    const tr = new Trainer(net, {
      batchSize: rows,
      learningRate: 1,
      negative: 'pcd',
      chains: C,
      positive: 'sample',
      positiveIterations: 30,
      seed: 5,
    });
    tr.sampler.run(tr.chains!.state, C, 60, { step: 1_000_000, stream: 7 });
    const g = exactGradient(net, patterns, 4);
    const before = snapshot(net);
    tr.trainBatch(batch, rows, undefined, false);
    const tol = 5 * 0.5 * Math.sqrt(1 / rows + 1 / C);
    let norm = 0;
    for (const p of net.parameters()) {
      const b = before.get(p.name)!;
      for (let i = 0; i < p.data.length; i++) {
        expect(Math.abs(p.data[i]! - b[i]! - g.get(p.name)![i]!)).toBeLessThan(tol);
        norm += g.get(p.name)![i]! ** 2;
      }
    }
    expect(Math.sqrt(norm)).toBeGreaterThan(10 * tol);
  });

  it('Gaussian-Bernoulli RBM: update = exact gradient (v integrated out)', () => {
    const net = randomNet(rbmSpec(3, 3, 'gaussian'), portable, 4, 0.5);
    const rows = 5;
    const r = lcg(2);
    const data = Float32Array.from({ length: rows * 3 }, () => (r() - 0.5) * 3);
    const W = net.connections[0]!.weights;
    const b = net.biases[0]!;
    const c = net.biases[1]!;
    const sig = (a: number): number => 1 / (1 + Math.exp(-a));
    // exact expectations: model over h (p(h) ∝ exp(c.h + |b + W h|^2/2)), data with p(h|v)
    const eVH = new Float64Array(9);
    const eV = new Float64Array(3);
    const eH = new Float64Array(3);
    const eV2 = new Float64Array(3);
    let z = 0;
    for (let s = 0; s < 8; s++) {
      const h = [0, 1, 2].map((j) => (s >> j) & 1);
      const mu = [0, 1, 2].map((i) => b[i]! + h.reduce((a, hj, j) => a + W[i * 3 + j]! * hj, 0));
      const p = Math.exp(
        h.reduce((a, hj, j) => a + c[j]! * hj, 0) + mu.reduce((a, m) => a + 0.5 * m * m, 0),
      );
      z += p;
      for (let i = 0; i < 3; i++) {
        eV[i]! += p * mu[i]!;
        eV2[i]! += p * (mu[i]! ** 2 + 1);
        for (let j = 0; j < 3; j++) eVH[i * 3 + j]! += p * mu[i]! * h[j]!;
      }
      for (let j = 0; j < 3; j++) eH[j]! += p * h[j]!;
    }
    const gW = new Float64Array(9);
    const gb = new Float64Array(3);
    const gc = new Float64Array(3);
    for (let rr = 0; rr < rows; rr++) {
      const v = data.subarray(rr * 3, rr * 3 + 3);
      for (let j = 0; j < 3; j++) {
        const ph = sig(c[j]! + v.reduce((a, vi, i) => a + vi * W[i * 3 + j]!, 0));
        gc[j]! += ph / rows;
        for (let i = 0; i < 3; i++) gW[i * 3 + j]! += (v[i]! * ph) / rows;
      }
      for (let i = 0; i < 3; i++) gb[i]! += v[i]! / rows;
    }
    for (let i = 0; i < 9; i++) gW[i]! -= eVH[i]! / z;
    for (let i = 0; i < 3; i++) {
      gb[i]! -= eV[i]! / z;
      gc[i]! -= eH[i]! / z;
    }
    const C = 20000;
    const tr = new Trainer(net, {
      batchSize: rows,
      learningRate: 1,
      negative: 'pcd',
      chains: C,
      seed: 6,
    });
    tr.sampler.run(tr.chains!.state, C, 60, { step: 1_000_000, stream: 7 });
    const before = snapshot(net);
    tr.trainBatch(data, rows);
    // SE of a mean of v_i h_j or v_i over C chains is at most sqrt(E[v_i^2] / C)
    const tolV = (i: number): number => 5 * Math.sqrt(eV2[i]! / z / C);
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++)
        expect(
          Math.abs(W[i * 3 + j]! - before.get('v-h.weights')![i * 3 + j]! - gW[i * 3 + j]!),
        ).toBeLessThan(tolV(i));
      expect(Math.abs(b[i]! - before.get('v.bias')![i]! - gb[i]!)).toBeLessThan(tolV(i));
      expect(Math.abs(c[i]! - before.get('h.bias')![i]! - gc[i]!)).toBeLessThan(
        (5 * 0.5) / Math.sqrt(C),
      );
    }
  });
});

describe('Trainer: learning bars and stripes 3x3', () => {
  const data = bas3();
  const cases: [string, NetworkSpec, TrainOptions, number][] = [
    ['RBM CD-1', rbmSpec(9, 8), { negative: 'cd' }, 1500],
    ['RBM PCD-1', rbmSpec(9, 8), { negative: 'pcd', chains: 50 }, 1500],
    [
      'RBM CD-1 centred, momentum',
      rbmSpec(9, 8),
      { negative: 'cd', centring: true, momentum: 0.5 },
      1500,
    ],
    [
      'RBM PCD-1 centred, decay',
      rbmSpec(9, 8),
      { negative: 'pcd', chains: 50, centring: true, weightDecay: 1e-4 },
      1500,
    ],
    [
      'semi-restricted BM PCD (exact positive phase)',
      {
        layers: [
          { name: 'v', size: 9, lateral: true },
          { name: 'h', size: 4 },
        ],
        connections: [{ from: 'v', to: 'h' }],
      },
      { negative: 'pcd', chains: 50 },
      800,
    ],
    [
      'deep BM 9-4-3 PCD, mean-field positive phase',
      {
        layers: [
          { name: 'v', size: 9 },
          { name: 'h1', size: 4 },
          { name: 'h2', size: 3 },
        ],
        connections: [
          { from: 'v', to: 'h1' },
          { from: 'h1', to: 'h2' },
        ],
      },
      {
        negative: 'pcd',
        chains: 50,
        positive: 'meanfield',
        positiveIterations: 10,
        learningRate: 0.2,
      },
      2000,
    ],
    [
      'deep BM 9-4-3 CD, sampled positive phase',
      {
        layers: [
          { name: 'v', size: 9 },
          { name: 'h1', size: 4 },
          { name: 'h2', size: 3 },
        ],
        connections: [
          { from: 'v', to: 'h1' },
          { from: 'h1', to: 'h2' },
        ],
      },
      { negative: 'cd', positive: 'sample', positiveIterations: 3, k: 2, learningRate: 0.2 },
      2000,
    ],
  ];
  for (const [name, spec, opts, updates] of cases) {
    it(`${name}: exact log-likelihood rises`, () => {
      const net = Network.create(spec, portable, { seed: 1, weightStd: 0.1 });
      const tr = new Trainer(net, { batchSize: 14, learningRate: 0.1, seed: 2, ...opts });
      const ll0 = logLikelihood(net, data, 14);
      for (let t = 0; t < updates; t++) tr.trainBatch(data, 14, undefined, false);
      const ll1 = logLikelihood(net, data, 14);
      // start: about -9 log 2 = -6.2; optimum: -log 14 = -2.64
      expect(ll0).toBeLessThan(-6);
      expect(ll1).toBeGreaterThan(ll0 + 1.5);
      void name;
    });
  }

  it('trainEpoch over shuffled batches improves the likelihood and reports statistics', () => {
    const net = Network.create(rbmSpec(9, 8), portable, { seed: 1, weightStd: 0.1 });
    const tr = new Trainer(net, {
      batchSize: 5,
      learningRate: 0.1,
      negative: 'pcd',
      chains: 20,
      centring: true,
      monitorEvery: 1,
    });
    const x = new Float32Array(14 * 9 * 4);
    for (let i = 0; i < 4; i++) x.set(data, i * data.length);
    const ll0 = logLikelihood(net, data, 14);
    let st = tr.trainEpoch(x, 56);
    expect(st.batches).toBe(12);
    expect(st.epoch).toBe(0);
    expect(Number.isFinite(st.reconstructionError) && st.reconstructionError > 0).toBe(true);
    expect(st.updateNorm).toBeGreaterThan(0);
    expect(st.corrDiff).toBeGreaterThan(0);
    for (let e = 0; e < 60; e++) st = tr.trainEpoch(x, 56);
    expect(tr.epochCount).toBe(61);
    expect(logLikelihood(net, data, 14)).toBeGreaterThan(ll0 + 1);
  });
});

describe('Trainer: the rule itself', () => {
  /** Random phase states for an RBM-like network: visible {0,1}, hidden probabilities. */
  function phase(net: Network, rows: number, seed: number): State {
    const r = lcg(seed);
    return net.layers.map((l) =>
      Float32Array.from({ length: rows * l.size }, () =>
        l.index === 0 ? (r() < 0.5 ? 1 : 0) : r(),
      ),
    );
  }

  it('centring: the stored standard-form update equals the centred update mapped back', () => {
    const specs: NetworkSpec[] = [
      rbmSpec(5, 4),
      {
        layers: [
          { name: 'v', size: 5, lateral: true },
          { name: 'h', size: 4 },
          { name: 'g', size: 2 },
        ],
        connections: [
          { from: 'v', to: 'h' },
          { from: 'h', to: 'g' },
        ],
      },
    ];
    for (const spec of specs) {
      const net = randomNet(spec, portable, 8, 0.5);
      const lr = 0.3;
      const tr = new Trainer(net, {
        learningRate: lr,
        centring: true,
        centringRate: 0.1,
        positive: 'meanfield',
      });
      const r = lcg(4);
      const mu = net.layers.map((l) =>
        Float64Array.from({ length: l.size }, () => Math.fround(r())),
      );
      net.layers.forEach((l) => tr.setOffsets(l.name, mu[l.index]!));
      const pos = phase(net, 7, 1);
      const neg = phase(net, 5, 2);
      // centred parameters of the same model: b' = b + sum_c W lambda + W^T mu + L mu
      const centredBias = (n: Network): Float64Array[] =>
        n.layers.map((l) => {
          const bp = Float64Array.from(n.biases[l.index]!);
          for (const c of n.connections) {
            const nf = n.layers[c.from]!.size;
            const nt = n.layers[c.to]!.size;
            for (let i = 0; i < nf; i++) {
              for (let j = 0; j < nt; j++) {
                if (c.from === l.index) bp[i]! += c.weights[i * nt + j]! * mu[c.to]![j]!;
                if (c.to === l.index) bp[j]! += c.weights[i * nt + j]! * mu[c.from]![i]!;
              }
            }
          }
          const L = n.laterals[l.index];
          if (L)
            for (let i = 0; i < l.size; i++)
              for (let j = 0; j < l.size; j++) bp[i]! += L[i * l.size + j]! * mu[l.index]![j]!;
          return bp;
        });
      const b0 = centredBias(net);
      const W0 = net.connections.map((c) => Float64Array.from(c.weights));
      const L0 = net.laterals.map((L) => (L ? Float64Array.from(L) : null));
      // centred gradient in float64
      const mean = (st: State, rows: number, l: number, j: number): number => {
        let s = 0;
        for (let r2 = 0; r2 < rows; r2++) s += st[l]![r2 * net.layers[l]!.size + j]!;
        return s / rows;
      };
      const ccorr = (
        st: State,
        rows: number,
        f: number,
        i: number,
        t: number,
        j: number,
      ): number => {
        let s = 0;
        const nf = net.layers[f]!.size;
        const nt = net.layers[t]!.size;
        for (let r2 = 0; r2 < rows; r2++)
          s += (st[f]![r2 * nf + i]! - mu[f]![i]!) * (st[t]![r2 * nt + j]! - mu[t]![j]!);
        return s / rows;
      };
      tr.applyUpdate(pos, 7, neg, 5);
      // expected centred parameters after the step, mapped back with the same offsets
      net.connections.forEach((c, ci) => {
        const nf = net.layers[c.from]!.size;
        const nt = net.layers[c.to]!.size;
        for (let i = 0; i < nf; i++) {
          for (let j = 0; j < nt; j++) {
            const dW = ccorr(pos, 7, c.from, i, c.to, j) - ccorr(neg, 5, c.from, i, c.to, j);
            expect(c.weights[i * nt + j]).toBeCloseTo(W0[ci]![i * nt + j]! + lr * dW, 5);
          }
        }
      });
      net.layers.forEach((l) => {
        const L = net.laterals[l.index];
        if (!L) return;
        for (let i = 0; i < l.size; i++) {
          for (let j = 0; j < l.size; j++) {
            const dL =
              i === j
                ? 0
                : ccorr(pos, 7, l.index, i, l.index, j) - ccorr(neg, 5, l.index, i, l.index, j);
            expect(L[i * l.size + j]).toBeCloseTo(L0[l.index]![i * l.size + j]! + lr * dL, 5);
            expect(L[i * l.size + j]).toBe(L[j * l.size + i]);
          }
        }
      });
      const b1 = centredBias(net); // the updated standard biases, read in the centred form
      net.layers.forEach((l) => {
        for (let j = 0; j < l.size; j++) {
          const dbc = mean(pos, 7, l.index, j) - mean(neg, 5, l.index, j);
          expect(b1[l.index]![j]).toBeCloseTo(b0[l.index]![j]! + lr * dbc, 5);
        }
      });
      // offsets moved toward the data means
      const st = tr.state();
      net.layers.forEach((l) => {
        for (let j = 0; j < l.size; j++) {
          expect(st[`offset.${l.name}`]!.data[j]).toBeCloseTo(
            0.9 * mu[l.index]![j]! + 0.1 * mean(pos, 7, l.index, j),
            6,
          );
        }
      });
    }
  });

  it('without centring the update is eps (<x y>_d - <x y>_m); momentum, decay and schedules', () => {
    const base = randomNet(rbmSpec(5, 4), portable, 9, 0.5);
    const pos = phase(base, 6, 3);
    const neg = phase(base, 4, 4);
    // plain gradient
    const plain = base.clone();
    new Trainer(plain, { learningRate: 1 }).applyUpdate(pos, 6, neg, 4);
    const g = plain
      .parameters()
      .map((p, i) => Float64Array.from(p.data, (v, j) => v - base.parameters()[i]!.data[j]!));
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 4; j++) {
        let d = 0;
        for (let r = 0; r < 6; r++) d += (pos[0]![r * 5 + i]! * pos[1]![r * 4 + j]!) / 6;
        for (let r = 0; r < 4; r++) d -= (neg[0]![r * 5 + i]! * neg[1]![r * 4 + j]!) / 4;
        expect(g[2]![i * 4 + j]).toBeCloseTo(d, 5);
      }
    }
    // momentum m and decay lambda over two steps
    const m = 0.7;
    const lam = 0.01;
    const lr = 0.2;
    const net = base.clone();
    const tr = new Trainer(net, { learningRate: lr, momentum: m, weightDecay: lam });
    const p0 = snapshot(net);
    tr.applyUpdate(pos, 6, neg, 4);
    const p1 = snapshot(net);
    tr.applyUpdate(pos, 6, neg, 4);
    const p2 = snapshot(net);
    net.parameters().forEach((p, pi) => {
      const decay = p.name.endsWith('.bias') ? 0 : lam;
      for (let i = 0; i < p.data.length; i++) {
        const w0 = p0.get(p.name)![i]!;
        const w1 = p1.get(p.name)![i]!;
        const v1 = lr * (g[pi]![i]! - decay * w0);
        expect(w1 - w0).toBeCloseTo(v1, 6);
        const v2 = m * v1 + lr * (g[pi]![i]! - decay * w1);
        expect(p2.get(p.name)![i]! - w1).toBeCloseTo(v2, 6);
      }
    });
    // schedules
    expect(learningRateAt(0.1, { type: 'constant' }, 50)).toBe(0.1);
    expect(learningRateAt(0.1, { type: 'linear', steps: 100, end: 0.02 }, 50)).toBeCloseTo(
      0.06,
      12,
    );
    expect(learningRateAt(0.1, { type: 'linear', steps: 100 }, 500)).toBe(0);
    expect(learningRateAt(0.1, { type: 'exponential', decay: 0.9 }, 2)).toBeCloseTo(0.081, 12);
    expect(learningRateAt(0.1, { type: 'inverse', tau: 10 }, 10)).toBeCloseTo(0.05, 12);
    const sched = base.clone();
    const ts = new Trainer(sched, {
      learningRate: 1,
      schedule: { type: 'exponential', decay: 0.5 },
    });
    const s0 = snapshot(sched);
    const st0 = ts.applyUpdate(pos, 6, neg, 4);
    const s1 = snapshot(sched);
    const st1 = ts.applyUpdate(pos, 6, neg, 4);
    expect(st0.learningRate).toBe(1);
    expect(st1.learningRate).toBe(0.5);
    const w = sched.connections[0]!.weights;
    for (let i = 0; i < w.length; i++) {
      expect(w[i]! - s1.get('v-h.weights')![i]!).toBeCloseTo(
        0.5 * (s1.get('v-h.weights')![i]! - s0.get('v-h.weights')![i]!),
        6,
      );
    }
  });

  it('state()/restoreState() resumes bit-identically (CD and PCD)', () => {
    const data = bas3();
    for (const opts of [
      { negative: 'pcd', chains: 7, momentum: 0.5, centring: true },
      { negative: 'cd', momentum: 0.9, weightDecay: 1e-3, schedule: { type: 'inverse', tau: 5 } },
    ] as TrainOptions[]) {
      const net = Network.create(rbmSpec(9, 6), portable, { seed: 3 });
      const tr = new Trainer(net, { batchSize: 5, learningRate: 0.05, seed: 11, ...opts });
      tr.trainEpoch(data, 14);
      tr.trainBatch(data, 5);
      const saved = tr.state();
      const savedNet = net.clone();
      tr.trainEpoch(data, 14);
      tr.trainBatch(data.subarray(9), 4);
      const resumedNet = savedNet.clone();
      const tr2 = new Trainer(resumedNet, { batchSize: 5, learningRate: 0.05, seed: 11, ...opts });
      tr2.restoreState(saved);
      expect(tr2.stepCount).toBe(4);
      tr2.trainEpoch(data, 14);
      tr2.trainBatch(data.subarray(9), 4);
      const a = net.parameters();
      resumedNet
        .parameters()
        .forEach((p, i) => expect(Array.from(p.data)).toEqual(Array.from(a[i]!.data)));
      const s1 = tr.state();
      for (const [name, arr] of Object.entries(tr2.state()))
        expect(Array.from(arr.data)).toEqual(Array.from(s1[name]!.data));
      // a state of the wrong shape is refused
      const bad = { ...saved, 'velocity.v-h.weights': { data: new Float32Array(3), shape: [3] } };
      expect(() => tr2.restoreState(bad)).toThrow(/state\.velocity\.v-h\.weights/);
    }
  });

  it('invalid options give SpecError naming the field', () => {
    const net = Network.create(rbmSpec(4, 3), portable);
    const dbm = Network.create(
      {
        layers: [
          { name: 'v', size: 3 },
          { name: 'a', size: 2 },
          { name: 'b', size: 2 },
        ],
        connections: [
          { from: 'v', to: 'a' },
          { from: 'a', to: 'b' },
        ],
      },
      portable,
    );
    const bad: [Network, unknown, RegExp][] = [
      [net, { learningRate: 0 }, /^train\.learningRate must be > 0$/],
      [net, { learningRate: -1 }, /train\.learningRate/],
      [net, { batchSize: 2.5 }, /train\.batchSize/],
      [net, { momentum: 1 }, /train\.momentum/],
      [net, { weightDecay: -0.1 }, /train\.weightDecay/],
      [net, { negative: 'foo' }, /train\.negative/],
      [net, { k: 0 }, /train\.k/],
      [net, { chains: 0, negative: 'pcd' }, /train\.chains/],
      [net, { visible: ['x'] }, /train\.visible\[0\]/],
      [net, { visible: [] }, /train\.visible/],
      [net, { positive: 'magic' }, /train\.positive/],
      [dbm, { positive: 'exact' }, /train\.positive/],
      [net, { damping: 0 }, /train\.damping/],
      [net, { centring: 'yes' }, /train\.centring/],
      [net, { centringRate: 2 }, /train\.centringRate/],
      [net, { seed: -1 }, /train\.seed/],
      [net, { schedule: { type: 'cosine' } }, /train\.schedule\.type/],
      [net, { schedule: { type: 'linear' } }, /train\.schedule\.steps/],
      [net, { schedule: { type: 'exponential', decay: 1.5 } }, /train\.schedule\.decay/],
      [net, { learningrate: 0.1 }, /train\.learningrate is not a known field/],
    ];
    for (const [n, o, re] of bad) {
      let err: unknown;
      try {
        new Trainer(n, o as TrainOptions);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(o)).toBeInstanceOf(SpecError);
      expect((err as Error).message).toMatch(re);
    }
    const tr = new Trainer(net, { batchSize: 4 });
    expect(() => tr.trainBatch(new Float32Array(20), 5)).toThrow(/trainBatch\.rows/);
    expect(() => tr.trainBatch(new Float32Array(3), 2)).toThrow(/trainBatch\.batch/);
    // 'auto' picks mean field for a deep BM
    expect(new Trainer(dbm).options.positive).toBe('meanfield');
    expect(new Trainer(net).options.positive).toBe('exact');
  });

  it('same seed, same result; sharded CD (chainOffset) matches the whole batch', () => {
    const data = bas3();
    const runOnce = (): Float32Array => {
      const net = Network.create(rbmSpec(9, 6), portable, { seed: 3 });
      const tr = new Trainer(net, { batchSize: 14, negative: 'pcd', chains: 10, seed: 4 });
      for (let i = 0; i < 5; i++) tr.trainBatch(data, 14);
      return net.connections[0]!.weights;
    };
    expect(Array.from(runOnce())).toEqual(Array.from(runOnce()));
    // Data-parallel shards: with lr = 1 the update is the gradient, and the gradient of the
    // whole batch is the mean of the gradients of its halves when each half uses the global
    // row index of its first row as chainOffset (the draws depend on the row, not the layout).
    const net = Network.create(rbmSpec(9, 6), portable, { seed: 3, weightStd: 0.5 });
    const delta = (rows: number, from: number, chainOffset: number): Float32Array => {
      const n = net.clone();
      new Trainer(n, { batchSize: rows, learningRate: 1, seed: 4, k: 3, chainOffset }).trainBatch(
        data.subarray(from * 9),
        rows,
      );
      return n.connections[0]!.weights.map((w, i) => w - net.connections[0]!.weights[i]!);
    };
    const whole = delta(14, 0, 0);
    const head = delta(7, 0, 0);
    const tail = delta(7, 7, 7);
    const wrong = delta(7, 7, 0);
    let maxWrong = 0;
    whole.forEach((w, i) => {
      expect(w).toBeCloseTo((head[i]! + tail[i]!) / 2, 5);
      maxWrong = Math.max(maxWrong, Math.abs(w - (head[i]! + wrong[i]!) / 2));
    });
    expect(maxWrong).toBeGreaterThan(1e-3);
  });
});
