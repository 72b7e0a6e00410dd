import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import {
  PortableKernels,
  UnitType,
  loadKernels,
  nativeAvailable,
  type Kernels,
} from '@spinmesh/kernels';
import { loadFashionMnist } from '../src/data/fashion.js';
import { Network, rbmSpec, type NetworkSpec, type State } from '../src/network.js';
import { exactLogZ, exactLogLikelihood } from '../src/eval/exact.js';
import { ais, aisLogLikelihood, defaultAisBetas, reverseAis } from '../src/eval/ais.js';
import { mulberry32 as rng } from '../src/mulberry32.js';
import { randomNet } from './nets.js';

const portable = new PortableKernels();

const sig = (a: number): number => 1 / (1 + Math.exp(-a));
const softplus = (a: number): number =>
  a > 0 ? a + Math.log1p(Math.exp(-a)) : Math.log1p(Math.exp(a));

/**
 * `count` exact samples of a Bernoulli RBM (v, h) by enumerating h: p(h) is proportional to
 * exp(c.h + sum_i softplus(b_i + (W h)_i)); draw h by inverse CDF, then v | h.
 */
function exactSamples(net: Network, count: number, seed: number): State {
  const nv = net.layers[0]!.size;
  const nh = net.layers[1]!.size;
  const W = net.connections[0]!.weights;
  const b = net.biases[0]!;
  const c = net.biases[1]!;
  const H = 2 ** nh;
  const logp = new Float64Array(H);
  for (let hs = 0; hs < H; hs++) {
    let t = 0;
    for (let j = 0; j < nh; j++) if ((hs >> j) & 1) t += c[j]!;
    for (let i = 0; i < nv; i++) {
      let a = b[i]!;
      for (let j = 0; j < nh; j++) if ((hs >> j) & 1) a += W[i * nh + j]!;
      t += softplus(a);
    }
    logp[hs] = t;
  }
  const m = Math.max(...logp);
  const cdf = new Float64Array(H);
  let s = 0;
  for (let hs = 0; hs < H; hs++) cdf[hs] = s += Math.exp(logp[hs]! - m);
  const r = rng(seed);
  const state = net.allocState(count);
  for (let n = 0; n < count; n++) {
    const u = r() * s;
    let hs = 0;
    while (cdf[hs]! < u) hs++;
    for (let j = 0; j < nh; j++) state[1]![n * nh + j] = (hs >> j) & 1;
    for (let i = 0; i < nv; i++) {
      let a = b[i]!;
      for (let j = 0; j < nh; j++) if ((hs >> j) & 1) a += W[i * nh + j]!;
      state[0]![n * nv + i] = r() < sig(a) ? 1 : 0;
    }
  }
  return state;
}

/** Data: noisy copies of 4 prototypes (10% of bits flipped). */
function prototypeData(nv: number, rows: number, seed: number): Float32Array {
  const r = rng(seed);
  const protos = Array.from({ length: 4 }, () =>
    Array.from({ length: nv }, () => (r() < 0.5 ? 1 : 0)),
  );
  const x = new Float32Array(rows * nv);
  for (let n = 0; n < rows; n++) {
    const p = protos[n % 4]!;
    for (let i = 0; i < nv; i++) x[n * nv + i] = r() < 0.1 ? 1 - p[i]! : p[i]!;
  }
  return x;
}

/** A "trained-looking" RBM: full-batch CD-1 on prototype data (sharp, multimodal). */
function trainedRbm(
  nv: number,
  nh: number,
  data: Float32Array,
  rows: number,
  k: Kernels = portable,
  iters = 400,
): Network {
  const net = Network.create(rbmSpec(nv, nh), k, { seed: 3, weightStd: 0.01 });
  const W = net.connections[0]!.weights;
  const [b, c] = [net.biases[0]!, net.biases[1]!];
  const ph = k.alloc(rows * nh);
  const hs = k.alloc(rows * nh);
  const pv = k.alloc(rows * nv);
  const ph2 = k.alloc(rows * nh);
  const site = { seedLo: 7, seedHi: 0, unitOffset: 0, chainOffset: 0, step: 0, stream: 0 };
  const lr = 0.1;
  for (let it = 0; it < iters; it++) {
    k.sgemm(false, false, rows, nh, nv, 1, data, nv, W, nh, 0, ph, nh);
    k.sampleUnits(UnitType.Bernoulli, rows, nh, ph, nh, c, 1, ph, hs, {
      ...site,
      unitOffset: nv,
      step: it,
    });
    k.sgemm(false, true, rows, nv, nh, 1, hs, nh, W, nh, 0, pv, nv);
    k.sampleUnits(UnitType.Bernoulli, rows, nv, pv, nv, b, 1, pv, null, site);
    k.sgemm(false, false, rows, nh, nv, 1, pv, nv, W, nh, 0, ph2, nh);
    k.sampleUnits(UnitType.Bernoulli, rows, nh, ph2, nh, c, 1, ph2, null, site);
    k.sgemm(true, false, nv, nh, rows, lr / rows, data, nv, ph, nh, 1, W, nh);
    k.sgemm(true, false, nv, nh, rows, -lr / rows, pv, nv, ph2, nh, 1, W, nh);
    k.colSums(rows, nv, data, nv, lr / rows, 1, b);
    k.colSums(rows, nv, pv, nv, -lr / rows, 1, b);
    k.colSums(rows, nh, ph, nh, lr / rows, 1, c);
    k.colSums(rows, nh, ph2, nh, -lr / rows, 1, c);
  }
  return net;
}

