// Samplers against exact marginals of small networks (brute-force enumeration of all states
// with network.energy).
//
// Tolerances. Every test runs C independent chains (distinct chain counters) for S sweeps after
// a burn-in. For a statistic g (a unit's value or a product of two), each chain's time average
// a_c = (1/S) sum_s g(x_c^s) is one draw; the C draws are independent and identically
// distributed, so the estimate mean_c a_c has standard error SE = sd_c(a_c) / sqrt(C). This is
// the batch-means estimator with one batch per chain: it accounts for autocorrelation inside a
// chain without modelling it (the effective sample size is C * S / tau = var(g) / SE^2). A check
// passes when |estimate - exact| <= 5 SE + 1e-3 (the floor covers float32 rounding of
// probabilities). Each test also shows that a broken sampler would fail: the same statistics at a
// wrong temperature, or without the lateral term, are many SEs off.
import { describe, expect, it } from 'vitest';
import {
  type Kernels,
  NativeKernels,
  PortableKernels,
  nativeAvailable,
  UnitType,
} from '@spinmesh/kernels';
import {
  GibbsSampler,
  Network,
  type NetworkSpec,
  ParallelTempering,
  PersistentChains,
  SpecError,
  type State,
  type SweepOptions,
  annealingSchedule,
  rbmSpec,
} from '../src/index.js';

const portable = new PortableKernels();
const native: Kernels | null = nativeAvailable().ok ? new NativeKernels({ threads: 1 }) : null;

/** A network with N(0, std^2) weights and biases (deterministic). */
function randomNet(spec: NetworkSpec, k: Kernels, seed: number, std = 1): Network {
  const net = Network.create(spec, k, { seed, weightStd: std });
  let s = seed * 7919 + 17;
  const rnd = (): number => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  };
  for (const b of net.biases) for (let j = 0; j < b.length; j++) b[j] = rnd() * 2 * std;
  return net;
}

interface Exact {
  means: Float64Array;
  corr: Float64Array;
}

/** Values of unit u (global index) in enumeration state s. */
function unitValue(net: Network, u: number, s: number): number {
  const bit = (s >>> u) & 1;
  const layer = net.layers.find((l) => u >= l.offset && u < l.offset + l.size)!;
  return layer.type === UnitType.Ising ? (bit ? 1 : -1) : bit;
}

/**
 * Exact E[x_u] and E[x_u x_v] (u < v, stored at u*N+v) by enumeration of all 2^N states,
 * optionally conditioned on some units having given values.
 */
function exact(net: Network, beta = 1, fixed: Map<number, number> = new Map()): Exact {
  const N = net.numUnits;
  const S = 1 << N;
  const state: State = net.layers.map((l) => new Float32Array(S * l.size));
  for (let s = 0; s < S; s++) {
    for (const l of net.layers)
      for (let j = 0; j < l.size; j++)
        state[l.index]![s * l.size + j] = unitValue(net, l.offset + j, s);
  }
  const e = net.energy(state, S);
  let emin = Infinity;
  for (let s = 0; s < S; s++) emin = Math.min(emin, e[s]!);
  const means = new Float64Array(N);
  const corr = new Float64Array(N * N);
  let z = 0;
  for (let s = 0; s < S; s++) {
    let ok = true;
    for (const [u, v] of fixed) if (unitValue(net, u, s) !== v) ok = false;
    if (!ok) continue;
    const p = Math.exp(-beta * (e[s]! - emin));
    z += p;
    for (let u = 0; u < N; u++) {
      const xu = unitValue(net, u, s);
      means[u]! += p * xu;
      for (let v = u + 1; v < N; v++) corr[u * N + v]! += p * xu * unitValue(net, v, s);
    }
  }
  means.forEach((_, i) => (means[i]! /= z));
  corr.forEach((_, i) => (corr[i]! /= z));
  return { means, corr };
}

interface Estimate {
  means: Float64Array;
  corr: Float64Array;
  seMeans: Float64Array;
  seCorr: Float64Array;
}