describe('AIS against exact log Z', () => {
  it('default schedule is Salakhutdinov & Murray 2008', () => {
    const b = defaultAisBetas();
    expect(b.length).toBe(14501);
    expect(b[0]).toBe(0);
    expect(b[500]).toBeCloseTo(0.5, 12);
    expect(b[4500]).toBeCloseTo(0.9, 12);
    expect(b[14500]).toBe(1);
    const s = defaultAisBetas(145);
    expect(s.length).toBe(146);
    expect(s[5]).toBeCloseTo(0.5, 12);
    expect(s[45]).toBeCloseTo(0.9, 12);
  });

  it('random 20-12 RBM (weights std 0.5): forward within 0.1 nats and inside its interval; reverse brackets', () => {
    const net = randomNet(rbmSpec(20, 12), portable, 21, 0.5, 0.5);
    const exact = exactLogZ(net);
    const fwd = ais(net, { runs: 100, seed: 1, steps: 3000 });
    console.log(
      'random RBM: exact',
      exact,
      'forward',
      fwd.logZ,
      [fwd.logZLow, fwd.logZHigh],
      'ess',
      fwd.ess,
    );
    // Accuracy: with 3000 steps this path is nearly in equilibrium (ess close to runs), so the
    // estimate's error is a few hundredths of a nat; 0.1 nat is the brief's accuracy target.
    expect(Math.abs(fwd.logZ - exact)).toBeLessThan(0.1);
    expect(exact).toBeGreaterThan(fwd.logZLow);
    expect(exact).toBeLessThan(fwd.logZHigh);
    expect(fwd.ess).toBeGreaterThan(50);
    const starts = exactSamples(net, 100, 5);
    const rev = reverseAis(net, starts, { seed: 2, steps: 3000 });
    console.log('random RBM: reverse', rev.logZ, [rev.logZLow, rev.logZHigh], 'ess', rev.ess);
    expect(Math.abs(rev.logZ - exact)).toBeLessThan(0.1);
    // bracketing with a tolerance of 3 standard errors of each estimate
    expect(fwd.logZ).toBeLessThan(exact + 3 * fwd.logZStd);
    expect(rev.logZ).toBeGreaterThan(exact - 3 * rev.logZStd);
  });

  it('trained-looking 20-12 RBM (CD-1 on prototypes): full default schedule', () => {
    const rows = 200;
    const data = prototypeData(20, rows, 9);
    const net = trainedRbm(20, 12, data, rows);
    const exact = exactLogZ(net);
    const t0 = performance.now();
    const res = aisLogLikelihood(net, data, rows, { runs: 100, seed: 3 });
    const ms = performance.now() - t0;
    const ll = exactLogLikelihood(net, data, rows, exact);
    console.log(
      `trained RBM: exact logZ ${exact}, AIS ${res.ais.logZ} [${res.ais.logZLow}, ${res.ais.logZHigh}] ess ${res.ais.ess.toFixed(1)}, ` +
        `${ms.toFixed(0)} ms; LL exact ${ll} AIS ${res.logLikelihood}`,
    );
    expect(Math.abs(res.ais.logZ - exact)).toBeLessThan(0.1);
    expect(exact).toBeGreaterThan(res.ais.logZLow);
    expect(exact).toBeLessThan(res.ais.logZHigh);
    expect(Math.abs(res.logLikelihood - ll)).toBeLessThan(0.1);
    expect(res.ais.steps).toBe(14500);
    const starts = exactSamples(net, 100, 6);
    const rev = reverseAis(net, starts, { seed: 4, steps: 3000, data, dataRows: rows });
    console.log('trained RBM reverse', rev.logZ, [rev.logZLow, rev.logZHigh], 'ess', rev.ess);
    expect(rev.logZ).toBeGreaterThan(exact - 3 * rev.logZStd - 0.02);
    expect(Math.abs(rev.logZ - exact)).toBeLessThan(0.1);
  });

  it('short schedules: forward underestimates and reverse (from exact samples) overestimates, on average', () => {
    // A sharp random RBM (weights std 2) and only 20 transitions: the log weights spread over
    // several nats, so the Jensen gaps of the two directions dominate. One estimate can land on
    // either side (its noise is ~1 nat here), so the claim is checked on the mean over 16
    // independent seeds (standard error ~0.3 nat; the gaps measured are ~-0.6 and ~+1.8).
    const net = Network.create(rbmSpec(20, 12), portable, { seed: 1, weightStd: 2 });
    net.biases[0]!.fill(-2);
    const exact = exactLogZ(net);
    let f = 0;
    let r = 0;
    for (let s = 0; s < 16; s++) {
      f += ais(net, { runs: 100, seed: 100 + s, steps: 20 }).logZ - exact;
      r +=
        reverseAis(net, exactSamples(net, 100, 200 + s), { seed: 300 + s, steps: 20 }).logZ - exact;
    }
    console.log(
      `20 steps, mean over 16 seeds: forward - exact = ${f / 16}, reverse - exact = ${r / 16}`,
    );
    expect(f / 16).toBeLessThan(-0.2);
    expect(r / 16).toBeGreaterThan(0.5);
  });

  it('general paths: deep BM (h1 summed out), semi-restricted BM (sequential lateral updates), Gaussian visible', () => {
    const dbm: NetworkSpec = {
      layers: [
        { name: 'v', size: 10 },
        { name: 'h1', size: 8 },
        { name: 'h2', size: 6 },
      ],
      connections: [
        { from: 'v', to: 'h1' },
        { from: 'h1', to: 'h2' },
      ],
    };
    const a = randomNet(dbm, portable, 31, 0.5);
    const ea = exactLogZ(a);
    const ra = ais(a, { runs: 100, steps: 2000, seed: 5 });
    console.log('DBM exact', ea, 'AIS', ra.logZ, ra.logZStd);
    expect(Math.abs(ra.logZ - ea)).toBeLessThan(0.1);

    const srbm: NetworkSpec = {
      layers: [
        { name: 'v', size: 10, lateral: true },
        { name: 'h', size: 6 },
      ],
      connections: [{ from: 'v', to: 'h' }],
    };
    const b = randomNet(srbm, portable, 32, 0.4);
    const eb = exactLogZ(b);
    const rb = ais(b, { runs: 100, steps: 1000, seed: 6 });
    console.log('SRBM exact', eb, 'AIS', rb.logZ, rb.logZStd);
    expect(Math.abs(rb.logZ - eb)).toBeLessThan(0.1);

    const gb = randomNet(rbmSpec(12, 8, 'gaussian'), portable, 33, 0.2, 1);
    const eg = exactLogZ(gb);
    const rg = ais(gb, { runs: 100, steps: 1000, seed: 7 });
    console.log('GB-RBM exact', eg, 'AIS', rg.logZ, rg.logZStd);
    expect(Math.abs(rg.logZ - eg)).toBeLessThan(0.1);
  });

  it('is deterministic by seed', () => {
    const net = randomNet(rbmSpec(10, 6), portable, 41);
    const a = ais(net, { runs: 20, steps: 200, seed: 9 });
    const b = ais(net, { runs: 20, steps: 200, seed: 9 });
    const c = ais(net, { runs: 20, steps: 200, seed: 10 });
    expect(a.logZ).toBe(b.logZ);
    expect(Array.from(a.logWeights)).toEqual(Array.from(b.logWeights));
    expect(a.logZ).not.toBe(c.logZ);
  });

  const fashion =
    existsSync('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz') &&
    nativeAvailable().ok;
  it.runIf(fashion)(
    '784-16 RBM trained by CD-1 on Fashion-MNIST (native kernels): 4000-step schedule vs exact',
    () => {
      const k = loadKernels('native');
      const ds = loadFashionMnist({ split: 'train', limit: 2000 });
      const x = ds.x.map((p) => (p > 0.5 ? 1 : 0));
      const net = trainedRbm(784, 16, x, ds.rows, k, 300);
      const exact = exactLogZ(net);
      const t0 = performance.now();
      const res = ais(net, { seed: 1, steps: 4000, data: x, dataRows: ds.rows });
      const ms = performance.now() - t0;
      console.log(
        `784-16 Fashion-MNIST RBM: exact ${exact}, AIS ${res.logZ} +- ${res.logZStd} (ess ${res.ess.toFixed(1)}), ${ms.toFixed(0)} ms`,
      );
      // 3 standard errors plus 0.05 nat for the lower-bound (Jensen) bias of log mean w.
      expect(Math.abs(res.logZ - exact)).toBeLessThan(3 * res.logZStd + 0.05);
    },
  );
});