/** Per-chain time averages over `sweeps` calls of `advance`, reduced over chains. */
function collect(
  net: Network,
  state: State,
  chains: number,
  sweeps: number,
  advance: (s: number) => void,
): Estimate {
  const N = net.numUnits;
  const P = N * N;
  const sumX = new Float64Array(chains * N);
  const sumXX = new Float64Array(chains * P);
  const x = new Float64Array(N);
  for (let s = 0; s < sweeps; s++) {
    advance(s);
    for (const l of net.layers) net.kernels.download(state[l.index]!);
    for (let c = 0; c < chains; c++) {
      for (const l of net.layers)
        for (let j = 0; j < l.size; j++) x[l.offset + j] = state[l.index]![c * l.size + j]!;
      for (let u = 0; u < N; u++) {
        sumX[c * N + u]! += x[u]!;
        for (let v = u + 1; v < N; v++) sumXX[c * P + u * N + v]! += x[u]! * x[v]!;
      }
    }
  }
  const reduce = (sum: Float64Array, width: number): [Float64Array, Float64Array] => {
    const m = new Float64Array(width);
    const se = new Float64Array(width);
    for (let i = 0; i < width; i++) {
      let a = 0;
      let a2 = 0;
      for (let c = 0; c < chains; c++) {
        const v = sum[c * width + i]! / sweeps;
        a += v;
        a2 += v * v;
      }
      m[i] = a / chains;
      se[i] = Math.sqrt(Math.max(a2 / chains - (a / chains) ** 2, 0) / (chains - 1));
    }
    return [m, se];
  };
  const [means, seMeans] = reduce(sumX, N);
  const [corr, seCorr] = reduce(sumXX, P);
  return { means, corr, seMeans, seCorr };
}

/** Largest |estimate - exact| / (SE + floor/5) over means and pairwise correlations (units in `units`). */
function maxZ(est: Estimate, ex: Exact, N: number, units?: number[]): number {
  const us = units ?? Array.from({ length: N }, (_, i) => i);
  let z = 0;
  for (const u of us) {
    z = Math.max(z, Math.abs(est.means[u]! - ex.means[u]!) / (est.seMeans[u]! + 2e-4));
    for (const v of us) {
      if (v <= u) continue;
      const i = u * N + v;
      z = Math.max(z, Math.abs(est.corr[i]! - ex.corr[i]!) / (est.seCorr[i]! + 2e-4));
    }
  }
  return z;
}

interface GibbsRun {
  chains?: number;
  burn?: number;
  sweeps?: number;
  beta?: number;
  seed?: number;
  sweepOpts?: SweepOptions;
  init?: (state: State) => void;
}

function gibbsEstimate(net: Network, r: GibbsRun = {}): Estimate {
  const chains = r.chains ?? 1000;
  const sampler = new GibbsSampler(net, { seed: r.seed ?? 1, beta: r.beta ?? 1 });
  const pc = new PersistentChains(net, chains, { seed: r.seed ?? 1 });
  r.init?.(pc.state);
  const step = sampler.run(pc.state, chains, r.burn ?? 20, r.sweepOpts);
  return collect(net, pc.state, chains, r.sweeps ?? 100, (s) =>
    sampler.sweep(pc.state, chains, step + s, r.sweepOpts),
  );
}

const Z = 5;

const srbmSpec: NetworkSpec = {
  layers: [
    { name: 'v', size: 4, lateral: true },
    { name: 'h', size: 3 },
  ],
  connections: [{ from: 'v', to: 'h' }],
};

const dbmSpec: NetworkSpec = {
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

const fullSpec = (units: 'bernoulli' | 'ising'): NetworkSpec => ({
  layers: [{ name: 'x', size: 6, units, lateral: true }],
  connections: [],
});

describe('GibbsSampler: exact marginals by enumeration', () => {
  for (const [name, k] of [
    ['portable', portable],
    ['native', native],
  ] as const) {
    const run = k ? it : it.skip;
    run(`RBM 3+4 Bernoulli and Ising (${name})`, () => {
      for (const units of ['bernoulli', 'ising'] as const) {
        const spec = rbmSpec(3, 4, units);
        spec.layers[1]!.units = units;
        const net = randomNet(spec, k!, 3);
        const ex = exact(net);
        const est = gibbsEstimate(net);
        expect(maxZ(est, ex, net.numUnits)).toBeLessThan(Z);
        // power: sampling at beta 0.8 is detectably wrong
        const wrong = gibbsEstimate(net, { beta: 0.8 });
        expect(maxZ(wrong, ex, net.numUnits)).toBeGreaterThan(2 * Z);
      }
    });

    run(`fully connected 6-unit lateral layer (${name})`, () => {
      for (const units of ['bernoulli', 'ising'] as const) {
        const net = randomNet(fullSpec(units), k!, 5, 0.8);
        const ex = exact(net);
        expect(maxZ(gibbsEstimate(net), ex, 6)).toBeLessThan(Z);
        // power: dropping the lateral term is detected
        const noLat = net.clone();
        noLat.laterals[0]!.fill(0);
        expect(maxZ(gibbsEstimate(noLat), ex, 6)).toBeGreaterThan(2 * Z);
      }
    });
  }

  it('3-layer deep BM, semi-restricted BM, and beta != 1', () => {
    const dbm = randomNet(dbmSpec, portable, 7);
    expect(maxZ(gibbsEstimate(dbm), exact(dbm), dbm.numUnits)).toBeLessThan(Z);
    const srbm = randomNet(srbmSpec, portable, 11);
    expect(maxZ(gibbsEstimate(srbm), exact(srbm), srbm.numUnits)).toBeLessThan(Z);
    expect(maxZ(gibbsEstimate(srbm, { beta: 0.5 }), exact(srbm, 0.5), srbm.numUnits)).toBeLessThan(
      Z,
    );
    expect(maxZ(gibbsEstimate(srbm, { beta: 0.5 }), exact(srbm, 1), srbm.numUnits)).toBeGreaterThan(
      2 * Z,
    );
  });

  it('clamped layers and per-unit masks give the exact conditionals', () => {
    // DBM with v clamped to (1, 0, 1)
    const dbm = randomNet(dbmSpec, portable, 13);
    const vPat = [1, 0, 1];
    const setV = (st: State): void => {
      for (let c = 0; c < st[0]!.length / 3; c++) st[0]!.set(vPat, c * 3);
    };
    const fixed = new Map(vPat.map((v, j) => [j, v] as [number, number]));
    const est = gibbsEstimate(dbm, { init: setV, sweepOpts: { clamp: ['v'] } });
    expect(est.means[0]).toBe(1);
    expect(est.means[1]).toBe(0);
    expect(maxZ(est, exact(dbm, 1, fixed), dbm.numUnits)).toBeLessThan(Z);
    expect(maxZ(est, exact(dbm), dbm.numUnits)).toBeGreaterThan(2 * Z);

    // semi-restricted BM: visible units 0 and 2 clamped to 1 and 0 (pattern completion)
    const srbm = randomNet(srbmSpec, portable, 17);
    const mask = Uint8Array.of(1, 0, 1, 0);
    const setPart = (st: State): void => {
      for (let c = 0; c < st[0]!.length / 4; c++) {
        st[0]![c * 4] = 1;
        st[0]![c * 4 + 2] = 0;
      }
    };
    const cond = exact(
      srbm,
      1,
      new Map([
        [0, 1],
        [2, 0],
      ]),
    );
    const shared = gibbsEstimate(srbm, { init: setPart, sweepOpts: { mask: { v: mask } } });
    expect(shared.means[0]).toBe(1);
    expect(shared.means[2]).toBe(0);
    expect(maxZ(shared, cond, srbm.numUnits)).toBeLessThan(Z);
    // a per-chain mask equal to the shared one gives the very same draws
    const chains = 1000;
    const perChain = new Uint8Array(chains * 4);
    for (let c = 0; c < chains; c++) perChain.set(mask, c * 4);
    const same = gibbsEstimate(srbm, { init: setPart, sweepOpts: { mask: { v: perChain } } });
    expect(Array.from(same.corr)).toEqual(Array.from(shared.corr));
  });

  it('sharding: the same seed gives the same states however chains are split (chainOffset)', () => {
    for (const spec of [srbmSpec, dbmSpec, fullSpec('ising')]) {
      const net = randomNet(spec, portable, 19);
      const sampler = new GibbsSampler(net, { seed: 99 });
      const whole = new PersistentChains(net, 10, { seed: 5 }).state;
      const a = new PersistentChains(net, 4, { seed: 5 }).state;
      const b = new PersistentChains(net, 6, { seed: 5, chainOffset: 4 }).state;
      // initial draws are already shard-independent
      net.layers.forEach((l) => {
        expect(Array.from(a[l.index]!)).toEqual(
          Array.from(whole[l.index]!.subarray(0, 4 * l.size)),
        );
        expect(Array.from(b[l.index]!)).toEqual(Array.from(whole[l.index]!.subarray(4 * l.size)));
      });
      sampler.run(whole, 10, 7, { step: 3 });
      // shard b processed by a separate sampler object, in two calls
      const other = new GibbsSampler(net, { seed: 99 });
      sampler.run(a, 4, 7, { step: 3 });
      other.run(b, 6, 3, { step: 3, chainOffset: 4 });
      other.run(b, 6, 4, { step: 6, chainOffset: 4 });
      net.layers.forEach((l) => {
        const joined = [...a[l.index]!, ...b[l.index]!];
        expect(joined).toEqual(Array.from(whole[l.index]!));
      });
    }
  });
});

describe('Gaussian-Bernoulli RBM', () => {
  it('conditional means and variances of Gaussian visibles, at beta 1 and 2', () => {
    const net = randomNet(rbmSpec(3, 4, 'gaussian'), portable, 23, 0.7);
    const chains = 20000;
    const pats = [
      [0, 0, 0, 0],
      [1, 0, 1, 1],
      [0, 1, 1, 0],
    ];
    for (const beta of [1, 2]) {
      const sampler = new GibbsSampler(net, { seed: 3, beta });
      const st = net.allocState(chains);
      for (let c = 0; c < chains; c++) st[1]!.set(pats[c % 3]!, c * 4);
      sampler.sweep(st, chains, 0, { clamp: ['h'] });
      const W = net.connections[0]!.weights;
      const b = net.biases[0]!;
      pats.forEach((h, p) => {
        for (let i = 0; i < 3; i++) {
          let mu = b[i]!;
          for (let j = 0; j < 4; j++) mu += W[i * 4 + j]! * h[j]!;
          let s = 0;
          let s2 = 0;
          let n = 0;
          for (let c = p; c < chains; c += 3) {
            const v = st[0]![c * 3 + i]!;
            s += v;
            s2 += v * v;
            n++;
          }
          const mean = s / n;
          const variance = s2 / n - mean * mean;
          const sd = Math.sqrt(1 / beta);
          expect(Math.abs(mean - mu)).toBeLessThan((Z * sd) / Math.sqrt(n));
          expect(Math.abs(variance - 1 / beta)).toBeLessThan(
            Z * (1 / beta) * Math.sqrt(2 / (n - 1)),
          );
        }
      });
    }
  });

  it('joint sampling matches the exact hidden marginals (v integrated out)', () => {
    const net = randomNet(rbmSpec(3, 4, 'gaussian'), portable, 29, 0.6);
    const W = net.connections[0]!.weights;
    const b = net.biases[0]!;
    const c = net.biases[1]!;
    // p(h) ∝ exp(c.h + |b + W h|^2 / 2); E[v] = sum_h p(h) (b + W h)
    const pm = new Float64Array(4);
    const vm = new Float64Array(3);
    let z = 0;
    for (let s = 0; s < 16; s++) {
      const h = [0, 1, 2, 3].map((j) => (s >>> j) & 1);
      let lp = 0;
      const mu = [0, 1, 2].map((i) => b[i]! + h.reduce((a, hj, j) => a + W[i * 4 + j]! * hj, 0));
      for (let j = 0; j < 4; j++) lp += c[j]! * h[j]!;
      for (const m of mu) lp += 0.5 * m * m;
      const p = Math.exp(lp);
      z += p;
      h.forEach((hj, j) => (pm[j]! += p * hj));
      mu.forEach((m, i) => (vm[i]! += p * m));
    }
    const est = gibbsEstimate(net, { chains: 1000, sweeps: 100 });
    for (let j = 0; j < 4; j++)
      expect(Math.abs(est.means[3 + j]! - pm[j]! / z)).toBeLessThan(Z * est.seMeans[3 + j]! + 1e-3);
    for (let i = 0; i < 3; i++)
      expect(Math.abs(est.means[i]! - vm[i]! / z)).toBeLessThan(Z * est.seMeans[i]! + 1e-3);
  });
});

describe('mean field', () => {
  it('one undamped iteration of an RBM with v clamped is p(h|v) exactly', () => {
    const net = randomNet(rbmSpec(3, 4), portable, 31);
    const st = net.allocState(2);
    st[0]!.set([1, 0, 1, 0, 1, 1]);
    const r = new GibbsSampler(net).meanField(st, 2, { iterations: 1, damping: 1, clamp: ['v'] });
    expect(r.iterations).toBe(1);
    const W = net.connections[0]!.weights;
    for (let row = 0; row < 2; row++) {
      for (let j = 0; j < 4; j++) {
        let a = net.biases[1]![j]!;
        for (let i = 0; i < 3; i++) a += st[0]![row * 3 + i]! * W[i * 4 + j]!;
        expect(st[1]![row * 4 + j]).toBeCloseTo(1 / (1 + Math.exp(-a)), 6);
      }
    }
  });

  it('converges to the mean-field fixed point of a deep BM and of a lateral layer; draws samples', () => {
    for (const spec of [dbmSpec, srbmSpec]) {
      const net = randomNet(spec, portable, 37, 0.5);
      const rows = 3;
      const st = net.allocState(rows);
      st[0]!.fill(0.5);
      net.layers.slice(1).forEach((l) => st[l.index]!.fill(0.5));
      const samples = net.allocState(rows);
      const r = new GibbsSampler(net).meanField(st, rows, {
        iterations: 500,
        damping: 0.5,
        tolerance: 1e-7,
        samples,
      });
      expect(r.change).toBeLessThan(1e-6);
      expect(r.iterations).toBeLessThan(500);
      for (const l of net.layers) {
        const f = new Float32Array(rows * l.size);
        net.field(l.index, st, rows, f);
        const L = net.laterals[l.index];
        for (let row = 0; row < rows; row++) {
          for (let j = 0; j < l.size; j++) {
            let a = f[row * l.size + j]! + net.biases[l.index]![j]!;
            if (L)
              for (let i = 0; i < l.size; i++)
                a += L[j * l.size + i]! * st[l.index]![row * l.size + i]!;
            expect(st[l.index]![row * l.size + j]).toBeCloseTo(1 / (1 + Math.exp(-a)), 5);
            expect([0, 1]).toContain(samples[l.index]![row * l.size + j]);
          }
        }
      }
    }
  });
});

describe('parallel tempering', () => {
  it('replica at beta 1 has the exact marginals of a strongly coupled network', () => {
    const net = Network.create(fullSpec('ising'), portable);
    // ferromagnet with a weak field: two modes that single-site Gibbs crosses rarely
    const L = net.laterals[0]!;
    for (let i = 0; i < 6; i++)
      for (let j = 0; j < 6; j++) L[i * 6 + j] = i === j ? 0 : 0.45 + 0.02 * ((i + j) % 3);
    net.biases[0]!.set([0.05, -0.02, 0.03, 0, 0.01, -0.04]);
    const ex = exact(net);
    const chains = 400;
    const pt = new ParallelTempering(net, { betas: [0.1, 0.3, 0.55, 0.8, 1], chains, seed: 4 });
    let step = pt.run(50);
    const est = collect(net, pt.target, chains, 200, () => pt.sweep(step++));
    expect(maxZ(est, ex, 6)).toBeLessThan(Z);
    const acc = pt.acceptanceRates();
    for (const a of acc) expect(a).toBeGreaterThan(0.05);
    // power: the beta = 0.8 replica does not have the beta = 1 marginals
    expect(
      maxZ(
        collect(net, pt.replicas[3]!, chains, 50, () => pt.sweep(step++)),
        ex,
        6,
      ),
    ).toBeGreaterThan(2 * Z);
  });

  it('validates its ladder', () => {
    const net = Network.create(fullSpec('ising'), portable);
    expect(() => new ParallelTempering(net, { betas: [1, 0.5], chains: 2 })).toThrow(SpecError);
    expect(() => new ParallelTempering(net, { betas: [0, 1], chains: 2 })).toThrow(
      /tempering\.betas\[0\]/,
    );
  });
});

describe('annealing, persistent chains and options', () => {
  it('annealing schedules end at 1 and are monotone', () => {
    const lin = annealingSchedule(0, 5);
    expect(Array.from(lin)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    const geo = annealingSchedule(0.01, 3, 'geometric');
    expect(geo[0]).toBeCloseTo(0.01, 12);
    expect(geo[1]).toBeCloseTo(0.1, 12);
    expect(geo[2]).toBe(1);
    expect(() => annealingSchedule(0, 3, 'geometric')).toThrow(/anneal\.b0/);
    // annealed run ends in the beta = 1 distribution
    const net = randomNet(fullSpec('ising'), portable, 41, 0.8);
    const chains = 1000;
    const sampler = new GibbsSampler(net, { seed: 8 });
    const pc = new PersistentChains(net, chains, { seed: 8 });
    const step = sampler.run(pc.state, chains, 30, { betas: annealingSchedule(0.05, 30) });
    const est = collect(net, pc.state, chains, 60, (s) =>
      sampler.sweep(pc.state, chains, step + s),
    );
    expect(maxZ(est, exact(net), 6)).toBeLessThan(Z);
  });

  it('persistent chains start from the given distribution', () => {
    const net = Network.create(rbmSpec(3, 2, 'ising'), portable);
    const chains = 20000;
    const pc = new PersistentChains(net, chains, { init: { means: { v: [0.5, -0.5, 0] } } });
    const m = [0, 0, 0];
    for (let c = 0; c < chains; c++)
      for (let j = 0; j < 3; j++) m[j]! += pc.state[0]![c * 3 + j]! / chains;
    const se = 1 / Math.sqrt(chains);
    expect(Math.abs(m[0]! - 0.5)).toBeLessThan(Z * se);
    expect(Math.abs(m[1]! + 0.5)).toBeLessThan(Z * se);
    expect(Math.abs(m[2]!)).toBeLessThan(Z * se);
    pc.reset('zeros');
    expect(pc.state[1]!.every((v) => v === 0)).toBe(true);
    pc.setLayer('v', [1, -1, 1, -1, -1, -1], 2);
    expect(Array.from(pc.state[0]!.subarray(0, 9))).toEqual([1, -1, 1, -1, -1, -1, 1, -1, 1]);
  });

  it('rejects bad arguments with SpecError naming the field', () => {
    const net = Network.create(rbmSpec(3, 2), portable);
    const s = new GibbsSampler(net);
    const st = net.allocState(2);
    expect(() => s.sweep(st, 2, 0, { beta: 0 })).toThrow(/sweep\.beta/);
    expect(() => s.sweep(st, 2, 0, { clamp: ['nope'] })).toThrow(/sweep\.clamp\[0\]/);
    expect(() => s.sweep(st, 3, 0)).toThrow(SpecError);
    expect(() => new GibbsSampler(net, { order: [[0, 1]] })).toThrow(/sampler\.order/);
    expect(() => s.meanField(st, 2, { damping: 2 })).toThrow(/meanField\.damping/);
  });
});
